"""What each host is given: the API's jobs, the Lambda worker, the SageMaker events function."""

from __future__ import annotations

from typing import Any

from ..backends import Backend
from ..outputs import LocalResults, ResultStore, S3Results, aws_client
from ..settings import ServiceSettings
from .api import Jobs
from .queues import LocalJobQueue, SqsJobQueue
from .runner import JobRunner, notifier_for
from .sagemaker import SageMakerAsyncQueue
from .stores import DynamoJobStore, MemoryJobStore


def jobs_for(settings: ServiceSettings, backend: Backend) -> Jobs | None:
    """The jobs of a host: in AWS when a table and a queue are configured, in this process
    for the local variant, else none (POST /jobs answers 501)."""
    if settings.job_table and settings.job_queue_url:
        return Jobs(settings, DynamoJobStore(settings), SqsJobQueue(settings), None)
    if settings.job_table and settings.async_endpoint_name:
        return Jobs(settings, DynamoJobStore(settings), SageMakerAsyncQueue(settings), None)
    if settings.variant != "local":
        return None
    store = MemoryJobStore(settings.job_history)
    # Without an output bucket, this process keeps the results and serves them itself.
    kept = None if settings.output_bucket else LocalResults(settings.job_history)
    results: ResultStore = kept if kept is not None else S3Results(settings)
    runner = JobRunner(settings, backend, store, results, notifier_for(settings))
    return Jobs(settings, store, LocalJobQueue(settings, runner), kept)


def lambda_worker(settings: ServiceSettings, backend: Backend) -> tuple[JobRunner, SqsJobQueue]:
    """The Lambda variant's worker: same table, bucket and topic as the API function."""
    if not (settings.job_table and settings.job_queue_url and settings.output_bucket):
        raise RuntimeError("the job worker needs SUPERRES_JOB_TABLE, SUPERRES_JOB_QUEUE_URL and SUPERRES_OUTPUT_BUCKET")
    runner = JobRunner(settings, backend, DynamoJobStore(settings), S3Results(settings), notifier_for(settings))
    return runner, SqsJobQueue(settings)


def sagemaker_events(settings: ServiceSettings) -> tuple[JobRunner, Any]:
    """What finishes the GPU/Inferentia stacks' jobs from SageMaker's notifications: (runner, s3)."""
    if not (settings.job_table and settings.output_bucket):
        raise RuntimeError("the job events function needs SUPERRES_JOB_TABLE and SUPERRES_OUTPUT_BUCKET")
    runner = JobRunner(settings, None, DynamoJobStore(settings), S3Results(settings), notifier_for(settings))
    return runner, aws_client("s3")
