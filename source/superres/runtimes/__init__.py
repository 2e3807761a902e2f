"""Runtimes behind the tiler: each turns a network file into a ``Runner``.

- ``torch`` (``torch_runner``): spandrel's network on CPU or CUDA; every architecture
  spandrel knows; the GPU container's runtime.
- ``openvino`` (``openvino_runner``): the network converted to OpenVINO IR on the CPU;
  faster than torch on every CPU measured here (README, Benchmarks), and small enough for
  a Lambda zip.
- ``opencv`` (``opencv_dnn``): OpenCV's dnn module, for the face detector's graph (YuNet)
  where OpenVINO is not installed (the GPU container, whose image has OpenCV).
- ``neuron`` (``neuron_runner``): the network compiled for fixed-shape windows on AWS
  Inferentia (torch-neuron on Inf1, torch-neuronx on Inf2), compiled when the runner starts;
  only ever chosen by name.

``load_runner`` picks one: CUDA runs torch; the CPU runs OpenVINO where it is installed
and the network's manifest entry has a checked plan (``ModelSpec.openvino``), else torch.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Literal

from ..manifest import ModelSpec
from ..tiling import TileConfig
from .base import Graph, Runner, RunnerInfo, RunnerOutOfMemoryError

__all__ = [
    "Graph",
    "HostRuntime",
    "NeuronCompilerName",
    "Runner",
    "RunnerInfo",
    "RunnerOutOfMemoryError",
    "Runtime",
    "load_graph",
    "load_runner",
]

#: The runtimes any machine runs (the CLI's choices).
Runtime = Literal["auto", "torch", "openvino"]
#: Those and the one only an Inferentia instance runs (a SageMaker host's ``SUPERRES_RUNTIME``):
#: it needs the tiler's fixed-shape windows, which the service's backend cuts for it.
HostRuntime = Literal[Runtime, "neuron"]
#: What compiles the network for the neuron runtime (``neuron_runner.pick_compiler``).
NeuronCompilerName = Literal["auto", "torch-neuron", "torch-neuronx", "cpu-trace"]


def default_converted_dir() -> Path:
    """Where converted networks are kept when the caller names no folder:
    ``$SUPERRES_CONVERTED_DIR``, else ``~/.cache/superres/converted``."""
    return Path(os.environ.get("SUPERRES_CONVERTED_DIR") or Path.home() / ".cache" / "superres" / "converted")


def pick_runtime(spec: ModelSpec, device: str) -> Literal["torch", "openvino"]:
    """torch for CUDA (or where OpenVINO is missing or unchecked for the network), else OpenVINO."""
    if device.startswith("cuda") or spec.openvino is None:
        return "torch"
    if device == "auto" and importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            return "torch"
    return "openvino" if importlib.util.find_spec("openvino") is not None else "torch"


def load_runner(
    path: Path | str,
    spec: ModelSpec,
    *,
    runtime: HostRuntime = "auto",
    device: str = "auto",
    half: bool | None = None,
    bf16: bool | None = None,
    threads: int | None = None,
    streams: int = 1,
    converted_dir: Path | None = None,
    tiles: TileConfig | None = None,
    neuron_compiler: NeuronCompilerName = "auto",
    neuron_cache_dir: Path | None = None,
    neuron_warmup_wait: float = 0.0,
    **torch_options: Any,
) -> Runner:
    """A runner for the network ``spec`` names, from its weight file ``path``, or from a
    folder the release build converted (``store.CONVERSION_SUFFIX``: OpenVINO only).

    ``bf16``: None = wherever it is native and measured, True = insist, False = fp32.
    ``threads``/``streams``: the cores the runner uses in all, and how many calls may
    compute at once, sharing them (OpenVINO: per compiled model; torch: its one pool per
    process, set to ``threads // streams``).
    ``converted_dir`` (OpenVINO): where converted networks are kept (converted on first use).
    ``tiles`` (Neuron): the fixed-shape windows the tiler will cut, which the network is compiled
    for, by ``neuron_compiler``, kept in ``neuron_cache_dir``; a call waits up to
    ``neuron_warmup_wait`` seconds for that compile before its 503.
    """
    released = Path(path).is_dir()  # a released conversion runs on OpenVINO only
    chosen = runtime if runtime != "auto" else ("openvino" if released else pick_runtime(spec, device))
    if released and chosen != "openvino":
        raise ValueError(f"{path} is a network converted for OpenVINO: the {chosen} runtime needs the weight file")
    if chosen == "openvino":
        if spec.openvino is None:
            raise ValueError(f"{spec.name} is not checked on the OpenVINO runtime: use torch")
        if device not in ("auto", "cpu"):
            raise ValueError(f"the OpenVINO runtime runs on the CPU, not {device}")
        if half:
            raise ValueError("fp16 is only supported on CUDA")
        from .openvino_runner import OpenVinoRunner, ensure_converted

        folder = (
            Path(path) if released else ensure_converted(Path(path), spec, converted_dir or default_converted_dir())
        )
        return OpenVinoRunner(folder, spec, bf16=bf16, threads=threads, streams=streams)
    from .torch_runner import OfficialGfpganCall, TorchRunner, load_descriptor

    if chosen == "neuron":
        from .neuron_runner import NeuronRunner, pick_compiler

        if tiles is None or not tiles.fixed_shape or neuron_cache_dir is None:
            raise ValueError("the neuron runtime needs fixed-shape tiles and a cache folder")
        compiler = pick_compiler(neuron_compiler)  # before any thread: a missing compiler fails the load
        return NeuronRunner(
            load_descriptor(path, spec),
            name=spec.name,
            tiles=tiles,
            compiler=compiler,
            cache_dir=neuron_cache_dir,
            warmup_wait=neuron_warmup_wait,
        )

    if threads:
        import torch

        # Each thread that calls torch gets a team of this size: streams x it stays within threads.
        torch.set_num_threads(max(1, threads // streams))
    descriptor = load_descriptor(path, spec)
    if spec.architecture == "GFPGAN":
        torch_options["forward"] = OfficialGfpganCall(descriptor.model)
    return TorchRunner(descriptor, device=device, half=half, bf16=bf16, **torch_options)


def load_graph(path: Path | str, *, threads: int | None = None) -> Graph:
    """A graph with named outputs (the face detector's): a released conversion (a folder) on
    OpenVINO; a graph file on OpenVINO where it is installed, else on OpenCV's dnn module."""
    if Path(path).is_dir() or importlib.util.find_spec("openvino") is not None:
        from .openvino_runner import OpenVinoGraph

        return OpenVinoGraph(Path(path), threads=threads)
    from .opencv_dnn import OpenCvGraph

    return OpenCvGraph(Path(path))
