"""Peak memory is bounded by the tile, not the image: measured in fresh processes.

RealESRGAN_x4plus at 1920x1080 takes over ten minutes on two CPU cores, so
this test runs the compact network; bench/engine_bench.py --rss-size 1920x1080
measures x4plus (figures in README).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import SHARED

CHILD = """
import json, sys
from bench.machine import peak_rss_mb
import numpy as np, torch
from superres.codec import decode
from superres.engine import Upscaler
from superres.manifest import get_spec
from superres.store import ModelStore
torch.set_num_threads(2)
width, height, shared = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
spec = get_spec("realesr-animevideov3")
upscaler = Upscaler.from_file(ModelStore(shared + "/models").path(spec), spec)
photo, _ = decode(open(shared + "/images/astronaut.png", "rb").read())
pixels = np.ascontiguousarray(np.tile(photo, (height // 512 + 1, width // 512 + 1, 1))[:height, :width])
result = upscaler.upscale(pixels, 4)
assert result.shape == (height * 4, width * 4, 3)
print(json.dumps({"peak_mb": peak_rss_mb()}))
"""


def _peak_mb(width: int, height: int) -> float:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(width), str(height), str(SHARED)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],  # for `bench.machine`
    )
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"]


def test_1080p_at_scale_4_stays_within_the_budget_and_near_one_window() -> None:
    one_window = _peak_mb(320, 320)  # the default tile plus its context: a single forward pass
    full_hd = _peak_mb(1920, 1080)
    # What the image size may add: the uint8 output (1920*1080*16*3 bytes, 100 MB) and input.
    image_bound_mb = 1920 * 1080 * 3 * (16 + 1) / 2**20
    print(f"peak RSS: one window {one_window:.0f} MB, 1920x1080 at x4 {full_hd:.0f} MB")
    assert full_hd <= 2500
    assert full_hd - one_window <= image_bound_mb + 150
