"""The parameters and conditions every stack has, and the allow-listed input buckets they name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from superres.manifest import MODELS

from .core import NO_VALUE, Condition, Parameter, Template, if_, not_equals, sub
from .iam import Role, attached_policy

#: The x4 networks the hosts can load with spandrel (the SageMaker artifact ships them all).
X4_MODELS = tuple(name for name, spec in MODELS.items() if spec.scale == 4 and spec.runtime == "spandrel")
MAX_ALLOWED_BUCKETS = 10
#: The values CloudWatch Logs accepts for a retention.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)


@dataclass(frozen=True)
class Common:
    """Handles to the shared parameters and conditions, for the pieces that use them."""

    stage_name: Parameter
    usage_rate: Parameter
    usage_burst: Parameter
    daily_quota: Parameter
    stage_rate: Parameter
    stage_burst: Parameter
    model_name: Parameter
    #: None where the stack's runtime has no face restoration (the Lambda zip)
    face_enhancement: Parameter | None
    allowed_buckets: Parameter
    log_retention: Parameter
    alarm_topic: Parameter
    use_iam: Condition
    has_quota: Condition
    has_alarm_topic: Condition
    is_china: Condition
    #: HasBucket<i>: the i-th allow-listed bucket is given.
    has_bucket: tuple[Condition, ...]

    def allowed_buckets_env(self) -> dict[str, Any]:
        """SUPERRES_ALLOWED_S3_BUCKETS: a JSON list of the allow-listed buckets."""
        return if_(
            self.has_bucket[0],
            {"Fn::Join": ["", ['["', {"Fn::Join": ['","', self.allowed_buckets.ref]}, '"]']]},
            "[]",
        )

    def allowed_buckets_policy(self, t: Template, *roles: Role) -> None:
        """s3:GetObject on objects of the allow-listed buckets; no policy when there are none."""

        def arn(index: int) -> dict[str, Any]:
            bucket = allowed_bucket(self.allowed_buckets, index)
            return sub("arn:${AWS::Partition}:s3:::${Bucket}/*", variables={"Bucket": bucket})

        # Bucket 0 exists whenever the policy does (HasBucket0 guards it).
        resources = [arn(0)] + [
            if_(self.has_bucket[index], arn(index), NO_VALUE) for index in range(1, MAX_ALLOWED_BUCKETS)
        ]
        _, allowed = attached_policy(
            t, "AllowedBucketsPolicy", "read-allow-listed-buckets", list(roles), self.has_bucket[0]
        )
        # One-off: buckets named by a parameter, not resources of the stack (no handle).
        allowed.allow(["s3:GetObject"], resources)


def allowed_bucket(allowed_buckets: Parameter, index: int) -> dict[str, Any]:
    """The index-th allow-listed bucket name, "" when fewer are given."""
    joined = {"Fn::Join": [",", allowed_buckets.ref]}
    padded = {"Fn::Split": [",", {"Fn::Join": [",", [joined, "," * (MAX_ALLOWED_BUCKETS - 1)]]}]}
    return {"Fn::Select": [index, padded]}


def common_parameters(t: Template, *, default_model: str, default_face: bool | None) -> Common:
    """``default_face`` None: the stack offers no face enhancement."""
    api = "API"
    stage_name = t.parameter(
        api,
        "customStageName",
        "Stage name (first path segment of the URL)",
        Type="String",
        Default="prod",
        AllowedPattern="^[A-Za-z0-9_-]{1,128}$",
        Description="API Gateway stage, the first path segment of the invoke URL.",
    )
    auth_type = t.parameter(
        api,
        "customAuthType",
        "Authentication",
        Type="String",
        Default="AWS_IAM",
        AllowedValues=["AWS_IAM", "NONE"],
        Description=(
            "AWS_IAM: callers sign requests (SigV4) and need execute-api:Invoke. "
            "NONE: only the API key protects the method (in the China regions, unauthenticated "
            "APIs need an ICP recordal)."
        ),
    )
    usage_rate = t.number(
        api,
        "UsagePlanRateLimit",
        "Per-key rate (requests/second)",
        default=5,
        minimum=1,
        description="Steady-state requests per second allowed per API key (usage plan throttle).",
    )
    usage_burst = t.number(
        api,
        "UsagePlanBurstLimit",
        "Per-key burst",
        default=10,
        minimum=1,
        description="Requests allowed in a burst per API key (usage plan throttle).",
    )
    daily_quota = t.number(
        api,
        "UsagePlanDailyQuota",
        "Per-key daily quota (0 = none)",
        default=10000,
        minimum=0,
        description="Requests per key per day; 0 disables the quota.",
    )
    stage_rate = t.number(
        api,
        "StageRateLimit",
        "Stage-wide rate (requests/second)",
        default=50,
        minimum=1,
        description="Requests per second for POST /resolution across all keys.",
    )
    stage_burst = t.number(
        api,
        "StageBurstLimit",
        "Stage-wide burst",
        default=100,
        minimum=1,
        description="Burst for POST /resolution across all keys.",
    )
    service = "Service"
    model_name = t.parameter(
        service,
        "ModelName",
        "Super-resolution model",
        Type="String",
        Default=default_model,
        AllowedValues=X4_MODELS,
        Description=(
            "The x4 network (scale 2 is x4 then Lanczos). RealESRGAN_x4plus: photos, 35.9 "
            "MFLOP/pixel; realesr-general-x4v3: photos, 2.4; RealESRGAN_x4plus_anime_6B: "
            "illustrations, 11.4; realesr-animevideov3: anime frames, 1.2."
        ),
    )
    face_enhancement = (
        None
        if default_face is None
        else t.parameter(
            service,
            "FaceEnhancement",
            "Face enhancement (GFPGAN)",
            Type="String",
            Default="true" if default_face else "false",
            AllowedValues=["true", "false"],
            Description='Serve "face": true requests (GFPGAN + YuNet); when false they are a 400.',
        )
    )
    allowed_buckets = t.parameter(
        service,
        "AllowedS3Buckets",
        "Buckets allowed for s3:// inputs",
        Type="CommaDelimitedList",
        Default="",
        Description=(
            f"Up to {MAX_ALLOWED_BUCKETS} bucket names (comma separated) that s3:// urls may read; "
            "the function may read objects of exactly these buckets. Empty: no s3:// inputs."
        ),
    )
    ops = "Operations"
    log_retention = t.parameter(
        ops,
        "LogRetentionDays",
        "Log retention (days)",
        Type="Number",
        Default=365,
        AllowedValues=LOG_RETENTION_DAYS,
        Description="Retention of the access log and function log groups.",
    )
    alarm_topic = t.parameter(
        ops,
        "AlarmTopicArn",
        "SNS topic for alarms (optional)",
        Type="String",
        Default="",
        AllowedPattern="^$|^arn:[a-z-]+:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]+$",
        Description="Existing SNS topic the alarms notify; empty: alarms without actions.",
    )
    use_iam = t.condition("UseIam", {"Fn::Equals": [auth_type.ref, "AWS_IAM"]})
    has_quota = t.condition("HasQuota", not_equals(daily_quota.ref, 0))
    has_alarm_topic = t.condition("HasAlarmTopic", not_equals(alarm_topic.ref, ""))
    is_china = t.condition("IsChina", {"Fn::Equals": [{"Ref": "AWS::Partition"}, "aws-cn"]})
    has_bucket = tuple(
        t.condition(f"HasBucket{index}", not_equals(allowed_bucket(allowed_buckets, index), ""))
        for index in range(MAX_ALLOWED_BUCKETS)
    )
    return Common(
        stage_name=stage_name,
        usage_rate=usage_rate,
        usage_burst=usage_burst,
        daily_quota=daily_quota,
        stage_rate=stage_rate,
        stage_burst=stage_burst,
        model_name=model_name,
        face_enhancement=face_enhancement,
        allowed_buckets=allowed_buckets,
        log_retention=log_retention,
        alarm_topic=alarm_topic,
        use_iam=use_iam,
        has_quota=has_quota,
        has_alarm_topic=has_alarm_topic,
        is_china=is_china,
        has_bucket=has_bucket,
    )
