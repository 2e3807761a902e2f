"""The container images, as far as this machine can take them without Docker.

Each image's build context (``deployment/build-s3-dist.sh`` writes it) has a pinned
requirements.txt. Here it is installed into a fresh venv (pip, the same package index and
cache as everything else; torch 2.14.1 + torchvision 0.29.1 from this machine's disk) and
the image's own entry point is started from the context's ``source/``: the SageMaker Inf1
container answers ``/ping`` and ``/invocations`` over HTTP on 127.0.0.1 (uvicorn.run is redirected from 0.0.0.0:8080 to
a free loopback port; nothing else of the entry point changes).

Not verified here: the base image itself (Docker does not run); the Neuron image's Python
3.10 (the torch wheels on this disk are for 3.11, so the venv uses 3.11); torch-neuron, which comes from AWS's own package
index and only in the Neuron image (the Inf1 venv gets this machine's torch 2.14.1
instead of the base image's 1.13 and compiles with ``torch.jit.trace``).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SHARED, load_photo
from repo_modules import load_script
from superres import codec

ROOT = Path(__file__).resolve().parents[1]
package = load_script("deployment_package", "deployment/package.py")

pytestmark = pytest.mark.slow

#: A model ../shared/models holds, small enough to run in seconds on the CPU.
MODEL = "realesr-animevideov3"


@pytest.fixture(scope="module")
def contexts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("contexts")
    package.build_container_contexts(out, package.pyproject_pins())
    return out


@pytest.fixture(scope="module")
def image_b64() -> str:
    return base64.b64encode(codec.encode(load_photo("astronaut.png")[:48, :40], "png")).decode()


def install(context: Path, venv: Path) -> Path:
    """A fresh venv with the context's requirements.txt; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-r", str(context / "requirements.txt")],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return python


def run_probe(python: Path, context: Path, probe: str, *args: str, **env: str) -> dict:
    result = subprocess.run(
        [str(python), "-c", probe, *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/root"),
            "PYTHONPATH": str(context / "source"),
            "SUPERRES_MODEL_DIR": str(SHARED / "models"),
            "SUPERRES_MODEL_X4": MODEL,
            "SUPERRES_FACE_ENABLED": "false",
            "AWS_DEFAULT_REGION": "us-east-1",
            **env,
        },
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


#: Runs a SageMaker entry point as the image does, with uvicorn.run serving on a free
#: loopback port and sending one /ping and one /invocations before it stops.
SAGEMAKER_PROBE = """
import json, runpy, sys
import httpx, uvicorn
from superres.service.local import serving

image = sys.argv[2]

def run(app, **options):
    assert (options["host"], options["port"]) == ("0.0.0.0", 8080), options
    with serving(app) as url:
        ping = httpx.get(url + "/ping", timeout=60)
        answer = httpx.post(url + "/invocations", json={"img": image, "scale": 4}, timeout=600)
    print(json.dumps({"ping": ping.status_code, "status": answer.status_code, "body": answer.json()}))

uvicorn.run = run
sys.argv = [sys.argv[1], "serve"]
runpy.run_module(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize(
    ("image", "module", "env"),
    [
        (
            "sagemaker-inf1",
            "sagemaker_sr.neuron",
            {"SUPERRES_NEURON_TILE": "32", "SUPERRES_NEURON_PAD": "8", "SUPERRES_NEURON_BATCH": "2"},
        ),
    ],
)
def test_sagemaker_image_requirements_serve(
    contexts: Path, tmp_path: Path, image_b64: str, image: str, module: str, env: dict
) -> None:
    context = contexts / image
    entry = [line for line in (context / "Dockerfile").read_text().splitlines() if line.startswith("ENTRYPOINT")]
    assert module in entry[0]
    try:
        python = install(context, tmp_path / "venv")
        answer = run_probe(
            python, context, SAGEMAKER_PROBE, module, image_b64, SUPERRES_NEURON_CACHE=str(tmp_path / "compiled"), **env
        )
    finally:
        shutil.rmtree(tmp_path / "venv", ignore_errors=True)
    assert answer["ping"] == 200 and answer["status"] == 200, answer
    assert (answer["body"]["width"], answer["body"]["height"]) == (160, 192)
    assert answer["body"]["model"] == MODEL
    if image == "sagemaker-inf1":
        assert [p.name for p in (tmp_path / "compiled").iterdir()] == [f"{MODEL}.cpu-jit-48px-b2.pt"]
