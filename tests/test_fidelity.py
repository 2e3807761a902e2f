"""Our engine against an independent one: ncnn on the original Real-ESRGAN files.

``NcnnUpscaler`` (bench/references.py) shares no code and no bytes with our
engine, only the network's weights (our .pth copies were converted from its
.param/.bin). Agreement shows that the weights load into the right
architecture and that colour order, normalisation and rounding match.
Tiling against untiled output is tests/test_tiling.py's concern.
"""

from __future__ import annotations

import numpy as np
import pytest
from bench.metrics import psnr
from bench.references import NcnnUpscaler

#: The astronaut's face: skin, hair and fabric edges.
CROP = (slice(40, 136), slice(170, 266))


@pytest.mark.parametrize("fixture", ["x4plus", "compact"])
def test_engine_matches_ncnn(request: pytest.FixtureRequest, astronaut: np.ndarray, fixture: str) -> None:
    ours = request.getfixturevalue(fixture)
    crop = np.ascontiguousarray(astronaut[CROP])
    expected = NcnnUpscaler(ours.name, threads=2).upscale(crop)
    got = ours.upscale(crop, 4)
    assert got.shape == expected.shape == (384, 384, 3)
    value = psnr(got, expected)
    print(f"{ours.name}: PSNR vs ncnn {value:.2f} dB")
    assert value >= 50
