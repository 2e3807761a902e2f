"""Asynchronous jobs, the one implementation every host uses.

``POST /jobs`` checks the request, records a job (``queued``) and queues it; a worker claims
it (``running``), computes it with the host's backend, stores the result and records
``succeeded`` with the result URL, or ``failed`` with the error shape; either end publishes a
notification to the SNS topic. Two ways to keep and queue jobs, same logic around them:

- in this process (the local server): records in memory, a bounded asyncio queue drained by
  ``job_workers`` tasks; a full queue answers 429 at once;
- in AWS (the Lambda variant): records in a DynamoDB table (a conditional put makes
  creation idempotent), the request body in the output bucket, the job id in an SQS queue,
  and ``lambda_sr.worker`` (same image, 15-minute timeout, a dead-letter queue) runs them;
- in AWS (the GPU/Inf1 variants): the same table, and a SageMaker asynchronous endpoint
  instead of the queue and the worker; ``lambda_sr.job_events`` finishes the job from
  SageMaker's success and error notifications.

A retried ``Idempotency-Key`` maps to the same job id (a name-based uuid of the caller and
the key), so a retry finds the job its first attempt created and never makes a second one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import BadRequestError, OverloadedError, SuperResError, UpstreamError
from .backends import Backend, container_answer, container_request, model_error
from .outputs import LocalResults, ResultStore, S3Results, aws_client, deliver, utc_iso
from .request import build_job, parse_request
from .settings import ServiceSettings

logger = logging.getLogger("superres.jobs")

#: Name-based job ids: the same caller and key give the same id everywhere.
_JOB_NAMESPACE = uuid.UUID("4f1c2d8e-6a53-4b0e-9d7e-2b8f5c1a9e30")
_KEY = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
FINISHED = ("succeeded", "failed")
#: Where the Lambda variant keeps a job's request body until the worker reads it.
INPUT_PREFIX = "jobs/"


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


def _now() -> str:
    return utc_iso(datetime.datetime.now(datetime.UTC))


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


# ---------------------------------------------------------------- where jobs are kept


class JobStore(Protocol):
    def create(self, record: JobRecord) -> tuple[JobRecord, bool]:
        """Records ``record`` unless its id exists: (the job under that id, whether it is new)."""
        ...

    def get(self, job_id: str) -> JobRecord | None: ...

    def claim(self, job_id: str) -> JobRecord | None:
        """queued -> running; None when the job is not queued (claimed already, or gone)."""
        ...

    def finish(self, record: JobRecord) -> None:
        """running -> succeeded or failed."""
        ...

    def delete(self, job_id: str) -> None: ...


class MemoryJobStore:
    """Jobs of this process; the oldest finished ones go past ``capacity``."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._jobs: OrderedDict[str, JobRecord] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, record: JobRecord) -> tuple[JobRecord, bool]:
        with self._lock:
            existing = self._jobs.get(record.id)
            if existing is not None:
                return dataclasses.replace(existing), False
            self._jobs[record.id] = dataclasses.replace(record)
            finished = [key for key, job in self._jobs.items() if job.state in FINISHED]
            for key in finished[: max(0, len(self._jobs) - self.capacity)]:
                del self._jobs[key]
            return record, True

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            found = self._jobs.get(job_id)
            return dataclasses.replace(found) if found else None

    def claim(self, job_id: str) -> JobRecord | None:
        with self._lock:
            found = self._jobs.get(job_id)
            if found is None or found.state != "queued":
                return None
            found.state, found.started, found.updated_at = "running", time.time(), _now()
            return dataclasses.replace(found)

    def finish(self, record: JobRecord) -> None:
        with self._lock:
            if record.id in self._jobs:
                self._jobs[record.id] = dataclasses.replace(record)

    def delete(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)


