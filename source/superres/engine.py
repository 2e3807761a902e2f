"""Run a super-resolution network over an image of any size in bounded memory.

``Upscaler`` holds one loaded network and no per-call state, so one instance
serves concurrent calls (each call builds its own tensors and output array).
The output array is allocated once at its final size and every tile writes its
core straight into it.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import spandrel
import torch
from spandrel import ImageModelDescriptor

from .errors import BadRequestError, InferenceError, ModelMismatchError
from .manifest import ModelSpec
from .tiling import Tile, TileConfig, plan

logger = logging.getLogger(__name__)

#: Below this core size an out-of-memory retry gives up instead of halving again.
MIN_RETRY_TILE = 32

ProgressCallback = Callable[[int, int], None]


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
    """Load a weight file; spandrel detects the architecture from the state dict."""
    try:
        descriptor = spandrel.ModelLoader().load_from_file(str(path))
    except spandrel.UnsupportedModelError as error:
        raise ModelMismatchError(f"{path}: not a known network architecture ({error})") from None
    if not isinstance(descriptor, ImageModelDescriptor) or descriptor.purpose != "SR":
        raise ModelMismatchError(f"{path}: not a super-resolution network")
    if spec and (descriptor.architecture.id, descriptor.scale) != (spec.architecture, spec.scale):
        raise ModelMismatchError(
            f"{path}: holds a x{descriptor.scale} {descriptor.architecture.id} network, "
            f"but {spec.name} is a x{spec.scale} {spec.architecture} network"
        )
    return descriptor


class Upscaler:
    """One network on one device; ``upscale`` is safe to call from many threads."""

    def __init__(
        self,
        descriptor: ImageModelDescriptor,
        *,
        name: str,
        device: str | torch.device = "auto",
        half: bool | None = None,
        bf16: bool | None = None,
        tiles: TileConfig | None = None,
        compiled: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        """``bf16``: None = the bf16 trunk wherever it is native and measured (see
        ``_with_bf16_trunk``), True = insist on it (ValueError where impossible), False = fp32.
        ``compiled``: the descriptor's network compiled ahead of time (torch-neuron's trace
        for fixed-shape tiles), called instead of it on fp32 batches; the descriptor still
        says what the network is."""
        self.name = name
        self.device = pick_device(device)
        self.dtype = torch.float32 if compiled else pick_dtype(self.device, half, descriptor.supports_half)
        self.descriptor = descriptor.to(self.device, self.dtype).eval()
        if bf16 is None:
            bf16 = not compiled and self.dtype == torch.float32 and _bf16_trunk_available(self.descriptor, self.device)
        if bf16 and compiled:
            raise ValueError("a compiled network runs as it was compiled: no bf16 trunk")
        if bf16:
            self.descriptor = _with_bf16_trunk(self.descriptor, self.device)
        logger.info("%s on %s, %s%s", name, self.device, self.dtype, " with a bf16 trunk" if bf16 else "")
        if self.device.type == "cpu" and not compiled:
            # oneDNN's preferred layout on CPU: same numbers, fewer reorders.
            self.descriptor.model.to(memory_format=torch.channels_last)
        self._compiled = compiled
        self.tiles = tiles or TileConfig()

    @classmethod
    def from_file(cls, path: Path | str, spec: ModelSpec | None = None, **options: Any) -> Upscaler:
        name = spec.name if spec else Path(path).stem
        return cls(load_descriptor(path, spec), name=name, **options)

    @property
    def native_scale(self) -> int:
        return int(self.descriptor.scale)

    def upscale(
        self,
        pixels: np.ndarray,
        scale: int | None = None,
        *,
        tiles: TileConfig | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        """Return ``pixels`` (H x W x C, C in 1/3/4, uint8/uint16) enlarged ``scale`` times.

        Colour goes through the network; alpha is enlarged with Lanczos
        (smooth, and never invents edges the mask did not have); grayscale
        runs as RGB and is converted back. A scale below the network's runs
        the network and then a Lanczos downscale, so every output is exactly
        ``scale`` x the input.
        """
        scale = self.native_scale if scale is None else scale
        if not 1 <= scale <= self.native_scale:
            raise BadRequestError(f"scale must be between 1 and {self.native_scale} for {self.name}")
        if pixels.ndim != 3 or pixels.shape[2] not in (1, 3, 4):
            raise BadRequestError("pixels must be H x W x C with C = 1, 3 or 4")
        if pixels.dtype not in (np.uint8, np.uint16):
            raise BadRequestError("pixels must be uint8 or uint16")
        height, width, channels = pixels.shape
        rgb = np.repeat(pixels, 3, axis=2) if channels == 1 else pixels[:, :, :3]
        result = self._run_network(rgb, tiles or self.tiles, on_progress)
        size = (width * scale, height * scale)
        if scale != self.native_scale:
            result = cv2.resize(result, size, interpolation=cv2.INTER_LANCZOS4)
        if channels == 1:
            return cv2.cvtColor(result, cv2.COLOR_RGB2GRAY)[:, :, None]
        if channels == 4:
            alpha = cv2.resize(pixels[:, :, 3], size, interpolation=cv2.INTER_LANCZOS4)
            return np.dstack((result, alpha))
        return result

    def _run_network(self, rgb: np.ndarray, config: TileConfig, on_progress: ProgressCallback | None) -> np.ndarray:
        height, width, _ = rgb.shape
        s = self.native_scale
        output = np.empty((height * s, width * s, 3), dtype=rgb.dtype)
        tiles = plan(height, width, config)
        done = 0
        for batch in _batches(tiles, config.batch):
            for tile, result in zip(batch, self._forward_tiles(rgb, batch, config), strict=True):
                rows, cols = tile.rows, tile.cols
                output[rows.core_start * s : rows.core_end * s, cols.core_start * s : cols.core_end * s] = result[
                    (rows.core_start - rows.window_start) * s : (rows.core_end - rows.window_start) * s,
                    (cols.core_start - cols.window_start) * s : (cols.core_end - cols.window_start) * s,
                ]
            done += len(batch)
            if on_progress:
                on_progress(done, len(tiles))
        return output

    def _forward_tiles(self, rgb: np.ndarray, batch: list[Tile], config: TileConfig) -> list[np.ndarray]:
        """Network output of each tile's window, as H x W x 3 arrays of ``rgb``'s dtype."""
        windows = [rgb[t.rows.window_start : t.rows.window_end, t.cols.window_start : t.cols.window_end] for t in batch]
        try:
            return self._forward(windows, config.window if config.fixed_shape else None)
        except torch.OutOfMemoryError:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(batch) > 1:
                logger.warning("out of memory on a batch of %d tiles; running them one by one", len(batch))
                return [self._forward_tiles(rgb, [tile], config)[0] for tile in batch]
            smaller = (config.tile or max(windows[0].shape[:2])) // 2
            if smaller < MIN_RETRY_TILE:
                raise InferenceError(f"out of memory even for {config.tile}px tiles on {self.device}") from None
            logger.warning("out of memory on a %dpx tile; retrying it with %dpx tiles", config.tile, smaller)
            retry = TileConfig(tile=smaller, pad=config.pad, batch=1)
            return [self._run_network(np.ascontiguousarray(windows[0]), retry, None)]

    def _forward(self, windows: list[np.ndarray], fixed: int | None) -> list[np.ndarray]:
        top = float(np.iinfo(windows[0].dtype).max)
        heights = [w.shape[0] for w in windows]
        widths = [w.shape[1] for w in windows]
        if fixed:
            # Images smaller than the fixed window: mirror them up to its shape
            # (of the paddings measured, the closest to the unpadded output).
            windows = [
                np.pad(w, ((0, fixed - w.shape[0]), (0, fixed - w.shape[1]), (0, 0)), mode="symmetric") for w in windows
            ]
        batch = torch.from_numpy(np.stack(windows)).permute(0, 3, 1, 2)
        # Scale in fp32: 65535 does not fit in fp16.
        batch = batch.to(self.device).float().div_(top).to(self.dtype)
        if self.device.type == "cpu":
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            try:
                # spandrel's descriptor clamps to [0, 1]; a compiled network's output is raw.
                out = self._compiled(batch).clamp_(0, 1) if self._compiled else self.descriptor(batch)
            except torch.OutOfMemoryError:
                raise
            except RuntimeError as error:
                raise InferenceError(f"{self.name} failed on a tile: {error}") from error
            if not torch.isfinite(out).all():
                raise InferenceError(f"{self.name} produced non-finite values on a tile")
            out = out.float().mul_(top).round_().permute(0, 2, 3, 1).cpu().numpy()
        s = self.native_scale
        return [
            out[i, : h * s, : w * s].astype(windows[0].dtype)
            for i, (h, w) in enumerate(zip(heights, widths, strict=True))
        ]


class _Bf16(torch.nn.Module):
    """Runs the wrapped layers under bf16 autocast and hands fp32 on."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out: torch.Tensor = self.inner(x)
            return out.float()


