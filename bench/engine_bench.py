"""Speed, seam quality and peak memory of our engine against two references.

    python bench/engine_bench.py --model-dir DIR [--models ...] [--tiles 0,64,128,256]
        [--size 128] [--image PATH] [--threads 2] [--repeat 3] [--fixed-batch N] [--bf16]
        [--rss-size 1920x1080] [--device cpu|cuda] [--json out.json]

Every configuration (an engine, a model, a tile setting) runs in a fresh
subprocess (this script re-invoked with a hidden ``--child JOB``), so its peak
RSS is its own and not what an earlier configuration left allocated. Each
child times one warm-up and ``--repeat`` runs and reports the best.

- Default mode, on a ``--size`` square crop of a real photo: the references
  of bench/references.py (ncnn on the original files, PyTorch on the whole
  image) and our engine at each ``--tiles`` size (0 = whole image), plus
  fixed-shape batched tiles with ``--fixed-batch N``. Columns: input
  kilopixels per second, speed ratio against each reference (> 1 = we are
  faster), PSNR of the output against the PyTorch whole-image output (seam
  quality), peak RSS of the process.
- ``--rss-size WxH``: our engine alone, at scale 4, on a WxH image made by
  tiling the photo (real content, not noise), one timed run, to show the peak
  memory of a large request. ``--tiles`` defaults to the engine's default here,
  and ``--bf16`` means the bf16 trunk instead of fp32.
- ``--device cuda``: our engine runs on the GPU (fp16; add ``--fixed-batch N``
  for batched fixed-shape tiles, the SageMaker GPU setting); the references
  stay on the CPU, so the ratios then compare a GPU with 2 CPU threads.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np

# Run as a script, Python puts bench/ on sys.path, not the repository root.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.inputs import PHOTO, center_crop, load_rgb  # noqa: E402 -- after sys.path gets the repository root (light: no torch in the parent)
from bench.machine import describe_machine, peak_rss_mb  # noqa: E402 -- after sys.path gets the repository root
from bench.metrics import psnr  # noqa: E402 -- after sys.path gets the repository root
from bench.references import NCNN_MODELS  # noqa: E402 -- after sys.path gets the repository root
from superres.tiling import TileConfig  # noqa: E402 -- after sys.path gets the repository root

SCALE = 4


@dataclass(frozen=True)
class Job:
    """One configuration, as the parent hands it to a child process."""

    engine: str  # "ncnn", "torch-whole" or "superres"
    model: str
    model_dir: str
    input: str  # .npy of the H x W x 3 uint8 input
    output: str | None  # where to save the result (.npy), if the parent needs it
    threads: int
    repeat: int
    warmup: bool
    tile: int | None = None  # None: the engine's default TileConfig
    pad: int | None = None
    fixed_shape: bool = False
    batch: int = 1
    bf16: bool = False
    device: str = "cpu"
    runtime: str = "auto"


def build(job: Job) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """The job's engine as a function of the RGB input, and its tile label."""
    if job.engine == "ncnn":
        from bench.references import NcnnUpscaler

        return NcnnUpscaler(job.model, threads=job.threads).upscale, "whole"
    import torch

    from superres.manifest import get_spec
    from superres.store import ModelStore

    torch.set_num_threads(job.threads)
    spec = get_spec(job.model)
    weights = ModelStore(job.model_dir).path(spec)
    if job.engine == "torch-whole":
        from bench.references import TorchWholeImage

        return TorchWholeImage(weights).upscale, "whole"
    from superres.engine import Upscaler
    from superres.tiling import TileConfig

    config = TileConfig()
    if job.tile is not None:
        config = replace(config, tile=job.tile, fixed_shape=job.fixed_shape, batch=job.batch)
    if job.pad is not None:
        config = replace(config, pad=job.pad)
    upscaler = Upscaler.from_file(
        weights, spec, runtime=job.runtime, device=job.device, tiles=config, bf16=job.bf16, threads=job.threads
    )
    info = upscaler.runner.info
    label = f"{describe(config)} {info.runtime} {info.precision}" + ("" if job.device == "cpu" else f" {job.device}")
    return partial(upscaler.upscale, scale=SCALE), label


