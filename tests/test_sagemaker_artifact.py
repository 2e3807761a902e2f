"""The GPU model artifact, served by the real serving stack of AWS's PyTorch inference image.

``deployment/package.py`` builds ``sagemaker-gpu-model.tar.gz`` with the real
RealESRGAN_x4plus weights and YuNet of ../shared/models, and GFPGANv1Clean with random
weights in the official layout (no GFPGAN weights exist here); it is unpacked into a temporary
``SAGEMAKER_BASE_DIR`` (the toolkit's /opt/ml) and served by sagemaker-pytorch-inference's
``serving.main()`` (what the image's entry point runs for ``serve``) and TorchServe on
127.0.0.1:8080 (tests/sagemaker_container.py), on the CPU, under the image's Python 3.12, torch 2.6.0 and numpy
(``.venv/sagemaker-gpu``, made by ``make sagemaker-gpu-venv``; tests/tools/sagemaker-gpu/).
The container's environment is the template's own (``Model`` in sagemaker-gpu.template.json),
plus what only a test on this machine needs: the CPU, the loopback address, the test's
directory, and a pixel limit below the Lambda's.

Requests come from the invoke-endpoint Lambda's real code (``lambda_sr.invoke_endpoint`` and
its ``SageMakerBackend``) through a stand-in for the SageMaker runtime on 127.0.0.1.

Not verified here: CUDA and the GPU driver (no GPU), the image itself (no Docker), the faces
GFPGAN paints (random weights: the path is real, the pictures are noise).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from botocore.exceptions import ClientError

from conftest import SHARED, load_photo, write_random_gfpgan
from repo_modules import load_script
from sagemaker_container import ADDRESS, Served, lambda_in_front, serving_artifact, unpack
from sagemaker_container import through_lambda as lambda_answer
from sagemaker_runtime import ENDPOINT, FakeRuntime
from service_helpers import b64
from superres import codec
from superres.errors import SuperResError
from superres.face_detection import FaceDetector
from superres.service.backends import SageMakerBackend, model_error
from superres.service.request import ParsedRequest, build_job
from superres.service.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[1]
package = load_script("deployment_package", "deployment/package.py")
sagemaker_artifact = package.sagemaker_artifact

pytestmark = pytest.mark.slow

#: The container venv; `make test` points here, a run of its own may name another.
VENV = Path(os.environ.get("SUPERRES_SAGEMAKER_GPU_VENV") or ROOT / ".venv" / "sagemaker-gpu")
MODELS = ["RealESRGAN_x4plus", "YuNet"]
#: Below the Lambda's limit (1920x1080): the container's own 413 must pass through it.
CONTAINER_MAX_PIXELS = 100 * 100


def template_environment() -> dict[str, str]:
    """The GPU template's container environment, its parameters at the values tested here."""
    body = json.loads((ROOT / "templates" / "sagemaker-gpu.template.json").read_text())
    parameters = {"ModelName": "RealESRGAN_x4plus", "FaceEnhancement": "true"}
    environment = body["Resources"]["Model"]["Properties"]["PrimaryContainer"]["Environment"]
    return {name: parameters[value["Ref"]] if isinstance(value, dict) else value for name, value in environment.items()}


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("artifact")
    weights = package.model_files(MODELS, SHARED / "models", fetch=False)
    # What the release packs from its verified GFPGANv1.4.pth, here random weights in its layout.
    weights["GFPGANv1.4"] = write_random_gfpgan(tmp_path_factory.mktemp("gfpgan") / "GFPGANv1.4.pth")
    return package.build_model_artifact(sagemaker_artifact.GPU, out, weights, 315532800)


