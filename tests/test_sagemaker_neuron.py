"""The Inferentia model artifact, served by the real serving stack of AWS's Neuron inference image.

``deployment/package.py`` builds ``sagemaker-neuron-model.tar.gz`` with the real
RealESRGAN_x4plus weights of ../shared/models; the toolkit (sagemaker-pytorch-inference 2.0.21)
and TorchServe 0.11.0 serve it on 127.0.0.1:8080 under the Inf1 image's Python 3.10, torch
1.13.1 and numpy 1.24.4 (``.venv/sagemaker-neuron``, made by ``make sagemaker-neuron-venv``;
tests/tools/sagemaker-neuron/). The model's environment is the Inferentia template's asynchronous
model's, read from the template (its invocations wait out the compile instead of answering 503),
plus what only this machine needs: a CPU TorchScript trace standing in for torch-neuron (which
exists only in the image), the loopback address, a small window to keep the trace quick.

The first invocation waits in the container until the network is compiled; then requests come
from the invoke-endpoint Lambda's real code through a stand-in for the SageMaker runtime, and the
picture must match the local engine's. The real-time 503 while compiling, and the Lambda's relay
of it, are tested with the compiler held on an event (tests/test_neuron_runner.py).

Not verified here: torch-neuron's and torch-neuronx's compiles (no Neuron hardware, no Neuron
packages), the images themselves (no Docker).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from bench.metrics import psnr

from conftest import SHARED, load_photo
from repo_modules import load_script
from sagemaker_container import ADDRESS, Served, lambda_in_front, serving_artifact, through_lambda, unpack
from sagemaker_runtime import FakeRuntime
from service_helpers import b64
from superres import codec
from superres.engine import Upscaler
from superres.manifest import get_spec
from superres.store import ModelStore
from superres.tiling import TileConfig

ROOT = Path(__file__).resolve().parents[1]
package = load_script("deployment_package", "deployment/package.py")
sagemaker_artifact = package.sagemaker_artifact

pytestmark = pytest.mark.slow

#: The container venv; `make test` points here, a run of its own may name another.
VENV = Path(os.environ.get("SUPERRES_SAGEMAKER_NEURON_VENV") or ROOT / ".venv" / "sagemaker-neuron")
MODEL = "RealESRGAN_x4plus"
#: A 96 px window, 4 a call: a 128 x 96 crop is 6 windows, so the second call is padded.
TILES = TileConfig(tile=64, pad=16, fixed_shape=True, batch=4)
#: The first invocation waits out the compile; on a busy 2-core machine the trace takes a while.
COMPILE_SECONDS = 300


def model_environment(cache: Path) -> dict[str, str]:
    """The template's asynchronous Inferentia model's environment, its ModelName at ``MODEL``,
    and what only this machine needs."""
    body = json.loads((ROOT / "templates" / "sagemaker-inferentia.template.json").read_text())
    template = body["Resources"]["AsyncModel"]["Properties"]["PrimaryContainer"]["Environment"]
    resolved = {"Ref": MODEL, "Fn::Sub": json.dumps([MODEL])}  # {"Ref": "ModelName"}, '["${ModelName}"]'
    return {
        **{name: resolved[next(iter(value))] if isinstance(value, dict) else value for name, value in template.items()},
        # This machine only: the CPU stand-in, asked for by name; the instance-local cache.
        "SUPERRES_NEURON_COMPILER": "cpu-trace",
        "SUPERRES_NEURON_CACHE_DIR": str(cache),
        "SUPERRES_TILE": str(TILES.tile),
        "SUPERRES_PAD": str(TILES.pad),
        "SUPERRES_NEURON_BATCH": str(TILES.batch),
    }


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("artifact")
    weights = package.model_files([MODEL], SHARED / "models", fetch=False)
    artifact = package.build_model_artifact(sagemaker_artifact.NEURON, out, weights, 315532800)
    return unpack(artifact, tmp_path_factory.mktemp("opt-ml"))


@pytest.fixture(scope="module")
def container(unpacked: Path) -> Iterator[Served]:
    with serving_artifact(VENV, unpacked, model_environment(unpacked / "neuron-cache")) as served:
        yield served


@pytest.fixture(scope="module")
def runtime(container: Served) -> Iterator[FakeRuntime]:
    # The Lambda of a deployment without faces would refuse face itself; here it lets it through
    # so that the container's own 400 is what answers.
    with lambda_in_front(SUPERRES_MODELS=json.dumps([MODEL])) as fake:
        yield fake


def test_the_artifact_runs_on_the_images_python_and_numerics(unpacked: Path) -> None:
    """The core imports under Python 3.10 with the image's torch 1.13.1 and numpy 1.24.4, and
    the artifact's own cp310 spandrel, Pillow and Starlette; spandrel loads both architectures."""
    code = unpacked / "model" / "code"
    probe = (
        "import sys, json; sys.path[:0] = [sys.argv[1]]; import inference, superres.engine;"
        "import torch, numpy, PIL, spandrel, starlette;"
        "from superres.runtimes.torch_runner import load_descriptor; from superres.manifest import get_spec;"
        "archs = [load_descriptor(sys.argv[2] + '/' + f, get_spec(n)).architecture.id for n, f in"
        " (('RealESRGAN_x4plus', 'RealESRGAN_x4plus.ncnn-fp16.pth'), ('realesr-animevideov3', 'realesr-animevideov3.ncnn-fp16.pth'))];"
        "print(json.dumps({'python': sys.version.split()[0], 'archs': archs,"
        " **{m.__name__: [m.__version__, m.__file__] for m in (torch, numpy, PIL, spandrel, starlette)}}))"
    )
    done = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", probe, str(code), str(SHARED / "models")],
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["python"].startswith("3.10.") and found["archs"] == ["ESRGAN", "Compact"]
    assert found["torch"][0].startswith("1.13.1") and found["numpy"][0] == "1.24.4"
    assert all(str(VENV) in found[name][1] for name in ("torch", "numpy"))
    assert all(found[name][1].startswith(str(code / "lib")) for name in ("PIL", "spandrel", "starlette"))
    vendored = sagemaker_artifact.vendored_distributions(code / "lib")
    assert vendored.isdisjoint({"torch", "torchvision", "numpy", "opencv-python-headless", "pyyaml", "boto3"})


