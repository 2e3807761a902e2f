"""What the HTTP service adds to the engine: one request against one direct call, turn about.

    python bench/service_overhead.py [--model RealESRGAN_x4plus] [--size 256] [--rounds 3]

The local server (the app every host runs, under uvicorn on 127.0.0.1) and
the direct call share one process and one loaded network, so the difference
is the service alone: JSON and base64, PNG decode and encode, validation,
admission, the worker thread, HTTP. Each round times a direct
``Upscaler.upscale`` and then a POST /resolution of the same photo crop;
the best of each counts (a busy machine slows both alike).
"""

from __future__ import annotations

import base64
import sys
import time
from pathlib import Path

import httpx
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.inputs import center_crop, load_rgb, turn_about_arguments  # noqa: E402 -- after sys.path gets the repository root
from bench.machine import describe_machine  # noqa: E402 -- after sys.path gets the repository root
from superres import codec  # noqa: E402 -- after sys.path gets the repository root
from superres.service.app import create_app  # noqa: E402 -- after sys.path gets the repository root
from superres.service.local import LocalBackend, serving  # noqa: E402 -- after sys.path gets the repository root
from superres.service.settings import ServiceSettings  # noqa: E402 -- after sys.path gets the repository root


def main() -> None:
    args = turn_about_arguments(__doc__, model="RealESRGAN_x4plus", size=256, rounds=3)
    torch.set_num_threads(args.threads)
    crop = center_crop(load_rgb(args.image), args.size)
    body = {"img": base64.b64encode(codec.encode(crop, "png")).decode(), "scale": 4}

    settings = ServiceSettings.for_variant(
        "local", model_x4=args.model, model_dir=args.model_dir, time_budget_seconds=0
    )
    backend = LocalBackend(settings)
    upscaler = backend.upscalers[args.model]
    best = {"direct Upscaler.upscale": float("inf"), "POST /resolution over HTTP": float("inf")}
    with serving(create_app(settings, backend)) as url, httpx.Client(base_url=url, timeout=600) as client:

        def over_http() -> None:
            response = client.post("/resolution", json=body)
            response.raise_for_status()
            assert response.json()["width"] == args.size * 4

        def direct() -> None:
            upscaler.upscale(crop, 4)

        runs = dict(zip(best, (direct, over_http), strict=True))
        for run in runs.values():  # warm-up
            run()
        for _ in range(args.rounds):
            for name, run in runs.items():
                started = time.perf_counter()
                run()
                best[name] = min(best[name], time.perf_counter() - started)
    info = describe_machine(args.threads, "torch")
    print(
        f"{args.model}, {args.size}x{args.size} crop of {args.image.name} at scale 4, {args.threads} threads, "
        f"best of {args.rounds} interleaved rounds, load {info['load_average'][0]:.2f}, {info['cpu']}, {info['date']}"
    )
    direct_seconds = best["direct Upscaler.upscale"]
    print("| path | s | x direct |")
    print("|---|---|---|")
    for name, seconds in best.items():
        print(f"| {name} | {seconds:.3f} | {seconds / direct_seconds:.3f} |")


if __name__ == "__main__":
    main()
