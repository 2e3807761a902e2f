"""The torch runtime: spandrel's descriptor on CPU or CUDA.

On CPU it runs oneDNN's channels-last layout and, where the CPU runs bf16 natively, the
network's trunk in bf16 with its first and last layers in fp32; on CUDA fp16 where the
network supports it.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import spandrel
import torch
from spandrel import ImageModelDescriptor

from ..cpu import native_bf16_cpu
from ..errors import InferenceError, ModelMismatchError
from ..manifest import ModelSpec
from .base import RunnerInfo, RunnerOutOfMemoryError

if TYPE_CHECKING:
    from .base import Batch

logger = logging.getLogger(__name__)

#: Architectures whose bf16 trunk was measured against fp32 on real photos.
BF16_TRUNK_ARCHITECTURES = ("ESRGAN", "Compact")


def pick_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(device: torch.device, half: bool | None, supports_half: bool) -> torch.dtype:
    """fp16 only where it is fast and accurate enough, CUDA (by default there); else fp32."""
    if half and device.type != "cuda":
        raise ValueError("fp16 is only supported on CUDA")
    wants_half = device.type == "cuda" if half is None else half
    return torch.float16 if wants_half and supports_half else torch.float32


def load_descriptor(path: Path | str, spec: ModelSpec | None = None) -> ImageModelDescriptor:
    """Load a weight file; spandrel detects the architecture from the state dict.

    A super-resolution network, or the face network (GFPGAN, spandrel's "FaceSR") where
    ``spec`` names one.
    """
    try:
        descriptor = spandrel.ModelLoader().load_from_file(str(path))
    except spandrel.UnsupportedModelError as error:
        raise ModelMismatchError(f"{path}: not a known network architecture ({error})") from None
    purpose = "FaceSR" if spec and spec.architecture == "GFPGAN" else "SR"
    if not isinstance(descriptor, ImageModelDescriptor) or descriptor.purpose != purpose:
        raise ModelMismatchError(
            f"{path}: not a {'face restoration' if purpose == 'FaceSR' else 'super-resolution'} network"
        )
    if spec and (descriptor.architecture.id, descriptor.scale) != (spec.architecture, spec.scale):
        raise ModelMismatchError(
            f"{path}: holds a x{descriptor.scale} {descriptor.architecture.id} network, "
            f"but {spec.name} is a x{spec.scale} {spec.architecture} network"
        )
    return descriptor


class TorchRunner:
    """One spandrel network on one torch device."""

    def __init__(
        self,
        descriptor: ImageModelDescriptor,
        *,
        device: str | torch.device = "auto",
        half: bool | None = None,
        bf16: bool | None = None,
        forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        """``bf16``: None = the bf16 trunk wherever it is native and measured (see
        ``with_bf16_trunk``), True = insist on it (ValueError where impossible), False = fp32.
        ``forward``: what to call instead of the descriptor, in fp32, where the network's authors
        call it differently from spandrel (``OfficialGfpganCall``); the descriptor still says what
        the network is."""
        self.device = pick_device(device)
        self.dtype = torch.float32 if forward else pick_dtype(self.device, half, descriptor.supports_half)
        self.descriptor = descriptor.to(self.device, self.dtype).eval()
        if bf16 is None:
            bf16 = not forward and self.dtype == torch.float32 and bf16_trunk_available(self.descriptor, self.device)
        if bf16 and forward:
            raise ValueError("a network called its authors' way runs in fp32: no bf16 trunk")
        if bf16:
            self.descriptor = with_bf16_trunk(self.descriptor, self.device)
        if self.device.type == "cpu" and not forward:
            # oneDNN's preferred layout on CPU: same numbers, fewer reorders.
            self.descriptor.model.to(memory_format=torch.channels_last)
        self._forward = forward
        precision = "bf16 trunk, fp32 first and last layers" if bf16 else str(self.dtype).removeprefix("torch.")
        self.info = RunnerInfo(
            runtime="torch",
            device=str(self.device),
            precision=precision.replace("float", "fp"),
            scale=int(descriptor.scale),
        )

    def run(self, batch: Batch) -> Batch:
        tensor = torch.from_numpy(batch).to(self.device).to(self.dtype)
        if self.device.type == "cpu" and not self._forward:  # the layout the network was given
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            try:
                # spandrel's descriptor clamps to [0, 1]; the authors' call returns the raw output.
                out = self._forward(tensor).clamp_(0, 1) if self._forward else self.descriptor(tensor)
            # torch.cuda's name: torch.OutOfMemoryError is torch 2.5's, and the core also runs on
            # torch 1.13 (the Inferentia artifact).
            except torch.cuda.OutOfMemoryError:
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                raise RunnerOutOfMemoryError(f"out of memory on {self.device}") from None
            except RuntimeError as error:
                raise InferenceError(f"the network failed on a tile: {error}") from error
            result: Batch = out.float().cpu().numpy()
        return np.ascontiguousarray(result)


class OfficialGfpganCall(torch.nn.Module):
    """GFPGAN on [0, 1] RGB as the official ``GFPGANer`` runs it, for a runner.

    ``GFPGANer`` feeds the network ``normalize(crop / 255, 0.5, 0.5)``, i.e. [-1, 1], and
    reads its output as [-1, 1]. spandrel 0.4's descriptor call for GFPGAN passes its [0, 1]
    input straight through, which is wrong for the official weights. The noise maps are the
    ones stored in the weight file (``randomize_noise=False``), so a face restores the same
    way every time (the official helper draws new noise per call; the difference is fine
    texture); only the image output is kept (``return_rgb=False``).
    """

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network  # a submodule: its weights move, and trace, with this module

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.network(image * 2 - 1, return_rgb=False, randomize_noise=False)[0]
        return (out + 1) * 0.5


class _Bf16(torch.nn.Module):
    """Runs the wrapped layers under bf16 autocast and hands fp32 on."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out: torch.Tensor = self.inner(x)
            return out.float()


def bf16_trunk_available(descriptor: ImageModelDescriptor, device: torch.device) -> bool:
    return device.type == "cpu" and descriptor.architecture.id in BF16_TRUNK_ARCHITECTURES and native_bf16_cpu()


def with_bf16_trunk(descriptor: ImageModelDescriptor, device: torch.device) -> ImageModelDescriptor:
    """A copy whose trunk runs in bf16 on CPU matrix units; the first and last layers stay fp32.

    RealESRGAN_x4plus entirely in bf16 fell to 48.9 dB against fp32 on
    chelsea.png; with the RRDB trunk (>90% of its FLOPs) in bf16 and the
    upsampler in fp32, five photos scored 53.1-57.8 dB. The compact network
    with everything after its first conv + PReLU in bf16: 58.9-61.3 dB on six
    photos (its final pixel shuffle and nearest-neighbour base stay fp32).
    """
    if device.type != "cpu" or not native_bf16_cpu():
        raise ValueError("bf16 needs a CPU with native bf16 support (AMX or AVX512-BF16)")
    architecture = descriptor.architecture.id
    if architecture not in BF16_TRUNK_ARCHITECTURES:
        raise ValueError(f"bf16 is measured for {' and '.join(BF16_TRUNK_ARCHITECTURES)} networks, not {architecture}")
    fast = copy.deepcopy(descriptor)
    if architecture == "ESRGAN":
        layers = fast.model.model  # spandrel's RRDBNet: conv, trunk (ShortcutBlock), upsampler...
        layers[1] = _Bf16(layers[1])
    else:
        body = fast.model.body  # spandrel's SRVGGNetCompact: conv, activation, (conv, activation)*n, conv
        fast.model.body = torch.nn.ModuleList([body[0], body[1], _Bf16(torch.nn.Sequential(*body[2:]))])
    logger.info("%s: bf16 trunk on this CPU", architecture)
    return fast
