"""What the service tests share: a fast deployment's settings, requests and error checks, a
backend held on an event, the CPU Lambda's handler as its init phase builds it."""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import jsonschema
import pytest

from conftest import SHARED
from superres.service import local
from superres.service.backends import Backend, Upscaled
from superres.service.contract import schema
from superres.service.request import Job
from superres.service.settings import ServiceSettings

#: realesr-animevideov3, real weights, 30x cheaper than x4plus: requests finish in well under a second.
FAST = {"model_x4": "realesr-animevideov3", "model_dir": SHARED / "models"}


def settings(**overrides: object) -> ServiceSettings:
    """A local deployment on the fast network that may fetch from 127.0.0.1; ``overrides`` win."""
    return ServiceSettings.for_variant("local", **{**FAST, "allow_loopback_urls": True, **overrides})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def post(base_url: str, payload: object, path: str = "/resolution", **kwargs: Any) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return httpx.post(base_url + path, content=body, headers={"content-type": "application/json"}, timeout=60, **kwargs)


def assert_error(response: httpx.Response, status: int, *fragments: str) -> None:
    """``status`` with the contract's error shape, its message containing every fragment."""
    assert response.status_code == status, response.text
    body = response.json()
    jsonschema.validate(body, schema("Error"))
    assert set(body) == {"message", "code"}
    for fragment in fragments:
        assert fragment in body["message"], body["message"]


class HeldBackend:
    """The real backend behind a gate: ``entered`` is set when a job reaches it, and it computes
    only once ``release`` is set. With ``past_deadline``, it then also waits out the job's
    time budget, so the real backend meets a deadline that has provably passed."""

    def __init__(self, backend: Backend, *, past_deadline: bool = False) -> None:
        self.backend = backend
        self.past_deadline = past_deadline
        self.entered = threading.Event()
        self.release = threading.Event()
        if past_deadline:
            self.release.set()

    async def run(self, job: Job, deadline: float | None) -> Upscaled:
        self.entered.set()
        await asyncio.to_thread(self.release.wait)
        if self.past_deadline:
            assert deadline is not None, "no time budget to run past"
            await asyncio.sleep(deadline - time.monotonic() + 0.01)
        return await self.backend.run(job, deadline)

    def wait_entered(self) -> None:
        assert self.entered.wait(timeout=60), "no job reached the backend"


def load_lambda(
    module: str, env: dict[str, str] | None = None, wrap: Callable[[Backend], Backend] | None = None
) -> Any:
    """The handler of ``module`` (lambda_sr.handler, lambda_sr.worker) as Lambda's init phase
    builds it from ``env`` (environment variables), on the fast network; ``wrap`` wraps its backend."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SUPERRES_MODEL_X4", "realesr-animevideov3")
        patch.setenv("SUPERRES_MODEL_DIR", str(SHARED / "models"))
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        if wrap is not None:
            real = local.LocalBackend
            patch.setattr(local, "LocalBackend", lambda chosen: wrap(real(chosen)))
        return importlib.reload(importlib.import_module(module)).handler
