"""superres.geometry against OpenCV (the test oracle; no host of the kit imports OpenCV for it)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from superres.geometry import area_resize, blurred_rectangle, invert_affine, rgb_to_gray, warp_affine

#: Shrinks 0.91x (above the reduce-first limit) and turns 9 degrees, with fractional shifts; the top and left of the result lie beyond the source.
MATRIX = np.array([[0.9, 0.15, 60.5], [-0.15, 0.9, 80.25]])


def test_warp_matches_opencvs_bilinear_warp(astronaut: np.ndarray) -> None:
    border = (132, 133, 135)
    ours = warp_affine(astronaut, MATRIX, (512, 512), border)
    theirs = cv2.warpAffine(astronaut, MATRIX, (512, 512), flags=cv2.INTER_LINEAR, borderValue=border)
    difference = np.abs(ours.astype(np.int16) - theirs)
    # OpenCV steps sample positions by 1/32 pixel and weights by 1/2048: a level at sharp edges
    # (measured: max 1, mean 0.0001).
    assert difference.max() <= 2 and difference.mean() < 0.01
    # Beyond the source, the border.
    outside = cv2.warpAffine(np.ones(astronaut.shape[:2], np.float32), MATRIX, (512, 512), borderValue=0) == 0
    assert outside.sum() > 1000 and (ours[outside] == border).all()
    floats = astronaut.astype(np.float32) / 255
    ours_float = warp_affine(floats, MATRIX, (512, 512), (0.0, 0.0, 0.0))
    theirs_float = cv2.warpAffine(floats, MATRIX, (512, 512), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    assert ours_float.dtype == np.float32 and np.abs(ours_float - theirs_float).max() < 0.02


def test_warp_keeps_16_bit_and_gray(astronaut: np.ndarray) -> None:
    gray16 = (cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257)[:, :, None][:, :, 0]
    ours = warp_affine(gray16, MATRIX, (300, 200), 1000.0)
    theirs = cv2.warpAffine(gray16, MATRIX, (300, 200), flags=cv2.INTER_LINEAR, borderValue=1000)
    assert ours.dtype == np.uint16 and ours.shape == (200, 300)
    assert np.abs(ours.astype(np.int32) - theirs).max() <= 2 * 257


@pytest.mark.parametrize("size", [(133, 100), (200, 150), (97, 61), (512, 512)])
def test_area_resize_matches_inter_area(astronaut: np.ndarray, size: tuple[int, int]) -> None:
    ours = area_resize(astronaut, size)
    theirs = cv2.resize(astronaut, size, interpolation=cv2.INTER_AREA)
    difference = np.abs(ours.astype(np.int16) - theirs)
    # OpenCV rounds its exact halving (200x150) in fixed point; elsewhere rounding alone.
    assert ours.shape == theirs.shape and difference.max() <= 1 and difference.mean() < 0.2


def test_blurred_rectangle_is_opencvs_gaussian_blur() -> None:
    mask = np.zeros((512, 512), np.float32)
    mask[26:-26, 26:-26] = 1
    theirs = np.clip(cv2.GaussianBlur(mask, (51, 51), 0), 0, 1)
    assert np.abs(blurred_rectangle(512, 26, 51) - theirs).max() < 1e-6


def test_gray_and_inverse_match_opencv(astronaut: np.ndarray) -> None:
    floats = astronaut.astype(np.float32) / 255
    assert np.abs(rgb_to_gray(floats) - cv2.cvtColor(floats, cv2.COLOR_RGB2GRAY)).max() < 1e-6
    assert np.abs(invert_affine(MATRIX) - cv2.invertAffineTransform(MATRIX)).max() < 1e-12
