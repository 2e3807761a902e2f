"""Run a super-resolution network over an image of any size in bounded memory.

``Upscaler`` is the tiler: it owns windows, seams, alpha, 16-bit, progress and failure
rules once, and hands each batch of windows to a runner (``superres.runtimes``: torch,
OpenVINO), chosen at load. It holds no per-call state, so one instance serves concurrent
calls (each call builds its own arrays). The output array is allocated once at its final
size and every tile writes its core straight into it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .errors import BadRequestError, InferenceError
from .manifest import ModelSpec
from .runtimes import Runner, RunnerOutOfMemoryError, load_runner
from .sizes import output_size
from .tiling import Tile, TileConfig, plan

logger = logging.getLogger(__name__)

#: Below this core size an out-of-memory retry gives up instead of halving again.
MIN_RETRY_TILE = 32

ProgressCallback = Callable[[int, int], None]


class Upscaler:
    """One network behind one runner; ``upscale`` is safe to call from many threads."""

    def __init__(self, runner: Runner, *, name: str, tiles: TileConfig | None = None) -> None:
        self.runner = runner
        self.name = name
        self.tiles = tiles or TileConfig()
        info = runner.info
        logger.info("%s: %s on %s, %s", name, info.runtime, info.device, info.precision)

    @classmethod
    def from_file(
        cls, path: Path | str, spec: ModelSpec, *, tiles: TileConfig | None = None, **runtime: Any
    ) -> Upscaler:
        """``spec``'s network from ``path`` on the runtime ``runtime`` options choose
        (``runtimes.load_runner``: runtime, device, half, bf16, threads, streams, and the Neuron
        runtime's compiler and cache, which compiles for ``tiles``)."""
        return cls(load_runner(path, spec, tiles=tiles, **runtime), name=spec.name, tiles=tiles)

    @property
    def native_scale(self) -> int:
        return self.runner.info.scale

    def upscale(
        self,
        pixels: np.ndarray,
        scale: float | None = None,
        *,
        size: tuple[int, int] | None = None,
        tiles: TileConfig | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        """Return ``pixels`` (H x W x C, C in 1/3/4, uint8/uint16) enlarged to ``size``
        (width, height), else ``scale`` times (``output_size``), else at the network's scale.

        Colour goes through the network at its native scale; any other output size is then
        an exact Lanczos resize of that (down for a smaller scale, up for a larger one), so
        the native scale itself is the network's output untouched. Alpha is enlarged with
        Lanczos (smooth, and never invents edges the mask did not have); grayscale runs as
        RGB and is converted back.
        """
        if pixels.ndim != 3 or pixels.shape[2] not in (1, 3, 4):
            raise BadRequestError("pixels must be H x W x C with C = 1, 3 or 4")
        if pixels.dtype not in (np.uint8, np.uint16):
            raise BadRequestError("pixels must be uint8 or uint16")
        height, width, channels = pixels.shape
        size = size or output_size(width, height, self.native_scale if scale is None else scale)
        if min(size) < 1:
            raise BadRequestError(f"the output must be at least 1x1 pixels, not {size[0]}x{size[1]}")
        rgb = np.repeat(pixels, 3, axis=2) if channels == 1 else pixels[:, :, :3]
        result = self._run_network(rgb, tiles or self.tiles, on_progress)
        if (result.shape[1], result.shape[0]) != size:
            result = lanczos_resize(result, size)
        if channels == 1:
            return to_gray(result)
        if channels == 4:
            return np.dstack((result, lanczos_resize(pixels[:, :, 3:], size)))
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
        except RunnerOutOfMemoryError:
            if len(batch) > 1:
                logger.warning("out of memory on a batch of %d tiles; running them one by one", len(batch))
                return [self._forward_tiles(rgb, [tile], config)[0] for tile in batch]
            smaller = (config.tile or max(windows[0].shape[:2])) // 2
            if smaller < MIN_RETRY_TILE:
                raise InferenceError(
                    f"out of memory even for {config.tile}px tiles on {self.runner.info.device}"
                ) from None
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
        # One float32 copy in the runners' N x C x H x W layout, scaled in place (in fp32:
        # 65535 does not fit in fp16).
        batch = np.ascontiguousarray(np.stack(windows).transpose(0, 3, 1, 2), dtype=np.float32)
        batch /= np.float32(top)
        try:
            out = self.runner.run(batch)
        except InferenceError as error:
            raise InferenceError(f"{self.name}: {error.message}") from error
        if not np.isfinite(out).all():
            raise InferenceError(f"{self.name} produced non-finite values on a tile")
        out = np.rint(out.transpose(0, 2, 3, 1) * np.float32(top))
        s = self.native_scale
        return [
            out[i, : h * s, : w * s].astype(windows[0].dtype)
            for i, (h, w) in enumerate(zip(heights, widths, strict=True))
        ]


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


def lanczos_resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``pixels`` (H x W x C, uint8/uint16) resized to ``size`` (width, height) with Pillow's
    Lanczos, which antialiases when it shrinks; each channel goes through Pillow's float
    mode so 16-bit samples keep their precision."""
    top = np.iinfo(pixels.dtype).max
    planes = [
        np.asarray(Image.fromarray(pixels[:, :, c].astype(np.float32)).resize(size, Image.Resampling.LANCZOS))
        for c in range(pixels.shape[2])
    ]
    return np.clip(np.round(np.dstack(planes)), 0, top).astype(pixels.dtype)


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """Luma of ITU-R BT.601 (what grayscale JPEG and PNG viewers assume), H x W x 1."""
    luma = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(np.round(luma), 0, np.iinfo(rgb.dtype).max).astype(rgb.dtype)[:, :, None]
