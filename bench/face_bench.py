"""Seconds per face of each face-restoration stage.

    python bench/face_bench.py [--image PATH] [--scale 4] [--threads 2] [--repeat 3]
        [--device cpu] [--weights GFPGANv1.4.pth] [--detector YUNET.onnx] [--json out.json]

GFPGAN's weights are not available offline, so by default the network is
GFPGANv1Clean (the v1.3/v1.4 configuration) with random weights, saved in the
official layout and loaded through superres.face like a downloaded file. Speed
is architecture-bound (the same convolutions run whatever the weights hold);
the faces it paints are noise. ``--weights`` takes a real file instead.

Stages, timed separately (best of ``--repeat`` after one warm-up, and the
median): detection (YuNet on the whole input image: per image, not per face),
alignment (landmark fit and the 512x512 crop), the GFPGAN forward pass, and
paste-back (inverse warp and soft-mask blend into the ``--scale`` x
background). The background is a Lanczos enlargement: the upscaler is
engine_bench's subject. The warm-up pass of GFPGAN also counts its FLOPs
(torch.utils.flop_counter) to compare with the manifest. On the CPU the GFPGAN
forward pass is then timed per runtime, in one run: torch fp32, and OpenVINO
(the Lambda stack's, converted as the release build converts it) in fp32 and,
where the CPU runs it natively, bf16.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

# Run as a script, Python puts bench/ on sys.path, not the repository root.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.inputs import SHARED  # noqa: E402 -- after sys.path gets the repository root
from bench.machine import describe_machine  # noqa: E402 -- after sys.path gets the repository root
from bench.metrics import psnr  # noqa: E402 -- after sys.path gets the repository root
from superres.codec import decode  # noqa: E402 -- after sys.path gets the repository root
from superres.cpu import native_bf16_cpu  # noqa: E402 -- after sys.path gets the repository root
from superres.face import (  # noqa: E402 -- after sys.path gets the repository root
    FACE_SIZE,
    FaceModel,
    align_face,
    alignment_matrix,
    paste_face,
)
from superres.face_detection import FaceDetector  # noqa: E402 -- after sys.path gets the repository root
from superres.manifest import get_spec  # noqa: E402 -- after sys.path gets the repository root

SPEC = get_spec("GFPGANv1.4")
_T = TypeVar("_T")
# GFPGANer's "clean" configuration for v1.3 and v1.4 (spandrel builds the same).
GFPGAN_CONFIG: dict[str, Any] = {
    "out_size": 512,
    "num_style_feat": 512,
    "channel_multiplier": 2,
    "decoder_load_path": None,
    "fix_decoder": False,
    "num_mlp": 8,
    "input_is_latent": True,
    "different_w": True,
    "narrow": 1,
    "sft_half": True,
}


def random_weights(directory: Path) -> Path:
    """GFPGANv1Clean with random weights, saved as {"params_ema": state_dict} like the releases."""
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(0)
    path = directory / "GFPGANv1.4.random.pth"
    torch.save({"params_ema": GFPGAN(**GFPGAN_CONFIG).state_dict()}, path)
    return path


def timed(run: Callable[[], _T], repeat: int) -> tuple[list[float], _T]:
    """Seconds of each of ``repeat`` (at least 1) runs, and the last run's result."""
    times: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return times, result


