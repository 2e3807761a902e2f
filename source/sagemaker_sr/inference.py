"""The SageMaker models' host: ``code/inference.py`` of ``sagemaker-gpu-model.tar.gz`` (AWS's
PyTorch inference image, CUDA) and of ``sagemaker-neuron-model.tar.gz`` (AWS's Neuron inference
images, Inf1 and Inf2; ``SUPERRES_RUNTIME=neuron``), both built by deployment/package.py and
served by the image's toolkit (sagemaker-pytorch-inference on TorchServe) on /ping and
/invocations.

``model_fn`` builds the service once per TorchServe worker: the same app and in-process
backend every other host runs (``superres.service``), its models loaded from the unpacked
artifact. On the Neuron runtime it returns while the network compiles (minutes, on a thread of
the runner): the toolkit's /ping answers 200 either way, so until the compile is done every
invocation answers 503 ``model_warming_up`` with a Retry-After, never a hang. ``transform_fn``
hands each body to that app's ``POST /invocations`` and answers with its status and JSON, so
every error, a bad request included, is the one error shape with its own status
(``context.set_response_status``); the toolkit's own error path would answer with a traceback
in the body.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

# The artifact's vendored packages (code/lib) come before the image's site-packages.
sys.path.insert(0, str(Path(__file__).with_name("lib")))

import httpx

from superres.service.app import error_response
from superres.service.local import local_app
from superres.service.settings import ServiceSettings

JSON = "application/json"


@dataclass
class Host:
    """The app of this worker, called in process on the worker's one event loop."""

    client: httpx.AsyncClient
    loop: asyncio.AbstractEventLoop

    def invoke(self, body: bytes) -> tuple[int, bytes]:
        """``POST /invocations`` with ``body``: the app's status and body."""
        request = self.client.post("/invocations", content=body, headers={"content-type": JSON})
        answer = self.loop.run_until_complete(request)
        return answer.status_code, answer.content


def model_fn(model_dir: str) -> Host:
    """The service of the GPU variant (``SUPERRES_*`` from the container's environment),
    its models from ``model_dir``: loaded once, before the first request."""
    settings = ServiceSettings.for_variant("gpu", model_dir=model_dir)
    if settings.runtime == "neuron":
        # GFPGAN is not compiled for Neuron: a face request is the 400 of a deployment without faces.
        settings = settings.model_copy(update={"face_enabled": False})
    transport = httpx.ASGITransport(app=local_app(settings))
    return Host(httpx.AsyncClient(transport=transport, base_url="http://model"), asyncio.new_event_loop())


def transform_fn(host: Host, data: str | bytes, content_type: str, accept: str, context: Any) -> tuple[bytes, str]:
    """One invocation: the app's answer, its status set on the toolkit's ``context``."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != JSON:
        status = int(HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
        message = f"send the request as {JSON}, not {media_type or 'no type'}"
        body = bytes(error_response(status, message, "unsupported_media_type").body)
    else:
        # The toolkit hands JSON over decoded to text.
        status, body = host.invoke(data.encode("utf-8") if isinstance(data, str) else bytes(data))
    if status != HTTPStatus.OK:
        context.set_response_status(code=status, phrase=HTTPStatus(status).phrase)
    return body, JSON
