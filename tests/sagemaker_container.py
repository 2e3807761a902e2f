"""A SageMaker model artifact served as its image serves it: unpacked into a temporary
``SAGEMAKER_BASE_DIR`` (the toolkit's /opt/ml) and run by sagemaker-pytorch-inference's
``serving.main()`` (what AWS's PyTorch and Neuron images run for ``serve``) and TorchServe on
127.0.0.1:8080, from the venv that stands for the image's Python and packages; and the
invoke-endpoint Lambda's real code in front of it (tests/sagemaker_runtime.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lambda_events import LambdaContext, api_gateway_event
from sagemaker_runtime import FakeRuntime, invoke_endpoint_lambda
from servers import serving

ADDRESS = "http://127.0.0.1:8080"
#: Torch's import and the first load take seconds; on a busy 2-core machine, more.
START_SECONDS = 300


@dataclasses.dataclass
class Served:
    seconds_to_ping: float
    log: Path


def unpack(artifact: Path, base: Path) -> Path:
    """``artifact`` unpacked into ``base``/model, as SageMaker unpacks it into /opt/ml/model."""
    with tarfile.open(artifact) as archive:
        archive.extractall(base / "model", filter="data")
    return base


@contextlib.contextmanager
def serving_artifact(venv: Path, unpacked: Path, environment: dict[str, str]) -> Iterator[Served]:
    """The toolkit and TorchServe of ``venv`` serving ``unpacked`` on 127.0.0.1:8080 with the
    model's ``environment``; stopped, process group and all, when the block ends."""
    python = venv / "bin" / "python"
    assert python.exists(), f"{venv} is missing: its make target creates it"
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", 8080)) != 0, "127.0.0.1:8080 is taken; the container needs it"
    full = {
        **os.environ,
        **environment,
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",  # torchserve and java
        "SAGEMAKER_BASE_DIR": str(unpacked),
        # The image binds 0.0.0.0:8080; a test listens on loopback only.
        "TS_INFERENCE_ADDRESS": ADDRESS,
        "TS_MANAGEMENT_ADDRESS": ADDRESS,
        "TS_DISABLE_SYSTEM_METRICS": "true",  # as the image sets it (no nvidia-smi)
    }
    config = Path("/etc/sagemaker-ts.properties")  # the toolkit writes TorchServe's config here
    config_existed = config.exists()
    log = unpacked / "container.log"
    started = time.monotonic()
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(python), "-c", "from sagemaker_pytorch_serving_container import serving; serving.main()"],
            cwd=unpacked,
            env=full,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: TorchServe and its workers included
        )
    try:
        seconds = wait_for_ping(process, log, started)
        yield Served(seconds, log)
    finally:
        process.send_signal(signal.SIGTERM)  # the toolkit passes it on to TorchServe
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if not config_existed:
            config.unlink(missing_ok=True)


def wait_for_ping(process: subprocess.Popen[bytes], log: Path, started: float) -> float:
    """Seconds from start to the first /ping 200, polled; fails when the server dies or never answers."""
    deadline = started + START_SECONDS
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"the serving stack exited ({process.returncode}):\n{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if client.get(f"{ADDRESS}/ping").status_code == 200:
                    return time.monotonic() - started
            time.sleep(0.1)
    pytest.fail(f"no /ping 200 within {START_SECONDS} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def lambda_in_front(**environment: str) -> Iterator[FakeRuntime]:
    """The SageMaker runtime stand-in forwarding to the served container, and the invoke-endpoint
    Lambda pointed at it (its ``handler``)."""
    fake = FakeRuntime()
    fake.container = ADDRESS
    with serving(fake.app()) as runtime_url, invoke_endpoint_lambda(fake, runtime_url, **environment):
        yield fake


def through_lambda(runtime: FakeRuntime, payload: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    """The Lambda's status, headers and JSON body for ``payload`` (an API Gateway event)."""
    answer = runtime.handler(api_gateway_event(json.dumps(payload)), LambdaContext())
    headers = {name.lower(): value for name, value in (answer.get("headers") or {}).items()}
    return answer["statusCode"], headers, json.loads(answer["body"])
