"""Engines measured turn about in one process, so a busy machine slows all of them alike.

    python bench/interleaved.py [--model RealESRGAN_x4plus] [--size 128] [--rounds 3] [--threads 2]

References (bench/references.py, whole image, no tiles): ncnn fp32, torch eager fp32 (what
RealESRGANer(tile=0) runs), OpenVINO's own conversion at its default precision and in fp32,
ONNX Runtime fp32. Ours: the tiler as the service runs it (default tiles, seamless) on each
runtime and precision this CPU offers. PSNR is against torch eager fp32.

engine_bench.py gives each configuration a fresh process (for peak RSS); this
script answers the other question, relative speed, robustly on a shared or
noisy machine: every round runs each engine once on the same crop, and the
best round of each counts.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.inputs import center_crop, load_rgb, turn_about_arguments  # noqa: E402 -- after sys.path gets the repository root
from bench.metrics import psnr  # noqa: E402 -- after sys.path gets the repository root
from bench.references import (  # noqa: E402 -- after sys.path gets the repository root
    NCNN_MODELS,
    NcnnUpscaler,
    OnnxRuntimeWholeImage,
    OpenVinoWholeImage,
    TorchWholeImage,
)
from superres.cpu import native_bf16_cpu  # noqa: E402 -- after sys.path gets the repository root
from superres.engine import Upscaler  # noqa: E402 -- after sys.path gets the repository root
from superres.manifest import get_spec  # noqa: E402 -- after sys.path gets the repository root
from superres.runtimes.torch_runner import BF16_TRUNK_ARCHITECTURES  # noqa: E402 -- after sys.path gets the repository root
from superres.store import ModelStore  # noqa: E402 -- after sys.path gets the repository root

#: Networks with no weights on this machine, benchmarked for speed with random weights of
#: their real architecture (their PSNR column then says nothing about the trained network).
RANDOM_ARCHITECTURES = {"realesr-general-x4v3": {"num_feat": 64, "num_conv": 32, "upscale": 4, "act_type": "prelu"}}
NCNN = "ncnn fp32"
EAGER = "torch eager fp32 (RealESRGANer tile=0)"
OPENVINO_DEFAULT = "OpenVINO default precision"


def main() -> None:
    args = turn_about_arguments(__doc__, model="RealESRGAN_x4plus", size=128, rounds=3)
    torch.set_num_threads(args.threads)
    crop = center_crop(load_rgb(args.image), args.size)
    spec = get_spec(args.model)
    store = ModelStore(args.model_dir)
    path = (
        store.path(spec) if store.find(spec) or args.model not in RANDOM_ARCHITECTURES else random_weights(args.model)
    )
    threads = args.threads
    engines: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    if args.model in NCNN_MODELS:
        engines[NCNN] = NcnnUpscaler(args.model, threads=threads).upscale
    engines |= {
        EAGER: TorchWholeImage(path).upscale,
        OPENVINO_DEFAULT: OpenVinoWholeImage(path, threads=threads).upscale,
        "OpenVINO fp32": OpenVinoWholeImage(path, threads=threads, precision="f32").upscale,
        "ONNX Runtime fp32": OnnxRuntimeWholeImage(path, threads=threads).upscale,
    }
    bf16 = native_bf16_cpu()
    ours = [("torch", False)]
    if bf16 and spec.architecture in BF16_TRUNK_ARCHITECTURES:
        ours.append(("torch", True))
    if spec.openvino:
        ours += [("openvino", False), *([("openvino", True)] if bf16 else [])]
    for runtime, fast in ours:
        upscaler = Upscaler.from_file(path, spec, runtime=runtime, device="cpu", bf16=fast, threads=threads)
        engines[f"superres {runtime}, {upscaler.runner.info.precision}"] = upscaler.upscale
    outputs = {name: run(crop) for name, run in engines.items()}  # warm-up, and the outputs compared
    best = dict.fromkeys(engines, float("inf"))
    for _ in range(args.rounds):
        for name, run in engines.items():
            started = time.perf_counter()
            run(crop)
            best[name] = min(best[name], time.perf_counter() - started)
    kpx = args.size * args.size / 1000
    ncnn, openvino = kpx / best.get(NCNN, float("nan")), kpx / best[OPENVINO_DEFAULT]
    load = os.getloadavg()
    print(
        f"{args.model}, {args.size}x{args.size} crop of {args.image.name}, {threads} threads, "
        f"best of {args.rounds} interleaved rounds, load {load[0]:.2f}, torch {torch.__version__}, "
        f"OpenVINO {ov_version()}, native bf16: {bf16}" + (", random weights" if path.parent != store.directory else "")
    )
    print("| engine | kpx/s | x ncnn | x OpenVINO default | PSNR vs torch fp32 |")
    print("|---|---|---|---|---|")
    for name in engines:
        speed = kpx / best[name]
        quality = "exact" if name == EAGER else f"{psnr(outputs[name], outputs[EAGER]):.1f} dB"
        print(f"| {name} | {speed:.2f} | {speed / ncnn:.2f} | {speed / openvino:.2f} | {quality} |")


def random_weights(model: str) -> Path:
    """Random weights of ``model``'s real architecture in the official key layout, in a temporary file."""
    from spandrel.architectures.Compact import Compact

    path = Path(tempfile.mkdtemp(prefix="superres-bench-")) / f"{model}.pth"
    torch.save({"params": Compact(**RANDOM_ARCHITECTURES[model]).state_dict()}, path)
    return path


def ov_version() -> str:
    import openvino

    return str(openvino.get_version()).split("-")[0]


if __name__ == "__main__":
    main()
