"""The Neuron runtime (AWS Inferentia): the network compiled for one window shape.

Neuron compiles a network for fixed input shapes, so it runs behind the tiler's fixed-shape
mode (``TileConfig(fixed_shape=True, batch=N)``): every window is ``tile + 2 * pad`` pixels
and every call holds at most ``batch`` of them. The compiler is the one the image has:

- ``torch-neuron`` (Inf1, NeuronCore v1; AWS's ``pytorch-inference-neuron`` image):
  ``torch.neuron.trace(..., dynamic_batch_size=True)``, run through
  ``torch.neuron.DataParallel`` on every NeuronCore of the instance (its dynamic batching
  takes the last, shorter batch of an image);
- ``torch-neuronx`` (Inf2, NeuronCore v2; ``pytorch-inference-neuronx``):
  ``torch_neuronx.trace``, which compiles one batch size: the last batch is padded to it;
- ``cpu-trace``: ``torch.jit.trace`` on the CPU, batch padded as on Inf2. It stands in for the
  Neuron compilers in tests and is used only when asked for by name: without a Neuron package
  and without that request, loading fails (no silent CPU fallback on an Inferentia endpoint).

Compiling takes minutes on the instance and cannot happen ahead of time (the release is built
without Neuron hardware), nor be kept in S3 (the endpoint runs with network isolation). So the
runner compiles on a thread of its own and answers ``ModelWarmingUpError`` (503) until it is
done, or ``ModelCompileError`` if it failed. The compiled file is kept in the instance's local
cache under a file lock: a worker that starts later, or again, loads it instead of compiling.
"""

from __future__ import annotations

import fcntl
import importlib
import importlib.util
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from spandrel import ImageModelDescriptor

from ..errors import InferenceError, ModelCompileError, ModelWarmingUpError
from ..tiling import TileConfig
from . import NeuronCompilerName
from .base import RunnerInfo

if TYPE_CHECKING:
    from .base import Batch

logger = logging.getLogger(__name__)

Module = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class NeuronCompiler:
    """One way to compile a network for fixed-shape windows and to load what it compiled."""

    name: str
    #: The device ``RunnerInfo`` reports.
    device: str
    precision: str
    #: The compiled module takes any batch up to the compiled one (else exactly the compiled one).
    dynamic_batch: bool
    trace: Callable[[torch.nn.Module, torch.Tensor], torch.jit.ScriptModule]
    load: Callable[[Path], Module]


def _jit_load(path: Path) -> Module:
    module: Module = torch.jit.load(str(path))  # type: ignore[no-untyped-call]  # torch.jit carries no annotations
    return module


