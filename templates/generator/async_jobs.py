"""Jobs of the SageMaker stacks, on SageMaker Asynchronous Inference, all behind the AsyncJobs parameter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from superres.service.jobs import ASYNC_FAILURE_PREFIX, ASYNC_INPUT_PREFIX, ASYNC_OUTPUT_PREFIX

from .compute import (
    CONCURRENCY_SKIP,
    ENVIRONMENT_KEY_SKIP,
    NO_VPC_GUARD_SKIP,
    NO_VPC_SKIP,
    Endpoint,
    container_model,
    endpoint_properties,
    zip_function,
)
from .core import NO_VALUE, Condition, Resource, Template, if_, skip, sub
from .iam import (
    Role,
    attached_policy,
    function_role,
    grant_invoke_endpoint,
    grant_publish,
    grant_s3_read,
    grant_s3_read_write,
    grant_s3_write,
    grant_send,
    grant_table_read_write,
)
from .observability import VARIANT_NAME, dead_letter_alarm, log_group
from .parameters import Common
from .storage import (
    RESULTS_PREFIX,
    JobRecords,
    Output,
    dead_letter_queue,
    encrypted_topic,
    job_table_and_topic,
)

#: Where the asynchronous endpoint reads requests and writes answers (the service's prefixes).
ASYNC_PREFIXES = {"in": ASYNC_INPUT_PREFIX, "out": ASYNC_OUTPUT_PREFIX, "failed": ASYNC_FAILURE_PREFIX}


@dataclass(frozen=True)
class AsyncJobs:
    """What the invoke-endpoint function needs to start jobs (all of it exists only with ``condition``)."""

    condition: Condition
    records: JobRecords
    endpoint: Resource
    output: Output

    def env(self) -> dict[str, Any]:
        """The invoke-endpoint function's job settings: set only with AsyncJobs."""
        return {
            "SUPERRES_JOB_TABLE": if_(self.condition, self.records.table.ref, NO_VALUE),
            "SUPERRES_JOB_TOPIC_ARN": if_(self.condition, self.records.topic.ref, NO_VALUE),
            "SUPERRES_ASYNC_ENDPOINT_NAME": if_(self.condition, self.endpoint.att("EndpointName"), NO_VALUE),
        }

    def allow_start(self, t: Template, function: Role) -> None:
        """The invoke-endpoint function may start jobs: record them, store their input, invoke."""
        _, start = attached_policy(t, "AsyncJobsPolicy", "start-async-jobs", [function], self.condition)
        grant_invoke_endpoint(start, self.endpoint, asynchronous=True)
        grant_s3_write(start, self.output.bucket, ASYNC_PREFIXES["in"])
        grant_table_read_write(start, self.records.table, delete=True)