class DynamoJobStore:
    """One item per job: ``id`` (key), ``state`` (for the conditions), ``doc`` (the record as
    JSON) and ``expires`` (the table's TTL attribute)."""

    def __init__(self, settings: ServiceSettings, client: Any | None = None) -> None:
        assert settings.job_table
        self.table = settings.job_table
        self.retention = settings.job_retention_seconds
        self.client = client or aws_client("dynamodb")

    def _item(self, record: JobRecord) -> dict[str, Any]:
        return {
            "id": {"S": record.id},
            "state": {"S": record.state},
            "doc": {"S": record.to_json()},
            "expires": {"N": str(int(time.time()) + self.retention)},
        }

    def _write(self, record: JobRecord, condition: str, values: dict[str, Any] | None = None) -> bool:
        from botocore.exceptions import ClientError

        extra = {"ExpressionAttributeValues": values} if values else {}
        try:
            self.client.put_item(
                TableName=self.table,
                Item=self._item(record),
                ConditionExpression=condition,
                ExpressionAttributeNames={"#state": "state"} if "#state" in condition else {"#id": "id"},
                **extra,
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def create(self, record: JobRecord) -> tuple[JobRecord, bool]:
        if self._write(record, "attribute_not_exists(#id)"):
            return record, True
        existing = self.get(record.id)
        if existing is None:  # expired between the two calls: the key is free again
            return self.create(record)
        return existing, False

    def get(self, job_id: str) -> JobRecord | None:
        item = self.client.get_item(TableName=self.table, Key={"id": {"S": job_id}}, ConsistentRead=True).get("Item")
        return JobRecord.from_json(item["doc"]["S"]) if item else None

    def claim(self, job_id: str) -> JobRecord | None:
        found = self.get(job_id)
        if found is None or found.state != "queued":
            return None
        found.state, found.started, found.updated_at = "running", time.time(), _now()
        return found if self._write(found, "#state = :queued", {":queued": {"S": "queued"}}) else None

    def finish(self, record: JobRecord) -> None:
        if not self._write(record, "#state = :running", {":running": {"S": "running"}}):
            logger.warning("job %s: finished, but no longer running in the table; left as it is", record.id)

    def delete(self, job_id: str) -> None:
        self.client.delete_item(TableName=self.table, Key={"id": {"S": job_id}})


# ---------------------------------------------------------------- notifications


class Notifier(Protocol):
    def publish(self, record: JobRecord) -> None: ...


class SnsNotifier:
    def __init__(self, topic_arn: str, client: Any | None = None) -> None:
        self.topic_arn = topic_arn
        self.client = client or aws_client("sns")

    def publish(self, record: JobRecord) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.publish(
                TopicArn=self.topic_arn,
                Subject=f"superres job {record.state}",
                Message=json.dumps(record.notification()),
                # Subscribers can filter on the outcome.
                MessageAttributes={"state": {"DataType": "String", "StringValue": record.state}},
            )
        except (BotoCoreError, ClientError):
            # The job's state is recorded either way; polling still finds it.
            logger.exception("job %s: the notification could not be published", record.id)


# ---------------------------------------------------------------- running a job


class JobRunner:
    """Claims a queued job, computes it (or takes what an endpoint computed), stores the
    result, records the end, notifies."""

    def __init__(
        self,
        settings: ServiceSettings,
        backend: Backend | None,
        store: JobStore,
        results: ResultStore,
        notifier: Notifier | None,
    ) -> None:
        self.settings = job_settings(settings)
        self.backend = backend
        self.store = store
        self.results = results
        self.notifier = notifier

    async def run(self, job_id: str, body: bytes | Callable[[], bytes]) -> JobRecord | None:
        """Computes the job with the backend. ``body``: the request, or a function that reads
        it (from the output bucket). None when the job was not this worker's to run."""
        assert self.backend is not None
        backend = self.backend

        async def compute() -> dict[str, Any]:
            request = body if isinstance(body, bytes) else await asyncio.to_thread(body)
            job = await asyncio.to_thread(build_job, parse_request(request, self.settings), self.settings)
            budget = self.settings.time_budget_seconds
            return await backend.run(job, time.monotonic() + budget if budget else None)

        return await self._settle(job_id, compute)

    async def complete(self, job_id: str, outcome: Callable[[], dict[str, Any]]) -> JobRecord | None:
        """Finishes a job computed elsewhere (a SageMaker asynchronous endpoint): ``outcome``
        reads the backend-shaped answer, or raises the job's error."""

        async def read() -> dict[str, Any]:
            return await asyncio.to_thread(outcome)

        return await self._settle(job_id, read)

    async def _settle(self, job_id: str, produce: Callable[[], Awaitable[dict[str, Any]]]) -> JobRecord | None:
        record = self.store.claim(job_id)
        if record is None:
            self._fail_if_lost(job_id)
            return None
        try:
            result = await produce()
            answer = await asyncio.to_thread(deliver, result, "s3", self.settings, self.results, job_id)
            location = answer.pop("location")
            if record.context is not None:
                answer["context"] = record.context
            record.state, record.result, record.location = "succeeded", answer, location
        except SuperResError as error:
            record.state, record.status = "failed", error.status
            record.error = {"message": error.message, "code": error.code}
        except Exception:
            logger.exception("job %s: internal error", job_id)
            record.state, record.status = "failed", 500
            record.error = {"message": "internal error", "code": "internal_error"}
        record.updated_at = _now()
        self.store.finish(record)
        logger.info("job %s: %s", job_id, record.state)
        if self.notifier:
            self.notifier.publish(record)
        return record

    def _fail_if_lost(self, job_id: str) -> None:
        """A job still ``running`` long after any worker could have finished it was lost with
        its worker (out of time or memory): record that, rather than leave it running forever."""
        found = self.store.get(job_id)
        limit = (self.settings.time_budget_seconds or 900.0) + 60.0
        if found is None or found.state != "running" or time.time() - (found.started or 0.0) < limit:
            return
        found.state, found.status, found.updated_at = "failed", 500, _now()
        found.error = {"message": "the worker stopped before the job finished", "code": "job_lost"}
        self.store.finish(found)
        if self.notifier:
            self.notifier.publish(found)


# ---------------------------------------------------------------- queues


class JobQueue(Protocol):
    def check_room(self) -> None:
        """Raises OverloadedError when a new job cannot be queued now."""
        ...

    async def put(self, record: JobRecord, body: bytes) -> None: ...


class LocalJobQueue:
    """At most ``job_queue_size`` jobs waiting for ``job_workers`` tasks of this event loop."""

    def __init__(self, settings: ServiceSettings, runner: JobRunner) -> None:
        self.size = settings.job_queue_size
        self.workers = settings.job_workers
        self.runner = runner
        self._queue: asyncio.Queue[tuple[str, bytes]] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def _started(self) -> asyncio.Queue[tuple[str, bytes]]:
        # Made on first use, on the loop that serves the app.
        if self._queue is None:
            self._queue = asyncio.Queue(self.size)
            self._tasks = [asyncio.create_task(self._work(), name=f"job-worker-{n}") for n in range(self.workers)]
        return self._queue

    def check_room(self) -> None:
        if self._started().full():
            raise OverloadedError(f"the job queue is full ({self.size} jobs waiting); retry shortly")

    async def put(self, record: JobRecord, body: bytes) -> None:
        self._started().put_nowait((record.id, body))  # check_room ran with no await since

    async def _work(self) -> None:
        queue = self._started()
        while True:
            job_id, body = await queue.get()
            try:
                await self.runner.run(job_id, body)
            except Exception:  # the store failed: the worker must live on
                logger.exception("job %s: the worker failed", job_id)
            finally:
                queue.task_done()


class SqsJobQueue:
    """The body in the output bucket (a request may be 6 MB, an SQS message 256 KB), the id
    in SQS for the worker function."""

    def __init__(self, settings: ServiceSettings, s3: Any | None = None, sqs: Any | None = None) -> None:
        assert settings.job_queue_url and settings.output_bucket
        self.queue_url = settings.job_queue_url
        self.bucket = settings.output_bucket
        self.s3 = s3 or aws_client("s3")
        self.sqs = sqs or aws_client("sqs")

    def check_room(self) -> None:
        pass  # SQS takes what it is given; the worker's concurrency is the bound

    async def put(self, record: JobRecord, body: bytes) -> None:
        await asyncio.to_thread(self._put, record.id, body)

    def _put(self, job_id: str, body: bytes) -> None:
        self.s3.put_object(
            Bucket=self.bucket, Key=f"{INPUT_PREFIX}{job_id}.json", Body=body, ContentType="application/json"
        )
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps({"id": job_id}))

    def reader(self, job_id: str) -> Callable[[], bytes]:
        def read() -> bytes:
            return self.s3.get_object(Bucket=self.bucket, Key=f"{INPUT_PREFIX}{job_id}.json")["Body"].read()

        return read


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