def align(pixels: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The alignment matrix of a face's landmarks and its 512x512 crop (the alignment stage)."""
    matrix = alignment_matrix(landmarks)
    if matrix is None:
        raise SystemExit("a face with degenerate landmarks: try another image")
    return matrix, align_face(pixels, matrix)


def runtime_models(weights: Path, threads: int, converted: Path) -> dict[str, FaceModel]:
    """GFPGAN on each CPU runtime the kit has, as the hosts load it: torch fp32, and OpenVINO
    (the Lambda stack's) in fp32 and, where the CPU runs it natively, bf16."""
    models = {"torch fp32": FaceModel.from_file(weights, SPEC, runtime="torch", device="cpu", threads=threads)}
    for bf16 in (False, True) if native_bf16_cpu() else (False,):
        models[f"OpenVINO {'bf16' if bf16 else 'fp32'}"] = FaceModel.from_file(
            weights, SPEC, runtime="openvino", bf16=bf16, threads=threads, converted_dir=converted
        )
    return models


def runtime_rows(models: dict[str, FaceModel], crop: np.ndarray, repeat: int) -> list[dict[str, Any]]:
    """The GFPGAN forward pass per runtime: seconds, ratio to torch fp32, PSNR against torch."""
    rows: list[dict[str, Any]] = []
    reference: np.ndarray | None = None
    for runtime, model in models.items():
        model.restore(crop)  # warm-up
        times, face = timed(partial(model.restore, crop), repeat)
        if reference is None:
            reference = face
        rows.append(
            {
                "runtime": runtime,
                "best_s": min(times),
                "median_s": statistics.median(times),
                "psnr_db": psnr(np.rint(face * 255).astype(np.uint8), np.rint(reference * 255).astype(np.uint8)),
            }
        )
    for row in rows:
        row["ratio"] = row["best_s"] / rows[0]["best_s"]
    return rows


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=Path, default=SHARED / "images" / "astronaut.png")
    parser.add_argument("--detector", type=Path, default=SHARED / "models" / "face_detection_yunet_2026may.onnx")
    parser.add_argument("--weights", type=Path, help="a real GFPGAN v1.3/v1.4 file (default: random weights)")
    parser.add_argument("--scale", type=int, default=4, help="enlargement of the background (default 4)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs after one warm-up")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    parser.add_argument("--json", type=Path, help="also write machine and rows here")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    pixels, _ = decode(args.image.read_bytes())
    detector = FaceDetector.from_file(args.detector, threads=args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="face_bench."))
    weights = args.weights or random_weights(workdir)
    model = FaceModel.from_file(weights, SPEC, runtime="torch", device=args.device)
    device = model.runner.info.device
    info = describe_machine(args.threads, "torch", "openvino")
    info["device"] = device + (f" ({torch.cuda.get_device_name(device)})" if device.startswith("cuda") else "")
    background = cv2.resize(pixels, None, fx=args.scale, fy=args.scale, interpolation=cv2.INTER_LANCZOS4)
    if background.ndim == 2:
        background = background[:, :, None]

    detector.detect(pixels)  # warm-up
    detect_times, faces = timed(lambda: detector.detect(pixels), args.repeat)
    if not faces:
        raise SystemExit(f"no face found in {args.image}")
    stages: dict[str, list[float]] = {"alignment": [], "GFPGAN forward": [], "paste-back": []}
    flops = 0
    first_crop: np.ndarray | None = None
    for face in faces:
        align_this = partial(align, pixels, face.landmarks)
        align_this()
        times, (matrix, crop) = timed(align_this, args.repeat)
        first_crop = crop if first_crop is None else first_crop
        stages["alignment"].append(min(times))
        with FlopCounterMode(display=False) as counter:  # the warm-up pass
            restored = model.restore(crop)
        flops = counter.get_total_flops()
        times, restored = timed(partial(model.restore, crop), args.repeat)
        stages["GFPGAN forward"] += times
        canvas = background.copy()  # once per image in FaceRestorer; pasting again costs the same
        paste = partial(paste_face, canvas, restored, matrix, args.scale)
        paste()
        times, _ = timed(paste, args.repeat)
        stages["paste-back"] += times

    rows: list[dict[str, Any]] = [
        {"stage": "detection (per image)", "best_s": min(detect_times), "median_s": statistics.median(detect_times)}
    ]
    rows += [
        {"stage": f"{stage} (per face)", "best_s": min(times), "median_s": statistics.median(times)}
        for stage, times in stages.items()
    ]
    per_face = sum(row["best_s"] for row in rows[1:])
    total = rows[0]["best_s"] + per_face * len(faces)
    for row in rows:
        row["share"] = row["best_s"] * (1 if row is rows[0] else len(faces)) / total

    height, width = pixels.shape[:2]
    print(
        f"{info['cpu']}, {info['logical_cpus']} logical CPUs, {info['threads']} threads, "
        f"device {info['device']}, load {'/'.join(f'{v:.2f}' for v in info['load_average'])}, "
        f"torch {info['torch']}, openvino {info['openvino']}, detector on {detector.network.runtime}, {info['date']}"
    )
    print(
        f"input: {args.image.name} {width}x{height}, {len(faces)} face(s), background x{args.scale} "
        f"({width * args.scale}x{height * args.scale}), best and median of {args.repeat} after a warm-up"
    )
    print(
        f"GFPGAN: {'weights ' + str(args.weights) if args.weights else 'RANDOM weights (speed is architecture-bound: the weights do not change it)'}; "
        f"{flops / 1e9:.1f} GFLOP per face (manifest: {SPEC.mflop_per_pixel * FACE_SIZE**2 / 1e3:.1f}), "
        f"{flops / 1e9 / min(stages['GFPGAN forward']):.1f} GFLOP/s, {model.runner.info.precision}"
    )
    print("| stage | best s | median s | share of the image's time |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['stage']} | {row['best_s']:.4f} | {row['median_s']:.4f} | {row['share']:.1%} |")
    print(f"| total for the image | {total:.3f} | | |")
    runtimes = (
        []
        if first_crop is None or not device.startswith("cpu")
        else runtime_rows(runtime_models(weights, args.threads, workdir / "converted"), first_crop, args.repeat)
    )
    shutil.rmtree(workdir)
    if runtimes:
        print("\nGFPGAN forward per face, per CPU runtime (bf16 only where the CPU runs it natively):")
        print("| runtime | best s | median s | time / torch fp32 | PSNR vs torch, dB |")
        print("|---|---|---|---|---|")
        for row in runtimes:
            quality = "reference" if row is runtimes[0] else f"{row['psnr_db']:.1f}"
            print(
                f"| {row['runtime']} | {row['best_s']:.3f} | {row['median_s']:.3f} | {row['ratio']:.2f} | {quality} |"
            )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "faces": len(faces),
                    "gflop_per_face": flops / 1e9,
                    "random_weights": args.weights is None,
                    "rows": rows,
                    "runtimes": runtimes,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