#: Architectures whose bf16 trunk was measured against fp32 on real photos.
BF16_TRUNK_ARCHITECTURES = ("ESRGAN", "Compact")


@functools.cache
def native_bf16_cpu() -> bool:
    """True where oneDNN runs bf16 on matrix units (AMX) or AVX512-BF16, not emulated.

    torch's own check only asks for AVX-512, where bf16 is emulated and slower
    than fp32, so the CPU flags decide (Linux, which is where Lambda runs).
    """
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return torch.ops.mkldnn._is_mkldnn_bf16_supported() and ("amx_bf16" in flags or "avx512_bf16" in flags)


def _bf16_trunk_available(descriptor: ImageModelDescriptor, device: torch.device) -> bool:
    return device.type == "cpu" and descriptor.architecture.id in BF16_TRUNK_ARCHITECTURES and native_bf16_cpu()


def _with_bf16_trunk(descriptor: ImageModelDescriptor, device: torch.device) -> ImageModelDescriptor:
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
    return fast


def _batches(tiles: list[Tile], size: int) -> Iterator[list[Tile]]:
    """Consecutive tiles of one window shape, at most ``size`` at a time."""
    batch: list[Tile] = []
    for tile in tiles:
        if batch and (len(batch) == size or _shape(batch[0]) != _shape(tile)):
            yield batch
            batch = []
        batch.append(tile)
    if batch:
        yield batch


def _shape(tile: Tile) -> tuple[int, int]:
    return (
        tile.rows.window_end - tile.rows.window_start,
        tile.cols.window_end - tile.cols.window_start,
    )
