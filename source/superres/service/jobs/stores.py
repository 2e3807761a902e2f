"""Where job records are kept: in this process, or in a DynamoDB table."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Protocol

from ..outputs import aws_client
from ..settings import ServiceSettings
from .domain import FINISHED, JobRecord, utc_now

logger = logging.getLogger("superres.jobs")


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
            found.state, found.started, found.updated_at = "running", time.time(), utc_now()
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
        found.state, found.started, found.updated_at = "running", time.time(), utc_now()
        return found if self._write(found, "#state = :queued", {":queued": {"S": "queued"}}) else None

    def finish(self, record: JobRecord) -> None:
        if not self._write(record, "#state = :running", {":running": {"S": "running"}}):
            logger.warning("job %s: finished, but no longer running in the table; left as it is", record.id)

    def delete(self, job_id: str) -> None:
        self.client.delete_item(TableName=self.table, Key={"id": {"S": job_id}})