def sagemaker_outcome(message: dict[str, Any], s3: Any) -> tuple[str, Callable[[], dict[str, Any]]]:
    """(job id, a function reading its outcome) from a SageMaker asynchronous inference
    notification: the container's answer at ``outputLocation``, or its error."""

    def read(uri: str) -> bytes:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    response = message.get("responseParameters") or {}

    def outcome() -> dict[str, Any]:
        if message.get("invocationStatus") == "Completed":
            answer = json.loads(read(response["outputLocation"]))
            if not isinstance(answer, dict):
                raise UpstreamError("the model endpoint answered without an image")
            return container_answer(answer)
        found = _MODEL_STATUS.search(str(message.get("failureReason", "")))
        failure = response.get("failureLocation")
        raise model_error(int(found.group(1)) if found else None, read(failure) if failure else None)

    return str(message["inferenceId"]), outcome


def sagemaker_events(settings: ServiceSettings) -> tuple[JobRunner, Any]:
    """What finishes the GPU/Inf1 stacks' jobs from SageMaker's notifications: (runner, s3)."""
    if not (settings.job_table and settings.output_bucket):
        raise RuntimeError("the job events function needs SUPERRES_JOB_TABLE and SUPERRES_OUTPUT_BUCKET")
    notifier = SnsNotifier(settings.job_topic_arn) if settings.job_topic_arn else None
    runner = JobRunner(settings, None, DynamoJobStore(settings), S3Results(settings), notifier)
    return runner, aws_client("s3")


