"""Jobs on a SageMaker asynchronous endpoint (the GPU/Inf1 stacks): queued with
InvokeEndpointAsync, finished from SageMaker's success and error notifications."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

from ...errors import ModelWarmingUpError, SuperResError
from ..backends import Upscaled, container_answer, container_request, model_error
from ..outputs import aws_client
from ..request import build_job, parse_request
from ..settings import ServiceSettings
from .domain import JobRecord, job_settings

#: In the output bucket: the endpoint's requests, its answers and its errors.
ASYNC_INPUT_PREFIX = "async-in/"
ASYNC_OUTPUT_PREFIX = "async-out/"
ASYNC_FAILURE_PREFIX = "async-failed/"
#: SageMaker's failureReason names the container's status: "Received client error (415) ...".
_MODEL_STATUS = re.compile(r"\((\d{3})\)")


class SageMakerAsyncQueue:
    """The GPU/Inf1 stacks: a job is checked and its url fetched here (a bad request never
    costs GPU time and is refused at once), the container's request goes to the output bucket,
    and InvokeEndpointAsync queues it with the job id as InferenceId; SageMaker scales the
    endpoint up from zero, and tells its topics when the job ends (``sagemaker_outcome``)."""

    def __init__(self, settings: ServiceSettings, s3: Any | None = None, runtime: Any | None = None) -> None:
        assert settings.async_endpoint_name and settings.output_bucket
        self.settings = job_settings(settings)
        self.endpoint = settings.async_endpoint_name
        self.bucket = settings.output_bucket
        self.s3 = s3 or aws_client("s3")
        self.runtime = runtime or aws_client("sagemaker-runtime")

    def check_room(self) -> None:
        pass  # SageMaker queues the invocations; the endpoint's autoscaling is the bound

    async def put(self, record: JobRecord, body: bytes) -> None:
        job = await asyncio.to_thread(build_job, parse_request(body, self.settings), self.settings)
        await asyncio.to_thread(self._invoke, record.id, container_request(job))

    def _invoke(self, job_id: str, payload: str) -> None:
        key = f"{ASYNC_INPUT_PREFIX}{job_id}.json"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=payload.encode(), ContentType="application/json")
        self.runtime.invoke_endpoint_async(
            EndpointName=self.endpoint,
            InputLocation=f"s3://{self.bucket}/{key}",
            ContentType="application/json",
            Accept="application/json",
            InferenceId=job_id,
            # The container has no time budget of its own here: SageMaker's limit is the bound.
            InvocationTimeoutSeconds=3600,
        )


def sagemaker_outcome(message: dict[str, Any], s3: Any) -> tuple[str, Callable[[], Upscaled]]:
    """(job id, a function reading its outcome) from a SageMaker asynchronous inference
    notification: the container's answer at ``outputLocation``, or its error."""
    response = message.get("responseParameters") or {}

    def outcome() -> Upscaled:
        if message.get("invocationStatus") == "Completed":
            return container_answer(json.loads(_read(s3, response["outputLocation"])))
        raise _failure(message, s3)

    return str(message["inferenceId"]), outcome


def requeue_if_warming_up(message: dict[str, Any], s3: Any, runtime: Any) -> bool:
    """Invokes the job again, same input and id, when the endpoint answered it with its 503
    ``model_warming_up`` (an instance that just started, its network still compiling: the
    Inferentia model after a scale-up from zero); True if it did. The job stays queued: the
    compile ends in the network ready, or in a 500 that fails the job."""
    if message.get("invocationStatus") == "Completed" or "(503)" not in str(message.get("failureReason", "")):
        return False
    if not isinstance(_failure(message, s3), ModelWarmingUpError):
        return False
    request = message.get("requestParameters") or {}
    runtime.invoke_endpoint_async(
        EndpointName=request["endpointName"],
        InputLocation=request["inputLocation"],
        ContentType="application/json",
        Accept="application/json",
        InferenceId=str(message["inferenceId"]),
        InvocationTimeoutSeconds=3600,
    )
    return True


def _read(s3: Any, uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def _failure(message: dict[str, Any], s3: Any) -> SuperResError:
    """The container's error, from the failure's reason (its status) and its body in the bucket."""
    found = _MODEL_STATUS.search(str(message.get("failureReason", "")))
    location = (message.get("responseParameters") or {}).get("failureLocation")
    return model_error(int(found.group(1)) if found else None, _read(s3, location) if location else None)