def _jit_trace(network: torch.nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    traced: torch.jit.ScriptModule = torch.jit.trace(network, example, check_trace=False)  # type: ignore[no-untyped-call]  # as above
    return traced


def _neuron() -> Any:
    """``torch.neuron``, which importing torch_neuron registers (AWS's Inf1 image only; no stubs)."""
    importlib.import_module("torch_neuron")
    return torch.neuron  # type: ignore[attr-defined]  # registered by torch_neuron at import


def _neuronx() -> Any:
    return importlib.import_module("torch_neuronx")


def _neuronx_load(path: Path) -> Module:
    _neuronx()  # registers the Neuron operators a saved trace calls, before torch.jit reads it
    return _jit_load(path)


COMPILERS = {
    compiler.name: compiler
    for compiler in (
        NeuronCompiler(
            name="torch-neuron",
            device="neuron",
            precision="as neuron-cc compiles fp32 by default",
            dynamic_batch=True,
            trace=lambda network, example: _neuron().trace(network, example, dynamic_batch_size=True),
            # _neuron() first: importing torch_neuron registers the operators the saved trace calls.
            load=lambda path: _neuron().DataParallel(_jit_load(path)),
        ),
        NeuronCompiler(
            name="torch-neuronx",
            device="neuron",
            precision="as neuronx-cc compiles fp32 by default",
            dynamic_batch=False,
            trace=lambda network, example: _neuronx().trace(network, example),
            load=_neuronx_load,
        ),
        NeuronCompiler(
            name="cpu-trace",
            device="cpu",
            precision="fp32",
            dynamic_batch=False,
            trace=_jit_trace,
            load=_jit_load,
        ),
    )
}

#: The Python package each Neuron compiler comes in, in the order ``auto`` looks for them.
_PACKAGES = {"torch-neuronx": "torch_neuronx", "torch-neuron": "torch_neuron"}


def pick_compiler(requested: NeuronCompilerName = "auto") -> NeuronCompiler:
    """The compiler ``requested``, or for ``auto`` the Neuron package the image has."""
    if requested != "auto":
        package = _PACKAGES.get(requested)
        if package and importlib.util.find_spec(package) is None:
            raise ModelCompileError(f"the {requested} compiler is not installed in this image")
        return COMPILERS[requested]
    for name, package in _PACKAGES.items():
        if importlib.util.find_spec(package) is not None:
            return COMPILERS[name]
    raise ModelCompileError(
        "the neuron runtime needs torch-neuron (Inf1) or torch-neuronx (Inf2), as AWS's Neuron "
        "inference images have; neither is installed"
    )


def compiled_module(
    descriptor: ImageModelDescriptor, name: str, config: TileConfig, compiler: NeuronCompiler, cache_dir: Path
) -> Module:
    """The network compiled for ``config.batch`` windows of ``config.window`` pixels: loaded
    from ``cache_dir`` if a worker of this instance compiled it already, else compiled and kept
    there. The file lock makes every other worker wait for the one compiling, then load."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{name}.{compiler.name}-{config.window}px-b{config.batch}.pt"
    with (cache_dir / f"{path.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.is_file():
            logger.info("%s: compiling for %d windows of %d px (%s)", name, config.batch, config.window, compiler.name)
            network = descriptor.model.float().eval()
            example = torch.rand(config.batch, 3, config.window, config.window)
            with torch.no_grad():
                module = compiler.trace(network, example)
            partial = path.with_name(f"{path.name}.partial")
            torch.jit.save(module, str(partial))
            os.replace(partial, path)  # a crash mid-save leaves no file that looks complete
        return compiler.load(path)


class NeuronRunner:
    """Runs the compiled network on fixed-shape windows once its compile, started at
    construction on a thread of its own, is done."""

    def __init__(
        self,
        descriptor: ImageModelDescriptor,
        *,
        name: str,
        tiles: TileConfig,
        compiler: NeuronCompiler,
        cache_dir: Path,
        warmup_wait: float = 0.0,
    ) -> None:
        """``warmup_wait``: how long ``run`` waits for the compile before its 503."""
        if not tiles.fixed_shape:
            raise ValueError("the neuron runtime runs fixed-shape windows only (TileConfig(fixed_shape=True))")
        self.tiles = tiles
        self.compiler = compiler
        self.warmup_wait = warmup_wait
        self.info = RunnerInfo(
            runtime="neuron",
            device=compiler.device,
            precision=compiler.precision,
            scale=int(descriptor.scale),
            fixed_shape=True,
        )
        #: The compiled module once ready; None while compiling or after a failed compile.
        self.module: Module | None = None
        self._failure: str | None = None
        self._done = threading.Event()
        self._compiling = threading.Thread(
            target=self._compile, args=(descriptor, name, cache_dir), name=f"compile-{name}", daemon=True
        )
        self._compiling.start()

    def _compile(self, descriptor: ImageModelDescriptor, name: str, cache_dir: Path) -> None:
        try:
            self.module = compiled_module(descriptor, name, self.tiles, self.compiler, cache_dir)
        except Exception as error:  # logged: any failure is the runner's state, answered to every request
            logger.exception("%s: compiling for the %s runtime failed", name, self.compiler.name)
            self._failure = f"compiling the network failed ({type(error).__name__}: {error})"
        finally:
            self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Whether the compile is over (done or failed), waiting up to ``timeout`` seconds."""
        return self._done.wait(timeout)

    def run(self, batch: Batch) -> Batch:
        if not self._done.wait(self.warmup_wait):
            raise ModelWarmingUpError("the network is being compiled for this instance's accelerator; retry shortly")
        if self.module is None:
            raise ModelCompileError(self._failure or "the network was not compiled")
        count, size = batch.shape[0], self.tiles.window
        if batch.shape[1:] != (3, size, size) or count > self.tiles.batch:
            raise InferenceError(f"the compiled network takes up to {self.tiles.batch} windows of {size} px")
        tensor = torch.from_numpy(batch)
        if not self.compiler.dynamic_batch and count < self.tiles.batch:
            # The image's last batch: padded to the compiled batch with zero windows, cut after.
            tensor = torch.cat([tensor, tensor.new_zeros(self.tiles.batch - count, 3, size, size)])
        with torch.no_grad():
            try:
                out = self.module(tensor)[:count].clamp_(0, 1)
            except RuntimeError as error:
                raise InferenceError(f"the network failed on a tile: {error}") from error
        return np.ascontiguousarray(out.float().numpy())
