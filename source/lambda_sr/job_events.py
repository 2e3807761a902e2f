"""GPU/Inferentia variants, asynchronous jobs: SageMaker's success and error SNS topics -> this
function (in the invoke-endpoint zip; no torch) -> the job's result moved to ``results/``
with a presigned URL, its record finished in DynamoDB, the kit's notification published.

SageMaker Asynchronous Inference computes the job (``SageMakerAsyncQueue`` queued it with
the job id as InferenceId) and writes the container's answer, or its error, to the output
bucket; each notification names the job and where that answer is.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from superres.service.jobs import sagemaker_events, sagemaker_outcome
from superres.service.settings import ServiceSettings

_runner, _s3 = sagemaker_events(ServiceSettings.for_variant("gpu"))
#: One loop for the life of the execution environment (warm invocations reuse it).
_loop = asyncio.new_event_loop()


def handler(event: dict[str, Any], _context: Any) -> None:
    # A failure here raises: Lambda retries the SNS delivery (asynchronous invocation) twice.
    for record in event.get("Records", []):
        job_id, outcome = sagemaker_outcome(json.loads(record["Sns"]["Message"]), _s3)
        _loop.run_until_complete(_runner.complete(job_id, outcome))
