"""The GPU/Inf1 variant's invoke-endpoint Lambda, end to end over real HTTP.

API Gateway event -> lambda_sr.invoke_endpoint (Mangum) -> botocore's
sagemaker-runtime client -> a stand-in for the SageMaker runtime on 127.0.0.1,
which forwards to our real container app (sagemaker_sr's /invocations) and
answers errors the way the runtime does (x-amzn-ErrorType, ModelError fields),
so botocore parses them as it would in AWS (tests/sagemaker_runtime.py).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from conftest import SHARED
from lambda_events import LambdaContext, api_gateway_event
from sagemaker_runtime import ENDPOINT, FakeRuntime, invoke_endpoint_lambda
from servers import serving
from service_helpers import b64
from superres import codec
from superres.service.local import local_app
from superres.service.settings import ServiceSettings


@pytest.fixture(scope="module")
def runtime() -> Iterator[FakeRuntime]:
    fake = FakeRuntime()
    container_settings = ServiceSettings.for_variant(
        "gpu",
        model_x4="realesr-animevideov3",
        model_dir=SHARED / "models",
        device="cpu",
        face_enabled=False,
        max_input_pixels=100 * 100,  # smaller than the Lambda's limit: the container's 413 must pass through
    )
    with serving(local_app(container_settings)) as container, serving(fake.app()) as runtime_url:
        fake.container = container
        with invoke_endpoint_lambda(fake, runtime_url, SUPERRES_TIME_BUDGET_SECONDS="2"):
            yield fake


def invoke(runtime: FakeRuntime, payload: dict) -> tuple[int, dict]:
    answer = runtime.handler(api_gateway_event(json.dumps(payload)), LambdaContext())
    return answer["statusCode"], json.loads(answer["body"])


@pytest.fixture
def small_png(astronaut) -> bytes:
    return codec.encode(np.ascontiguousarray(astronaut[100:164, 150:214]), "png")


def test_a_valid_request_reaches_the_endpoint_and_comes_back(runtime: FakeRuntime, small_png: bytes) -> None:
    runtime.mode = "forward"
    status, body = invoke(runtime, {"img": b64(small_png), "scale": 4})
    assert status == 200, body
    _, info = codec.decode(base64.b64decode(body["result"]))
    assert (info.width, info.height) == (256, 256)


@pytest.mark.parametrize(
    "payload",
    [
        {"img": "aGVsbG8=", "scale": 9},
        {"img": "aGVsbG8=", "model": "no-such-model"},
        {"img": b64(b"not an image")},
        {"url": "http://10.0.0.1/a.png"},
        {},
    ],
)
def test_bad_requests_never_reach_the_endpoint(runtime: FakeRuntime, payload: dict) -> None:
    runtime.mode = "forward"
    before = runtime.calls
    status, body = invoke(runtime, payload)
    assert 400 <= status < 500 and set(body) == {"message", "code"}
    assert runtime.calls == before


def test_the_containers_own_4xx_passes_through(runtime: FakeRuntime, astronaut) -> None:
    runtime.mode = "forward"
    larger = codec.encode(np.ascontiguousarray(astronaut[:120, :120]), "png")
    status, body = invoke(runtime, {"img": b64(larger)})
    assert status == 413 and "the limit is 10,000 pixels" in body["message"] and body["code"] == "too_large"


@pytest.mark.parametrize(("mode", "status"), [("crash", 502), ("throttle", 429), ("hang", 504)])
def test_endpoint_failures_map_to_the_error_shape(
    runtime: FakeRuntime, small_png: bytes, mode: str, status: int
) -> None:
    runtime.mode = mode
    got, body = invoke(runtime, {"img": b64(small_png)})
    assert got == status, body
    assert set(body) == {"message", "code"} and "Traceback" not in body["message"]


def test_the_invoke_lambda_loads_no_numerics() -> None:
    """It validates and forwards: no torch, OpenCV or numpy in its package or its cold start."""
    probe = (
        "import sys, lambda_sr.invoke_endpoint; "
        "print(sorted(m for m in ('torch', 'cv2', 'numpy', 'spandrel') if m in sys.modules))"
    )
    env = {**os.environ, "SUPERRES_ENDPOINT_NAME": ENDPOINT, "AWS_DEFAULT_REGION": "us-east-1"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "[]"
