"""Log groups, the dashboard and the alarms."""

from __future__ import annotations

import json
from typing import Any

from .core import NO_VALUE, REGION, Condition, Json, Resource, Template, if_, skip, sub
from .parameters import Common

#: The REST API's name (API Gateway metrics are keyed by it).
API_NAME = "${AWS::StackName}-superres"
#: The one production variant of each SageMaker endpoint.
VARIANT_NAME = "AllTraffic"
LATENCY_ALARM_MS = 20000


def log_group(t: Template, common: Common, name: str, *, group_name: Json = None) -> Resource:
    """A log group of LogRetentionDays; ``group_name`` where a service writes to a fixed name."""
    named = {"LogGroupName": group_name} if group_name is not None else {}
    return t.add(
        name,
        "AWS::Logs::LogGroup",
        {**named, "RetentionInDays": common.log_retention.ref},
        DeletionPolicy="Delete",
        UpdateReplacePolicy="Delete",
        Metadata=skip(
            (
                "CKV_AWS_158",
                (
                    "CloudWatch Logs encrypts log data at rest by default; a customer managed KMS key "
                    "would add $1/month and a key policy to every deployment for no extra protection "
                    "of these request logs (no image data is logged)."
                ),
            ),
            (
                "cloudwatch_log_group_encrypted_check",
                "Encrypted by CloudWatch Logs by default; a customer managed key would add cost and a key policy (no image data is logged).",
            ),
            (
                "cloudwatch_log_group_retention_period_check",
                (
                    "Retention is the LogRetentionDays parameter (default 365 days, the rule's minimum), which "
                    "the rule cannot read; the operator may choose less for request logs."
                ),
            ),
        ),
    )


#: Alarms notify the optional AlarmTopicArn; guard wants actions that always exist.
ALARM_ACTIONS_SKIP = skip(
    (
        "cloudwatch_alarm_action_check",
        (
            "Alarm actions notify AlarmTopicArn when the operator gives one (Fn::If); without it the "
            "alarms still show on the dashboard. The rule cannot read the Fn::If."
        ),
    )
)


def alarm_common(common: Common) -> dict[str, Any]:
    """Alarm and recovery notifications go to the optional topic."""
    actions = if_(common.has_alarm_topic, [common.alarm_topic.ref], NO_VALUE)
    return {"AlarmActions": actions, "OKActions": actions, "TreatMissingData": "notBreaching"}


def any_above_zero(period: int) -> dict[str, Any]:
    """The alarm fires on a single datapoint above zero."""
    return {"Period": period, "EvaluationPeriods": 1, "Threshold": 0, "ComparisonOperator": "GreaterThanThreshold"}


def dead_letter_alarm(
    t: Template, common: Common, name: str, queue: Resource, what: str, condition: Condition | None = None
) -> None:
    """Anything in a dead-letter queue is a job that will never finish by itself."""
    t.add(
        name,
        "AWS::CloudWatch::Alarm",
        {
            "AlarmDescription": f"{what} in {queue.name}: look at the function's log, then redrive or delete them",
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [{"Name": "QueueName", "Value": queue.att("QueueName")}],
            "Statistic": "Maximum",
            **any_above_zero(300),
            **alarm_common(common),
        },
        condition=condition,
        Metadata=ALARM_ACTIONS_SKIP,
    )


def _console(common: Common, path: str) -> dict[str, Any]:
    return if_(
        common.is_china,
        sub("https://${AWS::Region}.console.amazonaws.cn/" + path),
        sub("https://${AWS::Region}.console.aws.amazon.com/" + path),
    )


def _widgets(endpoint: Resource | None) -> list[dict[str, Any]]:
    api_dims = ["ApiName", API_NAME, "Stage", "${customStageName}"]
    fn_dims = ["FunctionName", "${Function}"]
    widgets: list[dict[str, Any]] = [
        {
            "title": "Requests and errors",
            "metrics": [
                ["AWS/ApiGateway", "Count", *api_dims, {"stat": "Sum"}],
                ["AWS/ApiGateway", "4XXError", *api_dims, {"stat": "Sum"}],
                ["AWS/ApiGateway", "5XXError", *api_dims, {"stat": "Sum"}],
            ],
        },
        {
            "title": "Latency (ms)",
            "metrics": [
                ["AWS/ApiGateway", "Latency", *api_dims, {"stat": "p50"}],
                ["AWS/ApiGateway", "Latency", *api_dims, {"stat": "p99"}],
                ["AWS/ApiGateway", "IntegrationLatency", *api_dims, {"stat": "p99"}],
            ],
        },
        {
            "title": "Function",
            "metrics": [
                ["AWS/Lambda", "Invocations", *fn_dims, {"stat": "Sum"}],
                ["AWS/Lambda", "Errors", *fn_dims, {"stat": "Sum"}],
                ["AWS/Lambda", "Throttles", *fn_dims, {"stat": "Sum"}],
                ["AWS/Lambda", "ConcurrentExecutions", *fn_dims, {"stat": "Maximum"}],
            ],
        },
        {
            "title": "Function duration (ms)",
            "metrics": [
                ["AWS/Lambda", "Duration", *fn_dims, {"stat": "p50"}],
                ["AWS/Lambda", "Duration", *fn_dims, {"stat": "p99"}],
            ],
        },
    ]
    if endpoint:
        ep_dims = ["EndpointName", "${Endpoint.EndpointName}", "VariantName", VARIANT_NAME]
        widgets += [
            {
                "title": "Endpoint",
                "metrics": [
                    ["AWS/SageMaker", "Invocations", *ep_dims, {"stat": "Sum"}],
                    ["AWS/SageMaker", "Invocation4XXErrors", *ep_dims, {"stat": "Sum"}],
                    ["AWS/SageMaker", "Invocation5XXErrors", *ep_dims, {"stat": "Sum"}],
                    ["AWS/SageMaker", "InvocationsPerInstance", *ep_dims, {"stat": "Sum"}],
                ],
            },
            {
                "title": "Endpoint latency (microseconds)",
                "metrics": [
                    ["AWS/SageMaker", "ModelLatency", *ep_dims, {"stat": "p50"}],
                    ["AWS/SageMaker", "ModelLatency", *ep_dims, {"stat": "p99"}],
                    ["AWS/SageMaker", "OverheadLatency", *ep_dims, {"stat": "p99"}],
                ],
            },
        ]
    return widgets