# ---------------------------------------------------------------- the HTTP side


class Jobs:
    """What POST /jobs and GET /jobs/{id} do, on whatever store and queue the host has."""

    def __init__(
        self, settings: ServiceSettings, store: JobStore, queue: JobQueue, results: ResultStore | None
    ) -> None:
        self.settings = job_settings(settings)
        self.store = store
        self.queue = queue
        #: Results kept by this process (local server without an output bucket), if any.
        self.results = results

    async def submit(self, body: bytes, key: str | None, caller: str) -> tuple[JobRecord, bool]:
        """(the job, whether this call created it)."""
        record_id = make_job_id(caller, key)
        parsed = parse_request(body, self.settings)  # bad JSON, fields, limits: a 4xx now
        digest = hashlib.sha256(body).hexdigest()
        existing = self.store.get(record_id) if key else None
        if existing is None:
            self.queue.check_room()
            now = _now()
            fresh = JobRecord(record_id, "queued", now, now, digest, context=parsed.context)
            record, created = self.store.create(fresh)
        else:
            record, created = existing, False
        if not created:
            if record.digest != digest:
                raise IdempotencyKeyReusedError("this Idempotency-Key was used with another request")
            return record, False
        try:
            await self.queue.put(record, body)
        except Exception as error:
            # Free the id again, so that a retry with the same key queues the job anew.
            self.store.delete(record.id)
            if isinstance(error, SuperResError):
                raise
            logger.exception("job %s: could not be queued", record.id)
            raise QueueError("the job could not be queued; retry shortly") from None
        return record, True

    def get(self, job_id: str) -> JobRecord:
        found = self.store.get(job_id) if JOB_ID.match(job_id) else None
        if found is None:
            raise JobNotFoundError(f"no job {job_id[:64]}")
        return found


def jobs_for(settings: ServiceSettings, backend: Backend) -> Jobs | None:
    """The jobs of a host: in AWS when a table and a queue are configured, in this process
    for the local variant, else none (POST /jobs answers 501)."""
    notifier = SnsNotifier(settings.job_topic_arn) if settings.job_topic_arn else None
    if settings.job_table and settings.job_queue_url:
        return Jobs(settings, DynamoJobStore(settings), SqsJobQueue(settings), None)
    if settings.job_table and settings.async_endpoint_name:
        return Jobs(settings, DynamoJobStore(settings), SageMakerAsyncQueue(settings), None)
    if settings.variant != "local":
        return None
    store = MemoryJobStore(settings.job_history)
    local = None if settings.output_bucket else LocalResults(settings.job_history)
    results: ResultStore = S3Results(settings) if settings.output_bucket else local  # type: ignore[assignment]
    runner = JobRunner(settings, backend, store, results, notifier)
    return Jobs(settings, store, LocalJobQueue(settings, runner), local)


def lambda_worker(settings: ServiceSettings, backend: Backend) -> tuple[JobRunner, SqsJobQueue]:
    """The Lambda variant's worker: same table, bucket and topic as the API function."""
    if not (settings.job_table and settings.job_queue_url and settings.output_bucket):
        raise RuntimeError("the job worker needs SUPERRES_JOB_TABLE, SUPERRES_JOB_QUEUE_URL and SUPERRES_OUTPUT_BUCKET")
    notifier = SnsNotifier(settings.job_topic_arn) if settings.job_topic_arn else None
    runner = JobRunner(settings, backend, DynamoJobStore(settings), S3Results(settings), notifier)
    return runner, SqsJobQueue(settings)
