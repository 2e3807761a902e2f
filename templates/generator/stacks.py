"""The three templates, composed from the pieces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import iam
from .api import api
from .async_jobs import async_jobs
from .compute import (
    CPU_SERVICE_ZIP,
    ENVIRONMENT_KEY_SKIP,
    IN_VPC_GUARD_SKIP,
    NO_VPC_GUARD_SKIP,
    NO_VPC_SKIP,
    SYNCHRONOUS_DLQ_SKIP,
    WORKER_CONCURRENCY_SKIP,
    lambda_sizing,
    model_env,
    model_stager,
    sagemaker_endpoint,
    zip_function,
)
from .core import Resource, Template, skip
from .network import EFS_MOUNT, efs, vpc
from .observability import log_group, observability
from .parameters import common_parameters
from .storage import JOB_INPUT_PREFIX, RESULTS_PREFIX, WORKER_TIMEOUT, job_queue, job_table_and_topic, output_bucket

TEMPLATES = Path(__file__).resolve().parents[1]
#: What FaceEnhancement costs on the Lambda stack (README, Face restoration: bench/face_bench.py).
LAMBDA_FACE_COST = (
    " On (opt-in): the stager also puts GFPGANv1.4 and YuNet (OpenVINO IR, 325 MiB, about $0.10 a month on EFS) "
    "on EFS, and each face costs the functions one GFPGAN pass of 396 GFLOP (0.9 s on 2 cores of a development "
    "machine) and about 1.1 GB more memory. Off: neither is staged."
)
OUTPUTS = {
    "lambda": TEMPLATES / "lambda-efs.template.json",
    "gpu": TEMPLATES / "sagemaker-gpu.template.json",
    "inferentia": TEMPLATES / "sagemaker-inferentia.template.json",
}


def lambda_efs_template() -> dict[str, Any]:
    t = Template(
        "AI Solution Kit - Image Super-Resolution (Lambda + EFS, CPU), version %%VERSION%%: "
        "API Gateway -> Lambda (zip, OpenVINO on CPU) in a VPC -> converted networks on EFS."
    )
    # Face enhancement is opt-in here: GFPGAN on the CPU costs seconds per face and 0.3 GB of EFS.
    common = common_parameters(t, default_model="realesr-general-x4v3", default_face=False, face_cost=LAMBDA_FACE_COST)
    sizing = lambda_sizing(t)
    storage = efs(t, vpc(t))
    model_files = model_stager(t, common, storage)
    output = output_bucket(t)
    records = job_table_and_topic(t)
    queue = job_queue(t, common)

    def cpu_role(name: str, log: Resource) -> iam.Role:
        made = iam.function_role(t, name, log, vpc=True)
        iam.grant_efs_client(made.policy("read-models"), storage.file_system, storage.access_point, write=False)
        return made

    function_log = log_group(t, common, "FunctionLogGroup")
    api_role = cpu_role("FunctionRole", function_log)
    start_jobs = api_role.policy("results-and-jobs")
    iam.grant_s3_read_write(start_jobs, output.bucket, RESULTS_PREFIX)
    iam.grant_s3_write(start_jobs, output.bucket, JOB_INPUT_PREFIX)
    iam.grant_table_read_write(start_jobs, records.table, delete=True)
    iam.grant_send(start_jobs, queue)
    worker_log = log_group(t, common, "WorkerLogGroup")
    worker_role = cpu_role("WorkerRole", worker_log)
    run_jobs = worker_role.policy("run-jobs")
    iam.grant_s3_read_write(run_jobs, output.bucket, RESULTS_PREFIX)
    iam.grant_s3_read(run_jobs, output.bucket, JOB_INPUT_PREFIX)
    iam.grant_table_read_write(run_jobs, records.table, delete=False)
    iam.grant_consume(run_jobs, queue)
    iam.grant_publish(run_jobs, records.topic)
    common.allowed_buckets_policy(t, api_role, worker_role)

    def cpu_function(description: str, handler: str, role: iam.Role, log: Resource, timeout: int) -> dict[str, Any]:
        """The API function and the job worker: one zip, one environment, two entry points."""
        return zip_function(
            description,
            handler,
            CPU_SERVICE_ZIP,
            role,
            log,
            sizing.memory.ref,
            timeout,
            VpcConfig=storage.vpc_config(),
            FileSystemConfigs=storage.mounts(),
            Environment={
                "Variables": {
                    "SUPERRES_VARIANT": "lambda",
                    "SUPERRES_MODEL_DIR": EFS_MOUNT,
                    **model_env(common),
                    "SUPERRES_ALLOWED_S3_BUCKETS": common.allowed_buckets_env(),
                    **output.env(),
                    "SUPERRES_JOB_TABLE": records.table.ref,
                    "SUPERRES_JOB_QUEUE_URL": queue.ref,
                    "SUPERRES_JOB_TOPIC_ARN": records.topic.ref,
                    **common.cors_env(),
                }
            },
        )

    function = t.add(
        "Function",
        "AWS::Lambda::Function",
        {
            **cpu_function(
                "POST /resolution on CPU (Real-ESRGAN, models on EFS); POST /jobs, GET /jobs/{id}",
                "lambda_sr.handler.handler",
                api_role,
                function_log,
                60,
            ),
            **common.reserved_concurrency_property(),
        },
        # The model is on EFS before the function (and so the API) exists.
        depends_on=[model_files],
        Metadata=skip(SYNCHRONOUS_DLQ_SKIP, ENVIRONMENT_KEY_SKIP, IN_VPC_GUARD_SKIP),
    )
    worker = t.add(
        "Worker",
        "AWS::Lambda::Function",
        cpu_function(
            "Asynchronous jobs: SQS -> compute -> result in S3, record in DynamoDB, SNS notification",
            "lambda_sr.worker.handler",
            worker_role,
            worker_log,
            WORKER_TIMEOUT,
        ),
        depends_on=[model_files],
        Metadata=skip(
            (
                "CKV_AWS_116",
                (
                    "Invoked by an SQS event source mapping: failed messages go to the queue's own "
                    "dead-letter queue (JobDeadLetterQueue); a function DLQ only catches asynchronous invokes."
                ),
            ),
            WORKER_CONCURRENCY_SKIP,
            ENVIRONMENT_KEY_SKIP,
            IN_VPC_GUARD_SKIP,
        ),
    )
    t.add(
        "WorkerEventSource",
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": queue.arn,
            "FunctionName": worker.ref,
            # One job per invocation: each gets the whole 15 minutes and LambdaMemorySize.
            "BatchSize": 1,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            # The cost cap: at most this many jobs compute at once, the rest wait in the queue.
            "ScalingConfig": {"MaximumConcurrency": sizing.worker_concurrency.ref},
        },
    )
    t.output("WorkerName", "The job worker function", worker.ref)
    api(t, common, function)
    observability(t, common, function, None)
    t.output("FunctionName", "The resolution function", function.ref)
    return t.render()


def sagemaker_template(kind: str) -> dict[str, Any]:
    label = {"gpu": "SageMaker GPU", "inferentia": "SageMaker Inferentia: Inf2 or Inf1 (AWS Neuron)"}[kind]
    t = Template(
        f"AI Solution Kit - Image Super-Resolution ({label}), version %%VERSION%%: "
        "API Gateway -> Lambda (validate, invoke endpoint) -> SageMaker real-time endpoint."
    )
    # No face enhancement on Inferentia: the face networks are not compiled for Neuron.
    common = common_parameters(t, default_model="RealESRGAN_x4plus", default_face=True if kind == "gpu" else None)
    realtime = sagemaker_endpoint(t, common, kind)
    output = output_bucket(t)
    jobs = async_jobs(t, common, realtime, output)
    function_log = log_group(t, common, "FunctionLogGroup")
    invoke_role = iam.function_role(t, "FunctionRole", function_log, vpc=False)
    iam.grant_invoke_endpoint(invoke_role.policy("invoke-endpoint"), realtime.endpoint)
    iam.grant_s3_read_write(invoke_role.policy("results"), output.bucket, RESULTS_PREFIX)
    # After the role it is attached to (AsyncJobsPolicy needs the role's handle).
    jobs.allow_start(t, invoke_role)
    common.allowed_buckets_policy(t, invoke_role)
    function = t.add(
        "Function",
        "AWS::Lambda::Function",
        zip_function(
            "POST /resolution: validates, fetches, invokes the SageMaker endpoint",
            "lambda_sr.invoke_endpoint.handler",
            "invoke-endpoint.zip",
            invoke_role,
            function_log,
            1024,
            30,
            Environment={
                "Variables": {
                    "SUPERRES_VARIANT": "gpu",
                    "SUPERRES_ENDPOINT_NAME": realtime.endpoint.att("EndpointName"),
                    **model_env(common),
                    # This function has no model store to look in: the models a request may
                    # name are the ones the endpoint serves (README, "Model per request").
                    "SUPERRES_MODELS": realtime.image.served_models,
                    "SUPERRES_ALLOWED_S3_BUCKETS": common.allowed_buckets_env(),
                    **output.env(),
                    **jobs.env(),
                    **common.cors_env(),
                }
            },
            **common.reserved_concurrency_property(),
        ),
        Metadata=skip(SYNCHRONOUS_DLQ_SKIP, ENVIRONMENT_KEY_SKIP, NO_VPC_SKIP, NO_VPC_GUARD_SKIP),
    )
    api(t, common, function)
    observability(t, common, function, realtime.endpoint)
    t.output("FunctionName", "The invoke-endpoint function", function.ref)
    return t.render()


def render_all() -> dict[Path, str]:
    """Each template's path and its text."""
    built = {"lambda": lambda_efs_template(), **{kind: sagemaker_template(kind) for kind in ("gpu", "inferentia")}}
    return {OUTPUTS[kind]: json.dumps(body, indent=2, ensure_ascii=False) + "\n" for kind, body in built.items()}
