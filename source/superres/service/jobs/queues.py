"""Where a job waits for its worker: a bounded queue of this event loop, or SQS."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

from ...errors import OverloadedError
from ..outputs import aws_client
from ..settings import ServiceSettings
from .domain import JobRecord
from .runner import JobRunner

logger = logging.getLogger("superres.jobs")

#: Where the Lambda variant keeps a job's request body until the worker reads it.
INPUT_PREFIX = "jobs/"


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
            body: bytes = self.s3.get_object(Bucket=self.bucket, Key=f"{INPUT_PREFIX}{job_id}.json")["Body"].read()
            return body

        return read