@pytest.fixture(scope="module")
def unpacked(artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return unpack(artifact, tmp_path_factory.mktemp("opt-ml"))


@pytest.fixture(scope="module")
def container(unpacked: Path) -> Iterator[Served]:
    environment = {
        **template_environment(),
        "SUPERRES_DEVICE": "cpu",
        "SUPERRES_RUNTIME": "torch",
        "SUPERRES_MAX_INPUT_PIXELS": str(CONTAINER_MAX_PIXELS),
    }
    with serving_artifact(VENV, unpacked, environment) as served:
        yield served


@pytest.fixture(scope="module")
def runtime(container: Served) -> Iterator[FakeRuntime]:
    with lambda_in_front() as fake:
        yield fake


def through_lambda(runtime: FakeRuntime, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    status, _, body = lambda_answer(runtime, payload)
    return status, body


def png(astronaut: np.ndarray, size: int) -> bytes:
    return codec.encode(np.ascontiguousarray(astronaut[100 : 100 + size, 150 : 150 + size]), "png")


def backend() -> SageMakerBackend:
    """The invoke-endpoint Lambda's backend, as it builds it (after invoke_endpoint_lambda)."""
    return SageMakerBackend(ServiceSettings.for_variant("gpu"), ENDPOINT)


# ---------------------------------------------------------------- the artifact


def test_the_artifact_vendors_nothing_the_image_has(unpacked: Path) -> None:
    model = unpacked / "model"
    assert (model / "code" / "inference.py").is_file() and (model / "code" / "superres" / "engine.py").is_file()
    assert not (model / "code" / "requirements.txt").exists()  # the toolkit would pip-install it at start
    vendored = sagemaker_artifact.vendored_distributions(model / "code" / "lib")
    assert {"spandrel", "pillow", "pi-heif", "starlette", "httpx", "jsonschema", "pydantic-settings"} <= vendored
    assert vendored.isdisjoint({"torch", "torchvision", "numpy", "opencv-python-headless", "pyyaml"})
    assert {path.name for path in model.glob("*.*")} == {
        "RealESRGAN_x4plus.ncnn-fp16.pth",
        "face_detection_yunet_2026may.onnx",
        "GFPGANv1.4.pth",
    }


def test_the_core_imports_the_images_numerics(unpacked: Path) -> None:
    """With the artifact's path as the toolkit sets it, the core gets the image's torch, numpy
    and OpenCV, and the artifact's own spandrel and Pillow (the image's has no AVIF)."""
    code = unpacked / "model" / "code"
    probe = (
        "import sys, json; sys.path[:0] = [sys.argv[1]]; import inference, superres.engine, superres.face;"
        "import torch, numpy, PIL, cv2, spandrel;"
        "print(json.dumps({m.__name__: [m.__version__, m.__file__] for m in (torch, numpy, PIL, cv2, spandrel)}))"
    )
    done = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", probe, str(code)], capture_output=True, text=True, check=True
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["torch"][0].startswith("2.6.0") and found["numpy"][0] == "2.2.3"
    assert found["cv2"][0].startswith("4.11.")
    assert all(str(VENV) in found[name][1] for name in ("torch", "numpy", "cv2"))
    assert found["PIL"][0] == "13.0.0"
    assert found["spandrel"][1].startswith(str(code / "lib")) and found["PIL"][1].startswith(str(code / "lib"))


def test_the_face_detector_runs_on_the_images_opencv(unpacked: Path) -> None:
    """YuNet's graph (the face path's detector) on the image's OpenCV 4.11 dnn module: the image
    has no OpenVINO; the decoding around it is the kit's own, as on every host."""
    model = unpacked / "model"
    probe = (
        "import sys, json; sys.path[:0] = [sys.argv[1] + '/code/lib', sys.argv[1] + '/code'];"
        "from superres import codec; from superres.face_detection import FaceDetector;"
        "pixels, _ = codec.decode(open(sys.argv[2], 'rb').read());"
        "detector = FaceDetector.from_file(sys.argv[1] + '/' + sys.argv[3]);"
        "faces = detector.detect(pixels);"
        "print(json.dumps([detector.network.runtime, [face.landmarks.tolist() for face in faces]]))"
    )
    arguments = [str(model), str(SHARED / "images" / "astronaut.png"), "face_detection_yunet_2026may.onnx"]
    done = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", probe, *arguments], capture_output=True, text=True, check=True
    )
    runtime, (landmarks,) = json.loads(done.stdout.strip().splitlines()[-1])
    assert runtime == "opencv"
    # The same face as OpenVINO finds here (this venv's detector), within float noise.
    (face,) = FaceDetector.from_file(model / "face_detection_yunet_2026may.onnx").detect(load_photo("astronaut.png"))
    assert np.abs(np.array(landmarks) - face.landmarks).max() < 1e-3


# ---------------------------------------------------------------- served by the toolkit


def test_ping_answers(container: Served) -> None:
    assert httpx.get(f"{ADDRESS}/ping", timeout=10).status_code == 200
    print(f"first /ping 200 after {container.seconds_to_ping:.1f} s")  # the README's start-up figure


def test_torchserve_runs_with_the_templates_settings(container: Served) -> None:
    """One worker, the response timeout and size caps the template sets (TorchServe's own view)."""
    described = httpx.get(f"{ADDRESS}/models/model", timeout=10).json()[0]
    environment = template_environment()
    assert (described["minWorkers"], described["maxWorkers"]) == (1, 1)
    assert described["responseTimeout"] == int(environment["TS_DEFAULT_RESPONSE_TIMEOUT"])
    startup = container.log.read_text()
    assert f"Maximum Request Size: {environment['TS_MAX_REQUEST_SIZE']}" in startup
    assert f"Maximum Response Size: {environment['TS_MAX_RESPONSE_SIZE']}" in startup


def test_a_request_through_the_lambda_comes_back_enlarged(runtime: FakeRuntime, astronaut: np.ndarray) -> None:
    status, body = through_lambda(runtime, {"img": b64(png(astronaut, 64)), "scale": 4})
    assert status == 200, body
    pixels, info = codec.decode(base64.b64decode(body["result"]))
    assert (info.width, info.height, info.format) == (256, 256, "png")
    assert (body["model"], body["width"], body["height"]) == ("RealESRGAN_x4plus", 256, 256)
    assert pixels.std() > 10  # a picture, not a blank


def test_a_face_request_through_the_lambda_comes_back_restored(runtime: FakeRuntime, astronaut: np.ndarray) -> None:
    """``face: true`` as the GPU template configures the container (FaceEnhancement true sets
    SUPERRES_FACE_ENABLED): YuNet on the image's OpenCV, GFPGAN on its torch."""
    # The astronaut at half size, 96x96 around her face (a 45x57 box): under the container's
    # pixel limit, so the same request without face answers too.
    half = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    portrait = codec.encode(np.ascontiguousarray(half[10:106, 60:156]), "png")
    status, body = through_lambda(runtime, {"img": b64(portrait), "scale": 2, "face": True})
    assert status == 200, body
    assert (body["faces"], body["width"], body["height"]) == (1, 192, 192)
    restored, _ = codec.decode(base64.b64decode(body["result"]))
    status, plain = through_lambda(runtime, {"img": b64(portrait), "scale": 2})
    assert status == 200 and plain["faces"] == 0, plain
    upscaled, _ = codec.decode(base64.b64decode(plain["result"]))
    changed = (restored != upscaled).any(axis=2)
    # The face changes (random weights paint noise there: all of its middle measured), the
    # corners, outside the pasted crop's mask, do not (73% of the image changed).
    assert changed[60:140, 70:140].mean() > 0.9 and 0.2 < changed.mean() < 0.95
    assert not changed[:8, :8].any() and not changed[-8:, -8:].any()


def test_the_containers_413_reaches_the_lambda_in_the_error_shape(runtime: FakeRuntime, astronaut: np.ndarray) -> None:
    status, body = through_lambda(runtime, {"img": b64(png(astronaut, 120))})
    assert status == 413, body
    assert set(body) == {"message", "code"} and body["code"] == "too_large"
    assert f"the limit is {CONTAINER_MAX_PIXELS:,} pixels" in body["message"]


def test_an_unsupported_image_is_the_containers_415(runtime: FakeRuntime, astronaut: np.ndarray) -> None:
    """A job whose bytes are no image the container takes (the Lambda would have refused it)."""
    request = ParsedRequest(
        url=None,
        img=b64(png(astronaut, 32)),
        image=None,
        scale=2,
        width=None,
        height=None,
        model=None,
        face=False,
        format=None,
        quality=90,
    )
    job = build_job(request, ServiceSettings.for_variant("gpu"))
    gif = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
    with pytest.raises(SuperResError) as raised:
        asyncio.run(backend().run(dataclasses.replace(job, image=gif), None))
    assert (raised.value.status, raised.value.code) == (415, "unsupported_image")
    assert "Traceback" not in raised.value.message


def test_a_body_that_is_not_json_is_a_415_in_the_error_shape(runtime: FakeRuntime, astronaut: np.ndarray) -> None:
    """InvokeEndpoint with another content type, from the Lambda's own sagemaker-runtime client."""
    with pytest.raises(ClientError) as raised:
        backend().client.invoke_endpoint(EndpointName=ENDPOINT, ContentType="image/png", Body=png(astronaut, 32))
    response = raised.value.response
    assert response["OriginalStatusCode"] == 415
    assert json.loads(response["OriginalMessage"]) == {
        "message": "send the request as application/json, not image/png",
        "code": "unsupported_media_type",
    }
    relayed = model_error(response["OriginalStatusCode"], response["OriginalMessage"])
    assert (relayed.status, relayed.code) == (415, "unsupported_media_type")


def test_a_body_over_the_limit_is_the_apps_413_not_torchserves(container: Served) -> None:
    """Past TorchServe's default cap (6.5 MB) but inside the template's: the app answers, in its shape."""
    limit = ServiceSettings.for_variant("gpu").max_request_bytes
    body = json.dumps({"img": "A" * (limit + 500_000)}).encode()
    answer = httpx.post(
        f"{ADDRESS}/invocations", content=body, headers={"content-type": "application/json"}, timeout=60
    )
    assert answer.status_code == 413
    assert answer.json()["code"] == "too_large" and f"the limit is {limit:,} bytes" in answer.json()["message"]
