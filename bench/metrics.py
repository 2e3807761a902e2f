"""Image quality metrics shared by the benchmarks and the tests."""

from __future__ import annotations

import math

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two integer images of one shape and dtype; inf if equal."""
    if a.shape != b.shape or a.dtype != b.dtype:
        raise ValueError(f"cannot compare {a.shape} {a.dtype} with {b.shape} {b.dtype}")
    # float64: squared uint8 differences overflow in their own dtype.
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    peak = float(np.iinfo(a.dtype).max)
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)
