"""PSNR of each runtime and precision against torch fp32, on every shared photo.

    python bench/quality.py [--models RealESRGAN_x4plus,realesr-animevideov3] [--size 96]

The centre crop of each photo in ../shared/images through our engine (default tiles) on
every runtime and precision this CPU offers, against the same crop through torch fp32:
the range the README quotes, and the guard tests/test_runtimes.py asserts (>= 50 dB).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.inputs import SHARED, center_crop  # noqa: E402 -- after sys.path gets the repository root
from bench.machine import describe_machine  # noqa: E402 -- after sys.path gets the repository root
from bench.metrics import psnr  # noqa: E402 -- after sys.path gets the repository root
from superres import codec  # noqa: E402 -- after sys.path gets the repository root
from superres.cpu import native_bf16_cpu  # noqa: E402 -- after sys.path gets the repository root
from superres.engine import Upscaler  # noqa: E402 -- after sys.path gets the repository root
from superres.manifest import get_spec  # noqa: E402 -- after sys.path gets the repository root
from superres.runtimes.torch_runner import BF16_TRUNK_ARCHITECTURES  # noqa: E402 -- after sys.path gets the repository root
from superres.store import ModelStore  # noqa: E402 -- after sys.path gets the repository root


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--models", default="RealESRGAN_x4plus,realesr-animevideov3")
    parser.add_argument("--model-dir", type=Path, default=SHARED / "models")
    parser.add_argument("--size", type=int, default=96)
    args = parser.parse_args()
    photos = sorted((SHARED / "images").iterdir())
    info = describe_machine(2, "openvino", "torch")
    print(f"centre {args.size}x{args.size} crops of {len(photos)} photos, {info['cpu']}, {info['date']}")
    print("| model | engine | min dB | max dB | lowest on |")
    print("|---|---|---|---|---|")
    for name in args.models.split(","):
        spec = get_spec(name)
        path = ModelStore(args.model_dir).path(spec)
        exact = Upscaler.from_file(path, spec, runtime="torch", device="cpu", bf16=False)
        engines = [Upscaler.from_file(path, spec, runtime="openvino", bf16=False)] if spec.openvino else []
        if native_bf16_cpu():
            if spec.architecture in BF16_TRUNK_ARCHITECTURES:
                engines.append(Upscaler.from_file(path, spec, runtime="torch", device="cpu", bf16=True))
            if spec.openvino:
                engines.append(Upscaler.from_file(path, spec, runtime="openvino", bf16=True))
        crops = {photo.name: center_crop(as_rgb(photo), args.size) for photo in photos}
        references = {photo: exact.upscale(crop) for photo, crop in crops.items()}
        for engine in engines:
            scores = {photo: psnr(engine.upscale(crop), references[photo]) for photo, crop in crops.items()}
            lowest = min(scores, key=lambda photo: scores[photo])
            label = f"{engine.runner.info.runtime}, {engine.runner.info.precision}"
            print(f"| {name} | {label} | {scores[lowest]:.1f} | {max(scores.values()):.1f} | {lowest} |")


def as_rgb(photo: Path) -> np.ndarray:
    """Any shared photo as 8-bit RGB: grayscale repeated, alpha dropped (the tests do the same)."""
    pixels, _ = codec.decode(photo.read_bytes())
    return np.ascontiguousarray(np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels[:, :, :3])


if __name__ == "__main__":
    main()
