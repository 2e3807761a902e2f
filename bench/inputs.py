"""What the benchmarks run on: ../shared's photos and weights, a crop, the common options."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from superres.codec import decode

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SUPERRES_SHARED") or ROOT.parent / "shared")
PHOTO = SHARED / "images" / "astronaut.png"


def load_rgb(path: Path) -> np.ndarray:
    pixels, _ = decode(path.read_bytes())
    if pixels.dtype != np.uint8 or pixels.shape[2] < 3:
        raise SystemExit(f"{path}: the benchmark needs an 8-bit RGB(A) image")
    return np.ascontiguousarray(pixels[:, :, :3])


def center_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    height, width, _ = rgb.shape
    if size > min(height, width):
        raise SystemExit(f"--size {size} is larger than the image ({width}x{height})")
    top, left = (height - size) // 2, (width - size) // 2
    return np.ascontiguousarray(rgb[top : top + size, left : left + size])


def turn_about_arguments(doc: str, *, model: str, size: int, rounds: int) -> argparse.Namespace:
    """The options of the benchmarks that time engines turn about on one crop."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--model", default=model)
    parser.add_argument("--model-dir", type=Path, default=SHARED / "models")
    parser.add_argument("--image", type=Path, default=PHOTO)
    parser.add_argument("--size", type=int, default=size, help="edge of the square crop")
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()
