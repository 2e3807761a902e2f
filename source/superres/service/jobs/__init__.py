"""Asynchronous jobs, the one implementation every host uses.

``POST /jobs`` checks the request, records a job (``queued``) and queues it; a worker claims
it (``running``), computes it with the host's backend, stores the result and records
``succeeded`` with the result URL, or ``failed`` with the error shape; either end publishes a
notification to the SNS topic. Ways to keep and queue jobs, same logic around them:

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

Modules: ``domain`` (the record, ids, errors), ``stores`` (where records are kept),
``queues`` (in this process, SQS), ``sagemaker`` (the asynchronous endpoint, both ways),
``runner`` (running a job, notifying), ``api`` (what the HTTP routes do), ``hosts`` (what
each host is given). Exported here: what the hosts call, and the output bucket's layout
(the templates grant access to exactly these prefixes).
"""

from .hosts import jobs_for, lambda_worker, sagemaker_events
from .queues import INPUT_PREFIX
from .sagemaker import (
    ASYNC_FAILURE_PREFIX,
    ASYNC_INPUT_PREFIX,
    ASYNC_OUTPUT_PREFIX,
    requeue_if_warming_up,
    sagemaker_outcome,
)

__all__ = [
    "ASYNC_FAILURE_PREFIX",
    "ASYNC_INPUT_PREFIX",
    "ASYNC_OUTPUT_PREFIX",
    "INPUT_PREFIX",
    "jobs_for",
    "lambda_worker",
    "requeue_if_warming_up",
    "sagemaker_events",
    "sagemaker_outcome",
]