def observability(t: Template, common: Common, function: Resource, endpoint: Resource | None) -> None:
    """Dashboard and alarms: API 5xx rate, p99 latency, throttles, backend errors."""
    body = {
        "widgets": [
            {
                "type": "metric",
                "x": 12 * (index % 2),
                "y": 6 * (index // 2),
                "width": 12,
                "height": 6,
                "properties": {
                    "title": widget["title"],
                    "metrics": widget["metrics"],
                    "region": "${AWS::Region}",
                    "view": "timeSeries",
                    "period": 60,
                },
            }
            for index, widget in enumerate(_widgets(endpoint))
        ]
    }
    variables: dict[str, Any] = {"Function": function.ref}
    if endpoint:
        variables["Endpoint.EndpointName"] = endpoint.att("EndpointName")
    dashboard = t.add(
        "Dashboard",
        "AWS::CloudWatch::Dashboard",
        {
            "DashboardName": sub("${AWS::StackName}-superres"),
            "DashboardBody": sub(json.dumps(body, separators=(",", ":")), common.stage_name, variables=variables),
        },
    )
    api_dimensions = [
        {"Name": "ApiName", "Value": sub(API_NAME)},
        {"Name": "Stage", "Value": common.stage_name.ref},
    ]
    notify = alarm_common(common)
    t.add(
        "Api5xxRateAlarm",
        "AWS::CloudWatch::Alarm",
        {
            "AlarmDescription": "More than 5% of requests answered 5xx for 5 minutes",
            "Namespace": "AWS/ApiGateway",
            "MetricName": "5XXError",
            "Dimensions": api_dimensions,
            "Statistic": "Average",
            "Period": 60,
            "EvaluationPeriods": 5,
            "DatapointsToAlarm": 5,
            "Threshold": 0.05,
            "ComparisonOperator": "GreaterThanThreshold",
            **notify,
        },
        Metadata=ALARM_ACTIONS_SKIP,
    )
    t.add(
        "ApiLatencyP99Alarm",
        "AWS::CloudWatch::Alarm",
        {
            "AlarmDescription": f"p99 latency above {LATENCY_ALARM_MS} ms (API Gateway cuts at 29 s) for 15 minutes",
            "Namespace": "AWS/ApiGateway",
            "MetricName": "Latency",
            "Dimensions": api_dimensions,
            "ExtendedStatistic": "p99",
            "Period": 300,
            "EvaluationPeriods": 3,
            "DatapointsToAlarm": 3,
            "Threshold": LATENCY_ALARM_MS,
            "ComparisonOperator": "GreaterThanThreshold",
            **notify,
        },
        Metadata=ALARM_ACTIONS_SKIP,
    )
    t.add(
        "FunctionThrottleAlarm",
        "AWS::CloudWatch::Alarm",
        {
            "AlarmDescription": "The function was throttled (concurrency exhausted)",
            "Namespace": "AWS/Lambda",
            "MetricName": "Throttles",
            "Dimensions": [{"Name": "FunctionName", "Value": function.ref}],
            "Statistic": "Sum",
            **any_above_zero(300),
            **notify,
        },
        Metadata=ALARM_ACTIONS_SKIP,
    )
    if endpoint:
        backend = {
            "AlarmDescription": "The SageMaker endpoint answered 5xx (model or container errors)",
            "Namespace": "AWS/SageMaker",
            "MetricName": "Invocation5XXErrors",
            "Dimensions": [
                {"Name": "EndpointName", "Value": endpoint.att("EndpointName")},
                {"Name": "VariantName", "Value": VARIANT_NAME},
            ],
        }
    else:
        backend = {
            "AlarmDescription": "The function failed (unhandled errors, timeouts, out of memory)",
            "Namespace": "AWS/Lambda",
            "MetricName": "Errors",
            "Dimensions": [{"Name": "FunctionName", "Value": function.ref}],
        }
    t.add(
        "BackendErrorAlarm",
        "AWS::CloudWatch::Alarm",
        {**backend, "Statistic": "Sum", **any_above_zero(300), **notify},
        Metadata=ALARM_ACTIONS_SKIP,
    )
    t.output(
        "DashboardURL",
        "CloudWatch dashboard of the stack",
        {
            "Fn::Join": [
                "",
                [_console(common, "cloudwatch/home?region="), REGION, "#dashboards:name=", dashboard.ref],
            ]
        },
    )
