"""A job as recorded and shown: its record, its id, its errors, its limits."""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from ...errors import BadRequestError, SuperResError
from ..outputs import utc_iso
from ..settings import ServiceSettings

#: Name-based job ids: the same caller and key give the same id everywhere.
_JOB_NAMESPACE = uuid.UUID("4f1c2d8e-6a53-4b0e-9d7e-2b8f5c1a9e30")
_KEY = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
FINISHED = ("succeeded", "failed")


class JobNotFoundError(SuperResError):
    status = 404
    code = "not_found"


class IdempotencyKeyReusedError(SuperResError):
    status = 422
    code = "idempotency_key_reused"


class JobsUnavailableError(SuperResError):
    status = 501
    code = "jobs_not_enabled"


class QueueError(SuperResError):
    status = 503
    code = "queue_unavailable"


def utc_now() -> str:
    return utc_iso(datetime.datetime.now(datetime.timezone.utc))


@dataclass
class JobRecord:
    id: str
    state: str
    created_at: str
    updated_at: str
    #: sha256 of the request body: a retried key must carry the same request.
    digest: str
    context: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    #: Where the image is: s3://bucket/key, or this server's URL.
    location: str | None = None
    error: dict[str, str] | None = None
    status: int | None = None
    #: time.time() when a worker claimed it.
    started: float | None = None

    def public(self) -> dict[str, Any]:
        """The contract's Job."""
        shown = {"id": self.id, "state": self.state, "created_at": self.created_at, "updated_at": self.updated_at}
        for name in ("context", "result", "error", "status"):
            if getattr(self, name) is not None:
                shown[name] = getattr(self, name)
        return shown

    def notification(self) -> dict[str, Any]:
        """The contract's JobNotification (the shape of the seed's callback message)."""
        message: dict[str, Any] = {
            "id": self.id,
            "result": self.state == "succeeded",
            "state": self.state,
            "image_url": [self.location] if self.location else [],
            "context": self.context if self.context is not None else {},
        }
        if self.result:
            message["output_url"] = self.result["result_url"]
            if "expires_at" in self.result:
                message["expires_at"] = self.result["expires_at"]
        if self.error:
            message["error"] = self.error
        return message

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> JobRecord:
        return cls(**json.loads(text))


def make_job_id(caller: str, key: str | None) -> str:
    if key is None:
        return uuid.uuid4().hex
    if not _KEY.match(key):
        raise BadRequestError("Idempotency-Key must be 1-128 characters of A-Z a-z 0-9 . _ : -")
    return uuid.uuid5(_JOB_NAMESPACE, f"{caller}\n{key}").hex


def job_settings(settings: ServiceSettings) -> ServiceSettings:
    """A job's limits: its own time budget and input size (no API Gateway cut to respect)."""
    return settings.model_copy(
        update={
            "time_budget_seconds": settings.job_time_budget_seconds,
            "max_input_pixels": settings.job_max_input_pixels,
        }
    )
