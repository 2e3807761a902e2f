"""Why the Inferentia model runs the whole pipeline in its container rather than a window server:
bytes moved and the Lambda-side work for one 1920x1080 request at x4.

    python bench/neuron_transfer.py [--image ../shared/images/rocket.jpg] [--rounds 3]

Two designs. In the container (what the kit does), the invoke-endpoint Lambda forwards the encoded
image and gets the encoded result back: one InvokeEndpoint. With a window server, the Lambda would
cut the image into the kit's fixed windows (``tile + 2 * pad`` pixels), send each raw, get each
enlarged window back raw, stitch the cores and encode the result itself; every InvokeEndpoint
carries at most 6,291,456 bytes each way (the SageMaker runtime's Body limit in its API model).

Bytes are exact for the plan of ``superres.tiling``. The photo is the chosen one resized to
1920x1080; the x4 result is a Lanczos x4 of it standing in for the network's output (same size,
photo content; the network itself takes minutes on this CPU, and neither design changes what it
computes). Seconds are this machine's, for the Lambda-side work only, as ratios against the
container design's Lambda-side work measured in the same run; the network time and the network
latency per invocation are not measured here (no Inferentia, no SageMaker).
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.inputs import SHARED, load_rgb  # noqa: E402 -- after sys.path gets the repository root
from bench.machine import describe_machine  # noqa: E402 -- after sys.path gets the repository root
from superres import codec  # noqa: E402 -- after sys.path gets the repository root
from superres.engine import lanczos_resize  # noqa: E402 -- after sys.path gets the repository root
from superres.service.settings import ServiceSettings  # noqa: E402 -- after sys.path gets the repository root
from superres.tiling import TileConfig, plan  # noqa: E402 -- after sys.path gets the repository root

#: InvokeEndpoint's Body limit (botocore's sagemaker-runtime model: BodyBlob max), each way.
INVOKE_LIMIT = 6_291_456
WIDTH, HEIGHT, SCALE = 1920, 1080, 4


def best_of(rounds: int, work: Callable[[], object]) -> float:
    """The fastest of ``rounds`` runs, in seconds (a busy machine only slows a run)."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, default=SHARED / "images" / "rocket.jpg")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = ServiceSettings.for_variant("gpu")
    config = TileConfig(tile=settings.tile, pad=settings.pad, fixed_shape=True)
    photo = lanczos_resize(load_rgb(args.image), (WIDTH, HEIGHT))
    result = lanczos_resize(photo, (WIDTH * SCALE, HEIGHT * SCALE))
    tiles = plan(HEIGHT, WIDTH, config)
    window_in = config.window * config.window * 3  # uint8 RGB, the least a raw window can be
    window_out = window_in * SCALE * SCALE
    per_call = min(INVOKE_LIMIT // window_in, INVOKE_LIMIT // window_out)
    report: dict[str, object] = {
        "machine": describe_machine(1),
        "photo": args.image.name,
        "window_px": config.window,
        "windows": len(tiles),
        "window_server": {
            "bytes_in": len(tiles) * window_in,
            "bytes_out": len(tiles) * window_out,
            "windows_per_invocation": per_call,
            "invocations": math.ceil(len(tiles) / per_call) if per_call else None,
        },
        "container": {},
    }
    for kind in ("jpeg", "png"):
        encoded_in = codec.encode(photo, kind, quality=90)
        encoded_out = codec.encode(result, kind, quality=90)
        request = json.dumps({"img": base64.b64encode(encoded_in).decode(), "scale": SCALE})
        answer = json.dumps({"result": base64.b64encode(encoded_out).decode()})
        report["container"][kind] = {  # type: ignore[index]  # built just above
            "bytes_in": len(request),
            "bytes_out": len(answer),
            "fits_one_invocation": len(request) <= INVOKE_LIMIT and len(answer) <= INVOKE_LIMIT,
        }

    jpeg_in, jpeg_out = codec.encode(photo, "jpeg", quality=90), codec.encode(result, "jpeg", quality=90)

    def forward() -> None:  # the container design's Lambda side: the input's base64 out, the result's in and on
        base64.b64encode(jpeg_in)
        base64.b64encode(base64.b64decode(base64.b64encode(jpeg_out)))

    def windows_and_stitch() -> None:  # the window server's Lambda side, less the network and HTTP
        output = np.empty_like(result)
        for tile in tiles:
            rows, cols = tile.rows, tile.cols
            np.ascontiguousarray(photo[rows.window_start : rows.window_end, cols.window_start : cols.window_end])
            enlarged = result[
                rows.window_start * SCALE : rows.window_end * SCALE, cols.window_start * SCALE : cols.window_end * SCALE
            ].copy()  # what would arrive raw
            output[rows.core_start * SCALE : rows.core_end * SCALE, cols.core_start * SCALE : cols.core_end * SCALE] = (
                enlarged[
                    (rows.core_start - rows.window_start) * SCALE : (rows.core_end - rows.window_start) * SCALE,
                    (cols.core_start - cols.window_start) * SCALE : (cols.core_end - cols.window_start) * SCALE,
                ]
            )
        codec.encode(output, "jpeg", quality=90)

    reference = best_of(args.rounds, forward)
    lambda_side = best_of(args.rounds, windows_and_stitch)
    report["seconds"] = {
        "container_lambda_side": round(reference, 3),
        "window_server_lambda_side": round(lambda_side, 3),
        "ratio": round(lambda_side / reference, 1),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
