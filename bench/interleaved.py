"""Engines measured turn about in one process, so a busy machine slows all of them alike.

    python bench/interleaved.py [--model RealESRGAN_x4plus] [--size 128] [--rounds 3]

engine_bench.py gives each configuration a fresh process (for peak RSS); this
script answers the other question, relative speed, robustly on a shared or
noisy machine: every round runs each engine once on the same crop, and the
best round of each counts.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.inputs import center_crop, load_rgb, turn_about_arguments  # noqa: E402 -- after sys.path gets the repository root
from bench.metrics import psnr  # noqa: E402 -- after sys.path gets the repository root
from bench.references import NcnnUpscaler, TorchWholeImage  # noqa: E402 -- after sys.path gets the repository root
from superres.engine import BF16_TRUNK_ARCHITECTURES, Upscaler, native_bf16_cpu  # noqa: E402 -- after sys.path gets the repository root
from superres.manifest import get_spec  # noqa: E402 -- after sys.path gets the repository root
from superres.store import ModelStore  # noqa: E402 -- after sys.path gets the repository root


def main() -> None:
    args = turn_about_arguments(__doc__, model="RealESRGAN_x4plus", size=128, rounds=3)
    torch.set_num_threads(args.threads)
    crop = center_crop(load_rgb(args.image), args.size)
    spec = get_spec(args.model)
    path = ModelStore(args.model_dir).path(spec)
    engines: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "ncnn fp32": NcnnUpscaler(args.model, threads=args.threads).upscale,
        "torch eager whole image (RealESRGANer tile=0)": TorchWholeImage(path).upscale,
        # Default tiling (seamless, bounded memory) as the service runs it.
        "superres fp32": Upscaler.from_file(path, spec, device="cpu", bf16=False).upscale,
    }
    if spec.architecture in BF16_TRUNK_ARCHITECTURES and native_bf16_cpu():
        engines["superres bf16 trunk (default here)"] = Upscaler.from_file(path, spec, device="cpu", bf16=True).upscale
    outputs = {name: run(crop) for name, run in engines.items()}  # warm-up, and the outputs compared
    best = dict.fromkeys(engines, float("inf"))
    for _ in range(args.rounds):
        for name, run in engines.items():
            started = time.perf_counter()
            run(crop)
            best[name] = min(best[name], time.perf_counter() - started)
    kpx = args.size * args.size / 1000
    ncnn = kpx / best["ncnn fp32"]
    eager = kpx / best["torch eager whole image (RealESRGANer tile=0)"]
    load = os.getloadavg()
    print(
        f"{args.model}, {args.size}x{args.size} crop of {args.image.name}, {args.threads} threads, "
        f"best of {args.rounds} interleaved rounds, load {load[0]:.2f}, torch {torch.__version__}"
    )
    print("| engine | kpx/s | x ncnn | x torch eager | PSNR vs superres fp32 |")
    print("|---|---|---|---|---|")
    for name in engines:
        speed = kpx / best[name]
        print(
            f"| {name} | {speed:.2f} | {speed / ncnn:.2f} | {speed / eager:.2f} | "
            f"{psnr(outputs[name], outputs['superres fp32']):.1f} |"
        )


if __name__ == "__main__":
    main()