def test_ping_answers_while_the_network_compiles(container: Served) -> None:
    assert httpx.get(f"{ADDRESS}/ping", timeout=10).status_code == 200
    print(f"first /ping 200 after {container.seconds_to_ping:.1f} s")


def test_a_photo_waits_out_the_compile_then_comes_through_the_lambda_as_the_local_engine_makes_it(
    runtime: FakeRuntime, container: Served
) -> None:
    photo = np.ascontiguousarray(load_photo("astronaut.png")[60:156, 140:268, :3])  # 128 x 96
    payload = {"img": b64(codec.encode(photo, "png")), "scale": 4}
    # The asynchronous model's invocation: it returns once the container's compile is done.
    first = httpx.post(f"{ADDRESS}/invocations", json=payload, timeout=COMPILE_SECONDS)
    assert first.status_code == 200, first.text
    print(f"the first invocation, compile included, after {first.elapsed.total_seconds():.1f} s")
    status, _, body = through_lambda(runtime, payload)
    assert status == 200, body
    spec = get_spec(MODEL)
    local = Upscaler.from_file(
        ModelStore(SHARED / "models").path(spec), spec, runtime="torch", device="cpu", bf16=False, tiles=TILES
    ).upscale(photo, 4)
    for answer, path in ((body, "through the Lambda"), (first.json(), "the first, waiting")):
        pixels, info = codec.decode(base64.b64decode(answer["result"]))
        assert (info.width, info.height) == (512, 384) and answer["model"] == MODEL
        quality = psnr(pixels, local)
        print(f"{path}: {quality:.1f} dB against the local engine (torch {torch.__version__}, fp32, eager)")
        assert quality >= 50
    compiled = list((container.log.parent / "neuron-cache").glob("*.pt"))
    assert [path.name for path in compiled] == [f"{MODEL}.cpu-trace-96px-b4.pt"]


def test_face_is_the_400_of_a_deployment_without_faces(runtime: FakeRuntime) -> None:
    pixels = np.ascontiguousarray(load_photo("astronaut.png")[:32, :32, :3])
    status, _, body = through_lambda(runtime, {"img": b64(codec.encode(pixels, "png")), "face": True})
    assert status == 400 and body == {
        "message": "face enhancement is not enabled on this deployment",
        "code": "bad_request",
    }


def test_bad_input_is_a_4xx_in_the_error_shape(container: Served) -> None:
    answer = httpx.post(f"{ADDRESS}/invocations", json={"img": "not base64!"}, timeout=60)
    assert answer.status_code == 400 and set(answer.json()) == {"message", "code"}
    wrong_type = httpx.post(
        f"{ADDRESS}/invocations", content=b"\x89PNG", headers={"content-type": "image/png"}, timeout=60
    )
    assert wrong_type.status_code == 415 and wrong_type.json()["code"] == "unsupported_media_type"
