"""Cold start of the CPU Lambda host, from process start to the first result, in stages.

    python bench/cold_start.py [--model realesr-animevideov3] [--size 64] [--runs 3]
    python bench/cold_start.py --zip deployment/regional-s3-assets/cpu-service.zip \
        --model-dir DIR_WITH_<model>.openvino --python python3.12

Each run is a fresh interpreter doing what Lambda's init and first invoke do:
start Python, import the libraries, import ``lambda_sr.handler`` (which loads
the network during init), answer one API Gateway event, then a second one
(warm). With ``--zip`` the interpreter (``--python``, 3.12 as in Lambda) runs with
nothing but the unpacked zip on its path (``-S -I``), and the model directory holds
the release's converted network as the stager leaves it on EFS; without, it runs from
this checkout, converting the network once beforehand. Stages are wall-clock deltas measured by the child; "interpreter" is
from the parent's spawn to the child's first line. Runs go one after another
and the median of each stage is reported, with the page cache warm after the
first run (as on a Lambda host re-reading the same EFS files).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.inputs import PHOTO, SHARED  # noqa: E402 -- after sys.path gets the repository root
from bench.machine import describe_machine  # noqa: E402 -- after sys.path gets the repository root

CHILD = """
import time
marks = {"started": time.time()}
import json, sys
sys.path[:0] = sys.argv[1:]
import openvino, numpy, PIL.Image, mangum, starlette  # the heavy imports, on their own
import superres.service.local
marks["imported"] = time.time()
from lambda_sr.handler import handler  # init: settings from the environment, network loaded
marks["loaded"] = time.time()
marks["torch imported"] = "torch" in sys.modules  # the converted network needs none
class Context:
    function_name = "superres"
    aws_request_id = "cold-start"
    def get_remaining_time_in_millis(self):
        return 29_000
event = json.loads(sys.stdin.read())
for mark in ("first", "second"):
    answer = handler(event, Context())
    assert answer["statusCode"] == 200, answer["body"][:500]
    marks[mark] = time.time()
print(json.dumps(marks))
"""

STAGES = {
    "interpreter start": ("spawned", "started"),
    "imports (OpenVINO, numpy, Pillow, service)": ("started", "imported"),
    "handler init (settings, model load)": ("imported", "loaded"),
    "first request": ("loaded", "first"),
    "second request (warm)": ("first", "second"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        default="realesr-animevideov3",
        help="the x4 network (the Lambda stack's default, realesr-general-x4v3, is the same "
        "architecture with 32 instead of 16 convolutions; its weights are not in ../shared)",
    )
    parser.add_argument("--model-dir", type=Path, default=SHARED / "models")
    parser.add_argument("--image", type=Path, default=PHOTO)
    parser.add_argument("--size", type=int, default=64, help="edge of the square crop sent")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--zip", type=Path, help="the built cpu-service.zip: run it as Lambda does")
    parser.add_argument("--python", default=sys.executable, help="the interpreter for --zip (3.12, as in Lambda)")
    args = parser.parse_args()

    from superres import codec
    from superres.engine import Upscaler
    from superres.manifest import get_spec
    from superres.store import ModelStore

    sys.path.insert(0, str(ROOT / "tests"))
    from lambda_events import api_gateway_event

    pixels, _ = codec.decode(args.image.read_bytes())
    crop = pixels[: args.size, : args.size, :3]
    event = api_gateway_event(json.dumps({"img": base64.b64encode(codec.encode(crop, "png")).decode(), "scale": 4}))
    env = {
        **os.environ,
        "SUPERRES_VARIANT": "lambda",
        "SUPERRES_MODEL_X4": args.model,
        "SUPERRES_MODEL_DIR": str(args.model_dir),
        "OMP_NUM_THREADS": str(args.threads),
    }
    with tempfile.TemporaryDirectory(prefix="cold-start-") as scratch:
        if args.zip:
            with zipfile.ZipFile(args.zip) as archive:
                archive.extractall(scratch)
            command = [args.python, "-S", "-I", "-c", CHILD, scratch]
        else:
            # The network converted once beforehand, as the release build does for the zip.
            spec = get_spec(args.model)
            Upscaler.from_file(ModelStore(args.model_dir).network(spec), spec, runtime="openvino")
            command = [sys.executable, "-c", CHILD, str(ROOT / "source")]
        runs = [run_once(command, json.dumps(event), env) for _ in range(args.runs)]
    host = f"{args.zip.name} under {Path(args.python).name}" if args.zip else "this checkout"
    info = describe_machine(args.threads, "openvino")
    print(
        f"CPU Lambda host ({host}), {args.model}, {args.size}x{args.size} PNG at scale 4, median of {args.runs} "
        f"fresh processes, {args.threads} threads, load {info['load_average'][0]:.2f}, {info['cpu']}, {info['date']}"
    )
    print("| stage | s |")
    print("|---|---|")
    for stage, (start, end) in STAGES.items():
        print(f"| {stage} | {statistics.median(run[end] - run[start] for run in runs):.2f} |")
    print(f"| process start to first result | {statistics.median(run['first'] - run['spawned'] for run in runs):.2f} |")
    print(f"torch imported by the host: {any(run['torch imported'] for run in runs)}")


def run_once(command: list[str], event: str, env: dict[str, str]) -> dict[str, Any]:
    spawned = time.time()
    done = subprocess.run(command, input=event, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-4000:])
    return {"spawned": spawned, **json.loads(done.stdout.strip().splitlines()[-1])}


if __name__ == "__main__":
    main()
