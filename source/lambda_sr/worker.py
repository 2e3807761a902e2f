"""CPU variant, asynchronous jobs: SQS -> this function (same image as the API function,
15-minute timeout) -> the job's record in DynamoDB, its result in the output bucket, a
notification on the SNS topic.

Each SQS message names one job (``{"id": ...}``); the request body waits in the output
bucket. A job that fails (bad input, model error) is recorded as failed and its message is
done; a message whose handling itself fails (the table or the bucket unreachable) is
reported back as a batch item failure, so SQS delivers it again and, after the queue's
receive count, moves it to the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from superres.service.jobs import lambda_worker
from superres.service.local import LocalBackend
from superres.service.settings import ServiceSettings

logger = logging.getLogger("superres.worker")

_settings = ServiceSettings.for_variant("lambda")
_runner, _inputs = lambda_worker(_settings, LocalBackend(_settings))
#: One loop for the life of the execution environment (warm invocations reuse it).
_loop = asyncio.new_event_loop()


def handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    failures = []
    for record in event.get("Records", []):
        try:
            job_id = json.loads(record["body"])["id"]
            _loop.run_until_complete(_runner.run(job_id, _inputs.reader(job_id)))
        except Exception:
            logger.exception("message %s: not handled", record.get("messageId"))
            failures.append({"itemIdentifier": record.get("messageId")})
    return {"batchItemFailures": failures}
