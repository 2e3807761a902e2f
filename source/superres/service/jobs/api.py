"""What POST /jobs and GET /jobs/{id} do, on whatever store and queue the host has."""

from __future__ import annotations

import hashlib
import logging

from ...errors import SuperResError
from ..outputs import LocalResults
from ..request import parse_request
from ..settings import ServiceSettings
from .domain import (
    JOB_ID,
    IdempotencyKeyReusedError,
    JobNotFoundError,
    JobRecord,
    QueueError,
    job_settings,
    make_job_id,
    utc_now,
)
from .queues import JobQueue
from .stores import JobStore

logger = logging.getLogger("superres.jobs")


class Jobs:
    """What POST /jobs and GET /jobs/{id} do, on whatever store and queue the host has."""

    def __init__(
        self, settings: ServiceSettings, store: JobStore, queue: JobQueue, results: LocalResults | None
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
            now = utc_now()
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
