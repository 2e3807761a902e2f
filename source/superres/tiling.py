"""Where the tiles go.

Each tile owns a *core* of the image and is run on a *window*: the core plus
``pad`` pixels of real image context on every side that has any. Only the
core of each output is kept, so no output pixel is computed next to an
artificial border. Blending overlapping outputs instead was measured worse
(43.5 dB against 54.9 dB for context cropping at the same cost, tile 64,
RealESRGAN_x4plus), because Real-ESRGAN's receptive field is far wider than
any practical overlap: what matters is how much context each kept pixel saw.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class TileConfig:
    """How an image is cut. Memory per forward pass is bounded by ``window``^2 x batch."""

    #: Edge of a tile's core in input pixels; 0 runs the whole image at once.
    #: 256 (a 320 px window) keeps RealESRGAN_x4plus under 2 GB peak RSS on CPU.
    tile: int = 256
    #: Context on each side of the core, in input pixels.
    pad: int = 32
    #: Every window exactly ``window`` x ``window`` (edge windows shifted
    #: inward, small images padded): the shape a compiled engine needs.
    fixed_shape: bool = False
    #: Windows of equal shape run together in one forward pass.
    batch: int = 1

    def __post_init__(self) -> None:
        if self.tile < 0 or self.pad < 0 or self.batch < 1:
            raise ValueError("tile and pad must be >= 0 and batch >= 1")
        if self.fixed_shape and self.tile == 0:
            raise ValueError("fixed_shape needs a tile size")

    @property
    def window(self) -> int:
        return self.tile + 2 * self.pad


@dataclass(frozen=True)
class Span:
    """One axis of a tile: the core it writes and the window it reads, [start, end)."""

    core_start: int
    core_end: int
    window_start: int
    window_end: int


@dataclass(frozen=True)
class Tile:
    rows: Span
    cols: Span


def plan_axis(length: int, config: TileConfig) -> list[Span]:
    window = config.window
    if config.tile == 0 or length <= window:
        return [Span(0, length, 0, length)]
    count = math.ceil(length / config.tile)
    bounds = [round(i * length / count) for i in range(count + 1)]
    spans = []
    for start, end in itertools.pairwise(bounds):
        if config.fixed_shape:
            # Shift the window inward at the edges instead of padding: same
            # shape, and the network sees real pixels rather than padding.
            window_start = min(max(start - config.pad, 0), length - window)
            spans.append(Span(start, end, window_start, window_start + window))
        else:
            spans.append(Span(start, end, max(start - config.pad, 0), min(end + config.pad, length)))
    return spans


def plan(height: int, width: int, config: TileConfig) -> list[Tile]:
    """Tiles in row-major order; their cores partition the image exactly."""
    return [Tile(rows, cols) for rows in plan_axis(height, config) for cols in plan_axis(width, config)]