def async_jobs(t: Template, common: Common, realtime: Endpoint, output: Output) -> AsyncJobs:
    """A second endpoint of the same model that scales to zero when idle, its notification
    topic, the function that finishes jobs from it, the job table and the kit's topic."""
    async_jobs_on = t.parameter(
        "Results and jobs",
        "AsyncJobs",
        "Asynchronous jobs (SageMaker Asynchronous Inference)",
        Type="String",
        Default="false",
        AllowedValues=["true", "false"],
        Description=(
            "true: POST /jobs runs on a second, asynchronous endpoint that scales to zero when idle "
            "(billed only while it has work, plus a cold start of minutes); false: POST /jobs answers 501."
        ),
    )
    when = t.condition("UseAsyncJobs", {"Fn::Equals": [async_jobs_on.ref, "true"]})
    records = job_table_and_topic(t, when)
    events_topic = encrypted_topic(t, "InferenceEventsTopic", "superres async inference results", when)
    # No time budget inside (SageMaker's invocation timeout, an hour, bounds it) and answers
    # up to the 1 GB an asynchronous output may hold.
    model = t.add(
        "AsyncModel",
        "AWS::SageMaker::Model",
        container_model(
            common,
            realtime.image,
            realtime.role,
            {
                "SUPERRES_TIME_BUDGET_SECONDS": "0",
                "SUPERRES_MAX_RESPONSE_BYTES": "1000000000",
                "SUPERRES_MAX_REQUEST_BYTES": "16000000",
                **realtime.image.async_environment,
            },
        ),
        condition=when,
    )
    bucket_path = "s3://${" + output.bucket.name + "}/"
    config = t.add(
        "AsyncEndpointConfig",
        "AWS::SageMaker::EndpointConfig",
        {
            "ProductionVariants": [
                {
                    "VariantName": VARIANT_NAME,
                    "ModelName": model.att("ModelName"),
                    "InstanceType": realtime.instance_type.ref,
                    "InitialInstanceCount": 1,
                    "InitialVariantWeight": 1,
                    **realtime.image.variant,
                }
            ],
            "AsyncInferenceConfig": {
                "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 1},
                "OutputConfig": {
                    "S3OutputPath": sub(bucket_path + ASYNC_PREFIXES["out"], output.bucket),
                    "S3FailurePath": sub(bucket_path + ASYNC_PREFIXES["failed"], output.bucket),
                    "NotificationConfig": {"SuccessTopic": events_topic.ref, "ErrorTopic": events_topic.ref},
                },
            },
        },
        condition=when,
    )
    endpoint = t.add(
        "AsyncEndpoint",
        "AWS::SageMaker::Endpoint",
        endpoint_properties(config, realtime.instance_type, "superres-async"),
        condition=when,
    )
    _, inference = attached_policy(t, "AsyncEndpointPolicy", "async-inference", [realtime.role], when)
    grant_s3_read(inference, output.bucket, ASYNC_PREFIXES["in"])
    grant_s3_write(inference, output.bucket, ASYNC_PREFIXES["out"], ASYNC_PREFIXES["failed"])
    grant_publish(inference, events_topic)
    scale_to_zero(t, realtime, endpoint, when)
    job_events(t, common, output, records, events_topic, when)
    t.output("AsyncEndpointName", "SageMaker asynchronous endpoint of the jobs", endpoint.att("EndpointName"), when)
    return AsyncJobs(when, records, endpoint, output)


def scale_to_zero(t: Template, realtime: Endpoint, endpoint: Resource, when: Condition) -> None:
    """Scale to zero when idle; the backlog wakes it (target tracking cannot leave zero by itself)."""
    scalable = t.add(
        "AsyncScalableTarget",
        "AWS::ApplicationAutoScaling::ScalableTarget",
        {
            "ServiceNamespace": "sagemaker",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "ResourceId": sub(f"endpoint/${{AsyncEndpoint.EndpointName}}/variant/{VARIANT_NAME}", endpoint),
            "MinCapacity": 0,
            "MaxCapacity": realtime.max_instances.ref,
        },
        condition=when,
    )
    endpoint_dimension = [{"Name": "EndpointName", "Value": endpoint.att("EndpointName")}]
    t.add(
        "AsyncBacklogScalingPolicy",
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "PolicyName": sub("${AWS::StackName}-async-backlog"),
            "PolicyType": "TargetTrackingScaling",
            "ScalingTargetId": scalable.ref,
            "TargetTrackingScalingPolicyConfiguration": {
                "CustomizedMetricSpecification": {
                    "MetricName": "ApproximateBacklogSizePerInstance",
                    "Namespace": "AWS/SageMaker",
                    "Dimensions": endpoint_dimension,
                    "Statistic": "Average",
                },
                "TargetValue": 2,
                "ScaleInCooldown": 600,
                "ScaleOutCooldown": 120,
            },
        },
        condition=when,
    )
    wake_up = t.add(
        "AsyncWakeUpPolicy",
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "PolicyName": sub("${AWS::StackName}-async-wake-up"),
            "PolicyType": "StepScaling",
            "ScalingTargetId": scalable.ref,
            "StepScalingPolicyConfiguration": {
                "AdjustmentType": "ChangeInCapacity",
                "Cooldown": 300,
                "MetricAggregationType": "Maximum",
                "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
            },
        },
        condition=when,
    )
    t.add(
        "AsyncWakeUpAlarm",
        "AWS::CloudWatch::Alarm",
        {
            "AlarmDescription": "Jobs wait and the asynchronous endpoint has no instance: start one",
            "Namespace": "AWS/SageMaker",
            "MetricName": "HasBacklogWithoutCapacity",
            "Dimensions": endpoint_dimension,
            "Statistic": "Maximum",
            "Period": 60,
            "EvaluationPeriods": 1,
            "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": [wake_up.ref],
        },
        condition=when,
    )


