"""Backends compute validated jobs into an ``Upscaled``; this module holds what needs no torch:
the result type and the SageMaker backend. The in-process backend is ``service.local.LocalBackend``.

``deadline`` is a ``time.monotonic()`` value (or None): the moment the
request's time budget runs out, counted from its arrival.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ..errors import ModelWarmingUpError, OverloadedError, SuperResError, TimeBudgetError, UpstreamError
from .request import Job
from .settings import ServiceSettings


@dataclass(frozen=True)
class Upscaled:
    """What a backend computed: the enlarged image, encoded (``outputs.deliver`` makes it
    inline base64 or a stored URL), and the answer's fields about it."""

    image: bytes
    format: str
    width: int
    height: int
    scale: float
    model: str
    #: Faces restored (0 when none were asked for).
    faces: int
    #: Time spent computing.
    seconds: float

    def fields(self) -> dict[str, Any]:
        """The contract's fields about the image, in the answer's order."""
        return {
            "format": self.format,
            "width": self.width,
            "height": self.height,
            "scale": plain_number(self.scale),
            "model": self.model,
            "faces": self.faces,
            "seconds": self.seconds,
        }


def plain_number(value: float) -> float | int:
    """A whole number as an integer (``4``, as answers always said), others as they are (a
    float's repr round-trips, so a forwarded scale gives the container the same size)."""
    return int(value) if float(value).is_integer() else value


class Backend(Protocol):
    async def run(self, job: Job, deadline: float | None) -> Upscaled: ...


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

    async def run(self, job: Job, deadline: float | None) -> Upscaled:
        # The client's read timeout bounds the call itself; time already spent
        # fetching the input counts too.
        if deadline is not None and time.monotonic() > deadline:
            raise TimeBudgetError("the time budget ran out before the model endpoint was called")
        return await asyncio.to_thread(self._invoke, job)

    def _invoke(self, job: Job) -> Upscaled:
        from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

        body = container_request(job)
        try:
            answer = self.client.invoke_endpoint(
                EndpointName=self.endpoint_name, ContentType="application/json", Accept="application/json", Body=body
            )
            result: object = json.loads(answer["Body"].read())
        except ClientError as error:
            raise _endpoint_error(error) from None
        except (ReadTimeoutError, ConnectTimeoutError):
            raise TimeBudgetError("the model endpoint did not answer in time") from None
        except (BotoCoreError, json.JSONDecodeError) as error:
            raise UpstreamError(f"the model endpoint could not be reached: {type(error).__name__}") from None
        return container_answer(result)


def container_request(job: Job) -> str:
    """The body the container's /invocations takes for a validated job (real-time or async):
    every choice already made here (the scale a width or height came to, the format), so the
    container computes what was validated; the model only if the request named one (else the
    container's own)."""
    request = {
        "img": base64.b64encode(job.image).decode("ascii"),
        "scale": plain_number(job.scale),
        "face": job.face,
        "format": job.format,
        "quality": job.quality,
        "strip_metadata": job.strip_metadata,
    }
    return json.dumps({**request, **({"model": job.model} if job.model else {})})


def container_answer(answer: object) -> Upscaled:
    """The container's JSON answer (real-time or async), as backends answer."""
    if not isinstance(answer, dict):
        raise UpstreamError("the model endpoint answered without an image")
    try:
        image = base64.b64decode(answer["result"], validate=True)
    except (KeyError, TypeError, AttributeError, binascii.Error, ValueError):
        raise UpstreamError("the model endpoint answered without an image") from None
    return Upscaled(
        image=image,
        format=_field(answer, "format", str),
        width=_field(answer, "width", int),
        height=_field(answer, "height", int),
        scale=_field(answer, "scale", float),
        model=_field(answer, "model", str),
        faces=_field(answer, "faces", int),
        seconds=_field(answer, "seconds", float),
    )


_Field = TypeVar("_Field", str, int, float)


def _field(answer: dict[str, Any], name: str, kind: type[_Field]) -> _Field:
    """``answer[name]`` if it is a ``kind`` (an int is a float too; a bool is not an int)."""
    value = answer.get(name)
    if isinstance(value, bool):
        pass
    elif isinstance(value, kind):
        return value
    elif kind is float and isinstance(value, int):
        return kind(value)
    raise UpstreamError(f"the model endpoint answered without a valid {name}")


def model_error(status: object, body: str | bytes | None) -> SuperResError:
    """The container answered ``status`` with ``body``: a 4xx passes through as it is (its
    message and code), so does its 503 while the network compiles (SageMaker drops the
    container's headers: the Retry-After is the error's own), anything else is the model failing."""
    try:
        detail = json.loads(body or "{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        detail = {}
    if (
        status == ModelWarmingUpError.status
        and isinstance(detail, dict)
        and detail.get("code") == ModelWarmingUpError.code
    ):
        return ModelWarmingUpError(str(detail.get("message", "the model is warming up; retry shortly")))
    if isinstance(status, int) and 400 <= status < 500 and isinstance(detail, dict):
        return SuperResError(
            str(detail.get("message", "the model rejected the request")),
            status=status,
            code=str(detail.get("code", "bad_request")),
        )
    return UpstreamError("the model failed on this image")


def _endpoint_error(error: Any) -> SuperResError:
    """SageMaker runtime errors in the API's error shape."""
    code = error.response.get("Error", {}).get("Code", "")
    if code == "ModelError":
        return model_error(error.response.get("OriginalStatusCode"), error.response.get("OriginalMessage"))
    if code in ("ThrottlingException", "ServiceUnavailable", "TooManyRequestsException"):
        return OverloadedError("the model endpoint is busy; retry shortly")
    if code == "ModelNotReadyException":
        return OverloadedError("the model endpoint is starting; retry shortly")
    return UpstreamError(f"the model endpoint failed ({code or 'unknown error'})")