def run_child(job: Job) -> dict:
    """Child side: build the engine, time it, report JSON on stdout."""
    pixels = np.load(job.input)
    run, label = build(job)
    # Imports and weights alone: torch's import is most of a small run's peak.
    loaded_mb = peak_rss_mb()
    if job.warmup:
        run(pixels)
    best = math.inf
    for _ in range(job.repeat):
        start = time.perf_counter()
        result = run(pixels)
        best = min(best, time.perf_counter() - start)
    if result.shape != (pixels.shape[0] * SCALE, pixels.shape[1] * SCALE, 3):
        raise RuntimeError(f"{job.engine} returned shape {result.shape} for {pixels.shape}")
    if job.output:
        np.save(job.output, result)
    return {"seconds": best, "load_rss_mb": loaded_mb, "peak_rss_mb": peak_rss_mb(), "tile": label}


def describe(config: TileConfig) -> str:
    if config.tile == 0:
        return "whole"
    return f"{config.tile}/pad {config.pad}" + (f" fixed x{config.batch}" if config.fixed_shape else "")


def spawn(job: Job) -> dict:
    """Run ``job`` in a fresh interpreter; its last stdout line is the result."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(asdict(job))],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{job.engine} {job.model} tile={job.tile} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def tile_up(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """The photo repeated to cover width x height, then cut to it."""
    reps = (math.ceil(height / rgb.shape[0]), math.ceil(width / rgb.shape[1]), 1)
    return np.ascontiguousarray(np.tile(rgb, reps)[:height, :width])


def saved_output(job: Job) -> np.ndarray:
    """The result ``job`` saved (``compare`` gives every job an output file)."""
    if job.output is None:
        raise ValueError(f"the {job.engine} job saved no output")
    return np.load(job.output)


def compare(args: argparse.Namespace, workdir: Path) -> list[dict]:
    crop = center_crop(load_rgb(args.image), args.size)
    source = workdir / "input.npy"
    np.save(source, crop)
    kpx = crop.shape[0] * crop.shape[1] / 1000
    rows = []
    for model in args.models:
        common = {
            "model": model,
            "model_dir": str(args.model_dir),
            "input": str(source),
            "threads": args.threads,
            "repeat": args.repeat,
            "warmup": True,
        }
        jobs = [
            Job("ncnn", output=str(workdir / f"{model}-ncnn.npy"), **common),
            Job("torch-whole", output=str(workdir / f"{model}-torch.npy"), **common),
        ]
        for tile in args.tiles:
            ours = {"tile": tile, "pad": args.pad, "device": args.device, "runtime": args.runtime, **common}
            jobs.append(Job("superres", output=str(workdir / f"{model}-{tile}.npy"), **ours))
            if args.bf16:
                jobs.append(Job("superres", output=str(workdir / f"{model}-{tile}-bf16.npy"), bf16=True, **ours))
            if args.fixed_batch and tile:
                jobs.append(
                    Job(
                        "superres",
                        output=str(workdir / f"{model}-{tile}-fixed.npy"),
                        fixed_shape=True,
                        batch=args.fixed_batch,
                        **ours,
                    )
                )
        results = []
        for job in jobs:
            print(f"running {model} {job.engine} tile={job.tile} ...", file=sys.stderr, flush=True)
            results.append(spawn(job))
        ncnn_speed, torch_speed = (kpx / result["seconds"] for result in results[:2])
        torch_output = saved_output(jobs[1])
        for job, result in zip(jobs, results, strict=True):
            speed = kpx / result["seconds"]
            rows.append(
                {
                    "model": model,
                    "engine": job.engine,
                    "tile": result["tile"],
                    "kpx_per_s": speed,
                    "vs_ncnn": speed / ncnn_speed,
                    "vs_torch_whole": speed / torch_speed,
                    "psnr_vs_torch_whole_db": None if job is jobs[1] else psnr(saved_output(job), torch_output),
                    "load_rss_mb": result["load_rss_mb"],
                    "peak_rss_mb": result["peak_rss_mb"],
                }
            )
    return rows


def rss(args: argparse.Namespace, workdir: Path) -> list[dict]:
    width, height = args.rss_size
    source = workdir / "input.npy"
    np.save(source, tile_up(load_rgb(args.image), width, height))
    rows = []
    for model in args.models:
        for tile in args.tiles or [None]:
            print(f"running {model} superres {width}x{height} tile={tile} ...", file=sys.stderr, flush=True)
            result = spawn(
                Job(
                    "superres",
                    model=model,
                    model_dir=str(args.model_dir),
                    input=str(source),
                    output=None,
                    threads=args.threads,
                    repeat=1,
                    warmup=False,
                    tile=tile,
                    pad=args.pad,
                    bf16=args.bf16,
                    device=args.device,
                    runtime=args.runtime,
                )
            )
            rows.append(
                {
                    "model": model,
                    "engine": "superres",
                    "tile": result["tile"],
                    "input": f"{width}x{height}",
                    "seconds": result["seconds"],
                    "kpx_per_s": width * height / 1000 / result["seconds"],
                    "load_rss_mb": result["load_rss_mb"],
                    "peak_rss_mb": result["peak_rss_mb"],
                }
            )
    return rows


def markdown(rows: list[dict]) -> str:
    columns = {
        "model": "model",
        "engine": "engine",
        "tile": "tile",
        "input": "input",
        "seconds": "s",
        "kpx_per_s": "kpx/s",
        "vs_ncnn": "x vs ncnn",
        "vs_torch_whole": "x vs torch-whole",
        "psnr_vs_torch_whole_db": "PSNR dB",
        "load_rss_mb": "RSS after load MB",
        "peak_rss_mb": "peak RSS MB",
    }
    keys = [key for key in columns if key in rows[0]]

    def cell(key: str, value: object) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return "inf" if math.isinf(value) else f"{value:.0f}" if key.endswith("_mb") else f"{value:.2f}"
        return str(value)

    lines = ["| " + " | ".join(columns[key] for key in keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(key, row[key]) for key in keys) + " |" for row in rows]
    return "\n".join(lines)


def size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--models", nargs="+", choices=list(NCNN_MODELS), default=list(NCNN_MODELS))
    parser.add_argument(
        "--tiles",
        type=lambda text: [int(t) for t in text.split(",")],
        help="tile sizes, 0 = whole image (default 0,64,128,256; with --rss-size the engine's default)",
    )
    parser.add_argument("--pad", type=int, help="context per tile side (default: the engine's)")
    parser.add_argument(
        "--fixed-batch",
        type=int,
        default=0,
        metavar="N",
        help="also run each tile size with fixed_shape and batches of N",
    )
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="also run each configuration with the bf16 trunk (CPUs with AMX or AVX512-BF16)",
    )
    parser.add_argument("--device", default="cpu", help="where our engine runs: cpu, cuda, cuda:1 ...")
    parser.add_argument(
        "--runtime", default="auto", choices=["auto", "torch", "openvino"], help="what runs our engine's network"
    )
    parser.add_argument("--size", type=int, default=128, help="edge of the square crop")
    parser.add_argument("--image", type=Path, default=PHOTO)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs after one warm-up; the best counts")
    parser.add_argument("--rss-size", type=size, metavar="WxH")
    parser.add_argument("--json", type=Path, help="also write machine and rows here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.child and args.model_dir is None:
        parser.error("--model-dir is required")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.tiles is None and not args.rss_size:
        args.tiles = [0, 64, 128, 256]
    return args


def main() -> None:
    args = parse_args()
    if args.child:
        print(json.dumps(run_child(Job(**json.loads(args.child)))))
        return
    info = describe_machine(args.threads, "torch", "ncnn")
    with tempfile.TemporaryDirectory(prefix="engine_bench.") as workdir:
        rows = (rss if args.rss_size else compare)(args, Path(workdir))
    print(
        f"{info['cpu']}, {info['logical_cpus']} logical CPUs, {info['threads']} threads, "
        f"load {'/'.join(f'{v:.2f}' for v in info['load_average'])}, "
        f"torch {info['torch']}, ncnn {info['ncnn']}, {info['date']}"
    )
    if not args.rss_size:
        print(
            f"input: {args.size}x{args.size} crop of {args.image.name}, best of {args.repeat} after a warm-up; "
            "PSNR against the PyTorch whole-image output"
        )
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
