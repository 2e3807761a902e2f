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
    #: None where the stack's runtime has no face restoration (Inferentia: the face networks are not compiled for Neuron)
    face_enhancement: Parameter | None
    allowed_buckets: Parameter
    log_retention: Parameter
    alarm_topic: Parameter
    source_ips: Parameter
    cors_origin: Parameter
    reserved_concurrency: Parameter
    use_iam: Condition
    has_quota: Condition
    has_alarm_topic: Condition
    is_china: Condition
    #: SetApiGatewayAccount: the stack sets the account's API Gateway logging role.
    sets_logging_role: Condition
    has_source_ips: Condition
    has_cors: Condition
    has_reserved_concurrency: Condition
    #: HasBucket<i>: the i-th allow-listed bucket is given.
    has_bucket: tuple[Condition, ...]

    def reserved_concurrency_property(self) -> dict[str, Any]:
        """The API function's ReservedConcurrentExecutions, absent when the parameter is 0."""
        return {
            "ReservedConcurrentExecutions": if_(self.has_reserved_concurrency, self.reserved_concurrency.ref, NO_VALUE)
        }

    def cors_env(self) -> dict[str, Any]:
        """SUPERRES_CORS_ORIGIN: the origin the API functions' answers name (empty: none)."""
        return {"SUPERRES_CORS_ORIGIN": self.cors_origin.ref}

    def allowed_buckets_env(self) -> dict[str, Any]:
        """SUPERRES_ALLOWED_S3_BUCKETS: a JSON list of the allow-listed buckets."""
        return if_(
            self.has_bucket[0],
            {"Fn::Join": ["", ['["', {"Fn::Join": ['","', self.allowed_buckets.ref]}, '"]']]},
            "[]",
        )

    def allowed_buckets_policy(self, t: Template, *roles: Role) -> None:
        """s3:GetObject on objects of the allow-listed buckets; no policy when there are none."""

        def slots(text: str) -> list[Any]:
            """``text`` for each given bucket; bucket 0 exists whenever the policy does (HasBucket0)."""

            def one(index: int) -> dict[str, Any]:
                return sub(text, variables={"Bucket": allowed_bucket(self.allowed_buckets, index)})

            return [one(0)] + [if_(self.has_bucket[i], one(i), NO_VALUE) for i in range(1, MAX_ALLOWED_BUCKETS)]

        _, allowed = attached_policy(
            t, "AllowedBucketsPolicy", "read-allow-listed-buckets", list(roles), self.has_bucket[0]
        )
        # One-off: buckets named by a parameter, not resources of the stack (no handle).
        allowed.allow(["s3:GetObject"], slots("arn:${AWS::Partition}:s3:::${Bucket}/*"))
        # An SSE-KMS bucket's objects need kms:Decrypt of its key, which may be in any account
        # the bucket's owner chose: allowed only through S3 and for these buckets' objects
        # (S3 passes the object's or, with an S3 Bucket Key, the bucket's ARN as encryption context).
        allowed.allow(
            ["kms:Decrypt"],
            sub("arn:${AWS::Partition}:kms:*:*:key/*"),
            Condition={
                "StringLike": {
                    "kms:ViaService": sub("s3.*.${AWS::URLSuffix}"),
                    "kms:EncryptionContext:aws:s3:arn": [
                        *slots("arn:${AWS::Partition}:s3:::${Bucket}"),
                        *slots("arn:${AWS::Partition}:s3:::${Bucket}/*"),
                    ],
                }
            },
        )


def allowed_bucket(allowed_buckets: Parameter, index: int) -> dict[str, Any]:
    """The index-th allow-listed bucket name, "" when fewer are given."""
    joined = {"Fn::Join": [",", allowed_buckets.ref]}
    padded = {"Fn::Split": [",", {"Fn::Join": [",", [joined, "," * (MAX_ALLOWED_BUCKETS - 1)]]}]}
    return {"Fn::Select": [index, padded]}


def common_parameters(t: Template, *, default_model: str, default_face: bool | None, face_cost: str = "") -> Common:
    """``default_face`` None: the stack offers no face enhancement; ``face_cost``: what turning
    it on costs on this stack, appended to the parameter's description."""
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
    source_ips = t.parameter(
        api,
        "AllowedSourceIps",
        "Callers' source addresses (CIDRs; empty: any)",
        Type="CommaDelimitedList",
        Default="",
        Description=(
            "Comma-separated IPv4/IPv6 CIDR ranges (e.g. 203.0.113.0/24) the API answers; a resource "
            "policy refuses every other source with 403. Empty: no source restriction."
        ),
    )
    cors_origin = t.parameter(
        api,
        "CorsAllowOrigin",
        "Web origin allowed to call the API (CORS; empty: none)",
        Type="String",
        Default="",
        AllowedPattern="^$|^\\*$|^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$",
        Description=(
            "The one origin browsers may call the API from, e.g. https://app.example.com, or * for any. "
            "Empty: no CORS headers, so web pages on other origins cannot read the answers."
        ),
    )
    logging_role = t.parameter(
        api,
        "SetApiGatewayLoggingRole",
        "Set the account's API Gateway logging role",
        Type="String",
        Default="true",
        AllowedValues=["true", "false"],
        Description=(
            "API Gateway writes access and execution logs with one CloudWatch role per account and "
            "Region; a stage with logging fails to create where none is set. true: this stack creates "
            "the role and sets it (kept when the stack is deleted, as other APIs rely on it). "
            "false: the account already has one (API Gateway console, Settings)."
        ),
    )
    reserved_concurrency = t.number(
        api,
        "FunctionReservedConcurrency",
        "API function's reserved concurrency (0 = none)",
        default=0,
        minimum=0,
        description=(
            "Executions reserved for (and capping) the API function. 0 reserves none: accounts whose "
            "concurrency quota is 10 cannot reserve any (Lambda keeps 10 unreserved)."
        ),
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
            Description='Serve "face": true requests (GFPGAN + YuNet); when false they are a 400.' + face_cost,
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
    sets_logging_role = t.condition("SetApiGatewayAccount", {"Fn::Equals": [logging_role.ref, "true"]})
    has_source_ips = t.condition("HasSourceIps", not_equals({"Fn::Join": ["", source_ips.ref]}, ""))
    has_cors = t.condition("HasCors", not_equals(cors_origin.ref, ""))
    has_reserved_concurrency = t.condition("HasReservedConcurrency", not_equals(reserved_concurrency.ref, 0))
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
        source_ips=source_ips,
        cors_origin=cors_origin,
        reserved_concurrency=reserved_concurrency,
        use_iam=use_iam,
        has_quota=has_quota,
        has_alarm_topic=has_alarm_topic,
        is_china=is_china,
        sets_logging_role=sets_logging_role,
        has_source_ips=has_source_ips,
        has_cors=has_cors,
        has_reserved_concurrency=has_reserved_concurrency,
        has_bucket=has_bucket,
    )
