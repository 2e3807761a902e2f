"""The OpenVINO runtime: the network converted to OpenVINO IR, run by its CPU plugin.

``OpenVinoRunner`` runs an image network (the upscalers; GFPGAN on its fixed 512x512 crop);
``OpenVinoGraph`` runs a graph with named outputs (YuNet, whose outputs the face detector
decodes itself).

On CPUs that run bf16 natively the network runs in bf16 as its manifest entry's plan says
(``ModelSpec.openvino``); elsewhere in fp32. "bf16": every layer, as OpenVINO does by
default (realesr-animevideov3 and the 6-block anime network: 53 dB and more against fp32
on every shared photo). "bf16 after fp32 head": the 23-block RealESRGAN_x4plus fell to
50.0 dB on chelsea.png with every layer in bf16, because the first convolution rounds the
pixels themselves to bf16's 8-bit mantissa; with that one layer in fp32, 53.4 dB and more.
The CPU plugin takes one precision per compiled model, so such a network converts into
two parts: ``head`` (the first layer, fp32) and ``rest`` (everything after it, bf16), which
also takes the image where the network adds it back at the end (Compact). The split costs
about a fifth of the speed of a small network (realesr-animevideov3) and nothing
measurable on x4plus, hence a plan per network.

Conversion (``convert``) needs torch and spandrel; running needs only OpenVINO and numpy,
so the Lambda zip carries converted files and no torch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import openvino as ov

from ..cpu import native_bf16_cpu, usable_cores
from ..errors import InferenceError, ModelMismatchError
from ..manifest import ModelSpec
from ..store import sha256_of
from .base import RunnerInfo

if TYPE_CHECKING:
    from .base import Batch

logger = logging.getLogger(__name__)

#: Bumped when what ``convert`` writes changes, so older conversions are not reused.
CONVERSION_VERSION = 1
#: The plans that run in bf16 where the CPU has it natively; "fp32" networks only when asked.
BF16_PLANS = ("bf16", "bf16 after fp32 head")


def openvino_version() -> str:
    """The release of the OpenVINO installed, e.g. ``2026.4.1`` (without its build suffix)."""
    return str(ov.get_version()).split("-")[0]


def conversion_dir(cache: Path, spec: ModelSpec, weights: Path) -> Path:
    """Where ``weights`` converted for this OpenVINO live: another weight file, plan,
    converter or OpenVINO version gets a folder of its own."""
    key = hashlib.sha256(f"{sha256_of(weights)}|{spec.openvino}|{CONVERSION_VERSION}".encode())
    return cache / f"{spec.name}-{key.hexdigest()[:16]}-ov{openvino_version()}"


class OpenVinoRunner:
    """A converted network compiled for this machine's CPU."""

    def __init__(
        self, folder: Path, spec: ModelSpec, *, bf16: bool | None = None, threads: int | None = None, streams: int = 1
    ) -> None:
        """``bf16``: None = wherever the CPU runs it natively and the network's plan was
        checked, True = insist (ValueError where impossible), False = fp32. ``threads``: the
        cores all ``streams`` (calls that can run at once) share; default, the cores this
        process may use."""
        split = (folder / "head.xml").exists()
        if bf16 is None:
            bf16 = spec.openvino in BF16_PLANS and native_bf16_cpu()
        if bf16 and not native_bf16_cpu():
            raise ValueError("bf16 needs a CPU with native bf16 support (AMX or AVX512-BF16)")
        if bf16 and spec.openvino is None:
            raise ValueError(f"{spec.name} is not checked on OpenVINO")
        core = ov.Core()
        total = threads or usable_cores()

        def compile_part(name: str, precision: str) -> Any:
            config = {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": total, "NUM_STREAMS": streams}
            return core.compile_model(core.read_model(folder / f"{name}.xml"), "CPU", config)

        if split:
            self._parts = [compile_part("head", "f32"), compile_part("rest", "bf16" if bf16 else "f32")]
        else:
            self._parts = [compile_part("network", "bf16" if bf16 else "f32")]
        precision = (spec.openvino if spec.openvino in BF16_PLANS else "bf16") if bf16 else "fp32"
        fixed = self._parts[0].input(0).get_partial_shape().is_static  # GFPGAN: 1x3x512x512 only
        self.info = RunnerInfo(
            runtime="openvino", device="cpu", precision=str(precision), scale=spec.scale, fixed_shape=fixed
        )

    def run(self, batch: Batch) -> Batch:
        # Requests per call: one compiled model serves concurrent calls, a request does not.
        try:
            if len(self._parts) == 1:
                request = self._parts[0].create_infer_request()
                request.infer([batch], share_inputs=True)
            else:
                head, rest = self._parts
                first = head.create_infer_request()
                first.infer([batch], share_inputs=True)
                # The head's output tensor goes on as it is, no copy; the rest takes the image
                # too where the network adds it back (Compact).
                features = first.get_output_tensor(0)
                request = rest.create_infer_request()
                request.infer([batch, features] if len(rest.inputs) == 2 else [features], share_inputs=True)
            out: Batch = request.get_output_tensor(0).data.copy()
        except RuntimeError as error:
            raise InferenceError(f"the network failed on a tile: {error}") from error
        return np.clip(out, 0, 1, out=out)


def convert(weights: Path, spec: ModelSpec, folder: Path) -> Path:
    """Convert ``spec``'s weight file into OpenVINO IR in ``folder`` (created; returned).

    A PyTorch weight file needs torch and spandrel (a build-time and local step); an ONNX
    graph (YuNet) needs OpenVINO's ONNX reader, which the Lambda zip leaves out. The IR keeps
    fp32 weights; the precision is chosen when the runner compiles it.
    """
    models = {"network": ov.convert_model(str(weights))} if spec.runtime == "onnx" else _convert_torch(weights, spec)
    # Written beside the target, then renamed: a reader sees a whole conversion or none.
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    for name, model in models.items():
        ov.save_model(model, scratch / f"{name}.xml", compress_to_fp16=False)
    try:
        scratch.rename(folder)
    except OSError:  # another process converted it first: theirs is the same
        shutil.rmtree(scratch)
    return folder


def _convert_torch(weights: Path, spec: ModelSpec) -> dict[str, Any]:
    """The OpenVINO models of a spandrel network, by part name."""
    import torch

    from .torch_runner import OfficialGfpganCall, load_descriptor

    network = load_descriptor(weights, spec).model.eval()
    with torch.no_grad():
        if spec.architecture == "GFPGAN":
            # A static shape: the modulated convolutions compute their weights per call, which
            # the CPU plugin takes only with a static weight shape.
            crop = torch.rand(1, 3, 512, 512)
            return {
                "network": ov.convert_model(OfficialGfpganCall(network), example_input=crop, input=[list(crop.shape)])
            }
        example = torch.rand(1, 3, 64, 64)
        image = [-1, 3, -1, -1]
        parts = _split(network, spec.architecture) if spec.openvino == "bf16 after fp32 head" else None
        if parts is None:
            return {"network": ov.convert_model(network, example_input=example, input=[image])}
        head, rest, takes_image = parts
        features = head(example)
        channels = [-1, int(features.shape[1]), -1, -1]
        return {
            "head": ov.convert_model(head, example_input=example, input=[image]),
            "rest": ov.convert_model(
                rest,
                example_input=(example, features) if takes_image else features,
                input=[image, channels] if takes_image else [channels],
            ),
        }


def _split(network: Any, architecture: str) -> tuple[Any, Any, bool]:
    """The network as (its first layer, the rest, whether the rest takes the image too).

    The rest takes the first layer's output, and the image as well where the network adds
    it back at the end (Compact's nearest-neighbour base).
    """
    import torch
    import torch.nn.functional as F

    if architecture == "ESRGAN" and not network.shuffle_factor:
        layers = network.model  # spandrel's RRDBNet: conv_first, trunk, upsampler...
        return layers[0], torch.nn.Sequential(*layers[1:]), False
    if architecture == "Compact":

        class CompactRest(torch.nn.Module):
            """spandrel's SRVGGNetCompact after its first conv and activation."""

            def __init__(self) -> None:
                super().__init__()
                self.body = torch.nn.Sequential(*network.body[2:])
                self.upsampler = network.upsampler
                self.scale = network.upscale

            def forward(self, image: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
                out: torch.Tensor = self.upsampler(self.body(features))
                return out + F.interpolate(image, scale_factor=self.scale, mode="nearest")

        return torch.nn.Sequential(network.body[0], network.body[1]), CompactRest(), True
    raise ValueError(f"no fp32 head is split off a {architecture} network (unpixel-shuffled ESRGAN and Compact are)")


def ensure_converted(weights: Path, spec: ModelSpec, cache: Path) -> Path:
    """The folder of ``weights`` converted for this OpenVINO, converting it on first use."""
    folder = conversion_dir(cache, spec, weights)
    if not folder.is_dir():
        if spec.runtime != "onnx" and importlib.util.find_spec("torch") is None:
            raise ModelMismatchError(
                f"{spec.name}: no OpenVINO conversion in {folder}, and converting needs torch "
                "(the release build converts the networks it ships)"
            )
        logger.info("%s: converting to OpenVINO IR in %s (once)", spec.name, folder)
        convert(weights, spec, folder)
    return folder


class OpenVinoGraph:
    """A graph with named outputs (YuNet), in fp32 on the CPU; safe to call from many threads.

    ``path``: a released conversion (a folder holding ``network.xml``: what the Lambda zip's
    IR-only OpenVINO reads) or a graph file OpenVINO reads as it is (ONNX, where its ONNX
    reader is installed). Input shapes may vary from call to call where the graph's do.
    """

    runtime = "openvino"

    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        source = path / "network.xml" if path.is_dir() else path
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads or usable_cores()}
        try:
            self._compiled = core.compile_model(core.read_model(source), "CPU", config)
        except RuntimeError as error:
            raise ModelMismatchError(f"{path}: OpenVINO cannot read it as a network ({error})") from None
        # Every name of every output: an ONNX graph's outputs also carry their tensor numbers.
        self._outputs = [(name, output) for output in self._compiled.outputs for name in output.get_names()]

    def __call__(self, blob: np.ndarray) -> dict[str, np.ndarray]:
        """Every output by name for one input (a request per call: one compiled model serves
        concurrent calls, a request does not)."""
        request = self._compiled.create_infer_request()
        try:
            request.infer([blob])
        except RuntimeError as error:
            raise InferenceError(f"the network failed: {error}") from error
        return {name: request.get_tensor(output).data.copy() for name, output in self._outputs}
