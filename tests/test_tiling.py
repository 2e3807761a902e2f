"""Tile plans (pure geometry) and seamlessness of tiled output against untiled output."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
from bench.metrics import psnr

from conftest import WHOLE, descriptor_of, load_photo, photo_names, torch_upscaler
from superres.tiling import TileConfig, plan

SIZES = [1, 2, 63, 64, 65, 127, 128, 129, 200, 333, 1080, 1920]
CONFIGS = [
    TileConfig(tile=64, pad=32),
    TileConfig(tile=100, pad=7),
    TileConfig(tile=64, pad=32, fixed_shape=True),
    TileConfig(tile=48, pad=0, fixed_shape=True),
]


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_cores_partition_the_image_and_windows_hold_their_context(config: TileConfig) -> None:
    for height, width in itertools.product(SIZES, SIZES[::3]):
        owner = np.zeros((height, width), np.int32)
        for tile in plan(height, width, config):
            for span, length in ((tile.rows, height), (tile.cols, width)):
                assert 0 <= span.window_start <= span.core_start < span.core_end <= span.window_end <= length
                # every core pixel sees `pad` pixels of real context where the image has them
                assert span.core_start - span.window_start >= min(config.pad, span.core_start)
                assert span.window_end - span.core_end >= min(config.pad, length - span.core_end)
                if config.fixed_shape and length >= config.window:
                    assert span.window_end - span.window_start == config.window
                else:
                    assert span.window_end - span.window_start <= config.window
            owner[tile.rows.core_start : tile.rows.core_end, tile.cols.core_start : tile.cols.core_end] += 1
        assert (owner == 1).all(), f"{height}x{width}: cores overlap or leave holes"


def test_whole_image_is_one_window() -> None:
    (tile,) = plan(1080, 1920, WHOLE)
    assert (tile.rows.window_end, tile.cols.window_end) == (1080, 1920)


@pytest.fixture(scope="module")
def face_crop(astronaut) -> np.ndarray:
    return np.ascontiguousarray(astronaut[40:200, 170:330])


@pytest.fixture(scope="module")
def x4plus_untiled(x4plus, face_crop) -> np.ndarray:
    return x4plus.upscale(face_crop, tiles=WHOLE)


@pytest.mark.parametrize("tile_size", [64, 80])
def test_x4plus_tiles_leave_no_seams(x4plus, face_crop, x4plus_untiled, tile_size: int) -> None:
    """Real-ESRGAN x4plus, the model with the widest receptive field: >= 50 dB down to tile 64.

    RealESRGANer's hard-cut tiles (tile=64, tile_pad=10) score 43.1 dB on this kind of crop.
    bench/engine_bench.py sweeps every photo and larger tiles.
    """
    config = TileConfig(tile=tile_size, pad=32)
    height, width = face_crop.shape[:2]
    assert len(plan(height, width, config)) > 1
    tiled = x4plus.upscale(face_crop, tiles=config)
    assert tiled.shape == x4plus_untiled.shape == (640, 640, 3)
    assert psnr(tiled, x4plus_untiled) >= 50


@pytest.mark.parametrize("photo", photo_names())
def test_every_photo_tiled_matches_untiled(compact, photo: str) -> None:
    pixels = load_photo(photo)
    top, left = (pixels.shape[0] - 200) // 2, (pixels.shape[1] - 200) // 2
    crop = np.ascontiguousarray(pixels[top : top + 200, left : left + 200])
    untiled = compact.upscale(crop, tiles=WHOLE)
    for config in (TileConfig(tile=64, pad=32), TileConfig(tile=64, pad=24, fixed_shape=True, batch=3)):
        assert psnr(compact.upscale(crop, tiles=config), untiled) >= 50


def test_fixed_shape_batches_match_single_tiles(compact, astronaut) -> None:
    crop = astronaut[200:330, 220:370]
    single = compact.upscale(crop, tiles=TileConfig(tile=48, pad=16, fixed_shape=True, batch=1))
    batched = compact.upscale(crop, tiles=TileConfig(tile=48, pad=16, fixed_shape=True, batch=4))
    assert np.abs(single.astype(int) - batched.astype(int)).max() <= 1


def test_fixed_shape_feeds_only_one_shape(compact, astronaut) -> None:
    shapes = set()
    descriptor = copy.deepcopy(descriptor_of(compact))
    real_forward = descriptor.model.forward

    def recording_forward(batch):
        shapes.add(tuple(batch.shape[1:]))
        return real_forward(batch)

    descriptor.model.forward = recording_forward
    upscaler = torch_upscaler(descriptor, name="recorded", bf16=False)
    for crop in (astronaut[:37, :50], astronaut[:200, :333]):
        upscaler.upscale(crop, tiles=TileConfig(tile=64, pad=16, fixed_shape=True, batch=2))
    assert shapes == {(3, 96, 96)}
