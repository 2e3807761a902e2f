"""A stand-in for the SageMaker runtime's InvokeEndpoint on 127.0.0.1, and the invoke-endpoint
Lambda pointed at it.

It forwards each invocation to a container URL (the app served by uvicorn, or TorchServe
serving the model artifact) and answers errors the way the runtime does (x-amzn-ErrorType,
ModelError fields), so botocore parses them as it would in AWS.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ENDPOINT = "superres-endpoint"


class FakeRuntime:
    """SageMaker runtime's InvokeEndpoint, forwarding to a container URL, with failure modes."""

    def __init__(self) -> None:
        self.container = ""
        self.mode = "forward"
        self.calls = 0
        #: The "hang" mode answers only once this is set: past the client's read timeout.
        self.hung = threading.Event()
        #: lambda_sr.invoke_endpoint's handler, pointed at this runtime.
        self.handler: Any = None

    async def invoke(self, request: Request) -> Response:
        self.calls += 1
        assert request.path_params["name"] == ENDPOINT
        if self.mode == "throttle":
            return _runtime_error(400, "ThrottlingException", {"message": "Rate exceeded"})
        if self.mode == "hang":
            await asyncio.to_thread(self.hung.wait)
        if self.mode == "crash":
            return _model_error(500, "Traceback (most recent call last): ... CUDA error")
        async with httpx.AsyncClient(timeout=60) as client:
            answer = await client.post(
                self.container + "/invocations",
                content=await request.body(),
                headers={"content-type": request.headers.get("content-type", "")},
            )
        if answer.status_code != 200:
            return _model_error(answer.status_code, answer.text)
        return Response(answer.content, media_type="application/json")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/endpoints/{name}/invocations", self.invoke, methods=["POST"])])


def _runtime_error(status: int, error_type: str, body: dict) -> Response:
    return JSONResponse(body, status_code=status, headers={"x-amzn-ErrorType": error_type})


def _model_error(original_status: int, original_message: str) -> Response:
    return _runtime_error(
        424,
        "ModelError",
        {
            "ErrorCode": "CLIENT_ERROR_FROM_MODEL" if original_status < 500 else "SERVER_ERROR_FROM_MODEL",
            "Message": f"Received error ({original_status}) from primary",
            "OriginalStatusCode": original_status,
            "OriginalMessage": original_message,
            "LogStreamArn": "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/x",
        },
    )


@contextmanager
def invoke_endpoint_lambda(runtime: FakeRuntime, runtime_url: str, **environment: str) -> Iterator[Any]:
    """lambda_sr.invoke_endpoint's handler, its botocore client pointed at ``runtime_url``."""
    patch = pytest.MonkeyPatch()
    for name, value in {
        "SUPERRES_ENDPOINT_NAME": ENDPOINT,
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": runtime_url,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        **environment,
    }.items():
        patch.setenv(name, value)
    runtime.handler = importlib.reload(importlib.import_module("lambda_sr.invoke_endpoint")).handler
    try:
        yield runtime.handler
    finally:
        runtime.hung.set()
        patch.undo()
