"""Throughput under load: requests two at a time against the same requests one at a time.

    python bench/concurrency.py [--model RealESRGAN_x4plus] [--size 128] [--rounds 3] [--threads 2]

For each runtime two local servers run, each in a process of its own (``superres serve``,
configured by environment as a deployment is): one worker with all ``--threads``, sent the
requests one after another, and two workers sharing them (``cpu_threads`` split between
the workers, as the service always does, so workers x threads never exceeds the cores),
sent the same requests two at a time. The ratio is the second throughput over the first:
1.0 = concurrency costs nothing, below 1 = the workers slow each other down. Rounds
alternate between the two servers; the best round of each counts.
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.inputs import center_crop, load_rgb, turn_about_arguments  # noqa: E402 -- after sys.path gets the repository root
from bench.machine import describe_machine  # noqa: E402 -- after sys.path gets the repository root
from superres import codec  # noqa: E402 -- after sys.path gets the repository root

#: Requests per round: an even number, sent one at a time or two at a time.
REQUESTS = 4


def main() -> None:
    args = turn_about_arguments(__doc__, model="RealESRGAN_x4plus", size=128, rounds=3)
    crop = center_crop(load_rgb(args.image), args.size)
    body = {"img": base64.b64encode(codec.encode(crop, "png")).decode(), "scale": 4}
    info = describe_machine(args.threads, "openvino", "torch")
    print(
        f"{args.model}, {REQUESTS} requests of a {args.size}x{args.size} crop of {args.image.name} at scale 4, "
        f"{args.threads} threads in all, best of {args.rounds} alternating rounds, {info['cpu']}, {info['date']}"
    )
    print("| runtime | one worker, one at a time | two workers, two at a time | ratio | load during |")
    print("|---|---|---|---|---|")
    for runtime in ("openvino", "torch"):
        best = {1: float("inf"), 2: float("inf")}
        with server(args, runtime, 1) as alone, server(args, runtime, 2) as shared:
            urls = {1: alone, 2: shared}
            for workers, url in urls.items():  # warm-up: conversion, compilation, each stream's first shapes
                send(url, body, REQUESTS, workers)
            for _ in range(args.rounds):
                for workers, url in urls.items():
                    started = time.perf_counter()
                    send(url, body, REQUESTS, workers)
                    best[workers] = min(best[workers], time.perf_counter() - started)
            load = os.getloadavg()[0]
        per_second = {workers: REQUESTS / seconds for workers, seconds in best.items()}
        print(
            f"| {runtime} | {per_second[1]:.3f} req/s | {per_second[2]:.3f} req/s | "
            f"{per_second[2] / per_second[1]:.2f} | {load:.2f} |"
        )


@contextmanager
def server(args: argparse.Namespace, runtime: str, workers: int) -> Iterator[str]:
    """``superres serve`` in a process of its own with ``workers`` sharing ``args.threads``."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {
        **os.environ,
        "SUPERRES_MODEL_X4": args.model,
        "SUPERRES_RUNTIME": runtime,
        "SUPERRES_WORKERS": str(workers),
        "SUPERRES_QUEUE_SIZE": str(REQUESTS),
        "SUPERRES_CPU_THREADS": str(args.threads),
        "SUPERRES_TIME_BUDGET_SECONDS": "0",
    }
    command = [sys.executable, "-m", "superres.cli", "serve", "--port", str(port), "--model-dir", str(args.model_dir)]
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(url + "/ping", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"superres serve ({runtime}, {workers} workers) did not start")
            time.sleep(0.5)  # polling a starting server, not standing in for a state under test
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)


def send(url: str, body: dict[str, object], count: int, at_once: int) -> None:
    """``count`` requests, ``at_once`` in flight at a time; each must succeed."""

    def one(_: int) -> None:
        response = httpx.post(url + "/resolution", json=body, timeout=600)
        response.raise_for_status()

    with ThreadPoolExecutor(at_once) as pool:
        list(pool.map(one, range(count)))


if __name__ == "__main__":
    main()
