"""Backends compute validated jobs; this module holds what needs no torch: the SageMaker one.

The in-process backend is ``service.local.LocalBackend``.

``deadline`` is a ``time.monotonic()`` value (or None): the moment the
request's time budget runs out, counted from its arrival.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
from typing import Any, Protocol

from ..errors import ImageTooLargeError, OverloadedError, SuperResError, TimeBudgetError, UpstreamError
from .request import Job
from .settings import ServiceSettings

#: JSON around the base64 result: keys, metadata, quotes.
_ENVELOPE_BYTES = 512


class Backend(Protocol):
    async def run(self, job: Job, deadline: float | None) -> dict[str, Any]: ...


def check_response_size(encoded_bytes: int, settings: ServiceSettings) -> None:
    answer = 4 * math.ceil(encoded_bytes / 3) + _ENVELOPE_BYTES
    if answer > settings.max_response_bytes:
        raise ImageTooLargeError(
            f"the result is {encoded_bytes:,} bytes ({answer:,} as a JSON answer); the limit is "
            f"{settings.max_response_bytes:,} bytes: ask for format jpeg or webp, a lower quality, "
            "a smaller scale or a smaller image"
        )


class SageMakerBackend:
    """Forwards validated jobs to a SageMaker endpoint running the container of sagemaker_sr."""

    def __init__(self, settings: ServiceSettings, endpoint_name: str, client: Any | None = None) -> None:
        import boto3
        from botocore.config import Config

        self.settings = settings
        self.endpoint_name = endpoint_name
        timeout = settings.time_budget_seconds or 60.0
        self.client = client or boto3.client(
            "sagemaker-runtime",
            # One attempt: a retried timeout would run past API Gateway's cut and pay twice.
            config=Config(read_timeout=timeout, connect_timeout=5, retries={"mode": "standard", "max_attempts": 1}),
        )

    async def run(self, job: Job, deadline: float | None) -> dict[str, Any]:
        # The client's read timeout bounds the call itself; time already spent
        # fetching the input counts too.
        if deadline is not None and time.monotonic() > deadline:
            raise TimeBudgetError("the time budget ran out before the model endpoint was called")
        return await asyncio.to_thread(self._invoke, job)

    def _invoke(self, job: Job) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

        body = json.dumps(
            {
                "img": base64.b64encode(job.image).decode("ascii"),
                "scale": job.scale,
                "face": job.face,
                "format": job.format,
                "quality": job.quality,
            }
        )
        try:
            answer = self.client.invoke_endpoint(
                EndpointName=self.endpoint_name, ContentType="application/json", Accept="application/json", Body=body
            )
            return json.loads(answer["Body"].read())
        except ClientError as error:
            raise _endpoint_error(error) from None
        except (ReadTimeoutError, ConnectTimeoutError):
            raise TimeBudgetError("the model endpoint did not answer in time") from None
        except (BotoCoreError, json.JSONDecodeError) as error:
            raise UpstreamError(f"the model endpoint could not be reached: {type(error).__name__}") from None


def _endpoint_error(error: Any) -> SuperResError:
    """SageMaker runtime errors in the API's error shape."""
    code = error.response.get("Error", {}).get("Code", "")
    if code == "ModelError":
        # The container answered with an error of its own: pass a 4xx through as it is.
        original = error.response.get("OriginalStatusCode")
        try:
            detail = json.loads(error.response.get("OriginalMessage") or "{}")
        except json.JSONDecodeError:
            detail = {}
        if isinstance(original, int) and 400 <= original < 500 and isinstance(detail, dict):
            return SuperResError(
                str(detail.get("message", "the model rejected the request")),
                status=original,
                code=str(detail.get("code", "bad_request")),
            )
        return UpstreamError("the model failed on this image")
    if code in ("ThrottlingException", "ServiceUnavailable", "TooManyRequestsException"):
        return OverloadedError("the model endpoint is busy; retry shortly")
    if code == "ModelNotReadyException":
        return OverloadedError("the model endpoint is starting; retry shortly")
    return UpstreamError(f"the model endpoint failed ({code or 'unknown error'})")