def job_events(
    t: Template, common: Common, output: Output, records: JobRecords, events_topic: Resource, when: Condition
) -> None:
    """The function that finishes jobs from SageMaker's notifications."""
    log = log_group(t, common, "JobEventsLogGroup")
    t.make_conditional(log, when)
    dead_letters = dead_letter_queue(t, "JobEventsDeadLetterQueue", when)
    dead_letter_alarm(
        t, common, "JobEventsDeadLetterAlarm", dead_letters, "SageMaker notifications JobEvents could not handle", when
    )
    events_role = function_role(t, "JobEventsRole", log, vpc=False)
    finish = events_role.policy("finish-jobs")
    grant_s3_read_write(finish, output.bucket, RESULTS_PREFIX)
    grant_s3_read(finish, output.bucket, ASYNC_PREFIXES["out"], ASYNC_PREFIXES["failed"])
    grant_table_read_write(finish, records.table, delete=False)
    grant_publish(finish, records.topic)
    grant_send(finish, dead_letters)
    t.make_conditional(events_role.resource, when)
    function = t.add(
        "JobEvents",
        "AWS::Lambda::Function",
        zip_function(
            "Asynchronous jobs: SageMaker's results -> result URL, job record, notification",
            "lambda_sr.job_events.handler",
            "invoke-endpoint.zip",
            events_role,
            log,
            # The answer of a 7680x4320 result is tens of MB of base64 JSON, decoded in memory.
            3008,
            120,
            DeadLetterConfig={"TargetArn": dead_letters.arn},
            Environment={
                "Variables": {
                    "SUPERRES_VARIANT": "gpu",
                    **output.env(),
                    "SUPERRES_JOB_TABLE": records.table.ref,
                    "SUPERRES_JOB_TOPIC_ARN": records.topic.ref,
                }
            },
        ),
        condition=when,
        Metadata=skip(CONCURRENCY_SKIP, ENVIRONMENT_KEY_SKIP, NO_VPC_SKIP, NO_VPC_GUARD_SKIP),
    )
    # What SNS could not deliver to the function (throttled, deleted, refused) lands in the
    # same dead-letter queue as what the function failed on.
    t.add(
        "JobEventsSubscription",
        "AWS::SNS::Subscription",
        {
            "TopicArn": events_topic.ref,
            "Protocol": "lambda",
            "Endpoint": function.arn,
            "RedrivePolicy": {"deadLetterTargetArn": dead_letters.arn},
        },
        condition=when,
    )
    t.add(
        "JobEventsDeadLetterQueuePolicy",
        "AWS::SQS::QueuePolicy",
        {
            "Queues": [dead_letters.ref],
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "sns.amazonaws.com"},
                        "Action": "sqs:SendMessage",
                        "Resource": dead_letters.arn,
                        "Condition": {"ArnEquals": {"aws:SourceArn": events_topic.ref}},
                    }
                ],
            },
        },
        condition=when,
    )
    t.add(
        "JobEventsPermission",
        "AWS::Lambda::Permission",
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": function.arn,
            "Principal": "sns.amazonaws.com",
            "SourceArn": events_topic.ref,
        },
        condition=when,
    )
