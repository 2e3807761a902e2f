"""Running a job: claim it, compute it (or take what an endpoint computed), store the result,
record the end, notify."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ...errors import SuperResError
from ..backends import Backend, Upscaled
from ..outputs import ResultStore, aws_client, deliver
from ..request import build_job, parse_request
from ..settings import ServiceSettings
from .domain import JobRecord, job_settings, utc_now
from .stores import JobStore

logger = logging.getLogger("superres.jobs")


class Notifier(Protocol):
    def publish(self, record: JobRecord) -> None: ...


def notifier_for(settings: ServiceSettings) -> SnsNotifier | None:
    """The host's SNS topic for finished jobs, if it has one."""
    return SnsNotifier(settings.job_topic_arn) if settings.job_topic_arn else None


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

        async def compute() -> Upscaled:
            request = body if isinstance(body, bytes) else await asyncio.to_thread(body)
            job = await asyncio.to_thread(build_job, parse_request(request, self.settings), self.settings)
            budget = self.settings.time_budget_seconds
            return await backend.run(job, time.monotonic() + budget if budget else None)

        return await self._settle(job_id, compute)

    async def complete(self, job_id: str, outcome: Callable[[], Upscaled]) -> JobRecord | None:
        """Finishes a job computed elsewhere (a SageMaker asynchronous endpoint): ``outcome``
        reads what it computed, or raises the job's error."""

        async def read() -> Upscaled:
            return await asyncio.to_thread(outcome)

        return await self._settle(job_id, read)

    async def _settle(self, job_id: str, produce: Callable[[], Awaitable[Upscaled]]) -> JobRecord | None:
        record = self.store.claim(job_id)
        if record is None:
            self._fail_if_lost(job_id)
            return None
        try:
            result = await produce()
            answer, location = await asyncio.to_thread(deliver, result, "s3", self.settings, self.results, job_id)
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
        record.updated_at = utc_now()
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
        found.state, found.status, found.updated_at = "failed", 500, utc_now()
        found.error = {"message": "the worker stopped before the job finished", "code": "job_lost"}
        self.store.finish(found)
        if self.notifier:
            self.notifier.publish(found)
