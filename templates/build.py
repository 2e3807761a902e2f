"""Generate the three CloudFormation templates from one description.

    python templates/build.py            # (re)write the three *.template.json
    python templates/build.py --check    # exit 1 if a committed template is stale

Why plain dicts rather than troposphere or nested stacks:
- every piece shared by the stacks (API + usage plan + auth, logging/alarms/dashboard,
  VPC, EFS, SageMaker endpoint + autoscaling) is one function below, so nothing is
  copy-pasted between templates, and the output is plain CloudFormation JSON that the
  AWS console, cfn-lint, checkov and moto read directly;
- nested stacks would need their child templates in S3 at deploy time (one more asset
  per region and a template URL placeholder inside a template) and split outputs and
  conditions across files, for no gain in a kit of three templates;
- troposphere would be one more pinned dependency whose resource classes lag the
  CloudFormation schema; cfn-lint (pinned) checks the generated JSON against the
  current schema anyway.

Assets are referenced through the placeholders the AWS Solutions build substitutes
(serverless-image-handler convention): %%BUCKET_NAME%% (regional asset bucket prefix,
``-<region>`` appended), %%SOLUTION_NAME%%, %%VERSION%% and %%ECR_ACCOUNT_ID%% (the
account that hosts the container images in each region's ECR).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from superres.manifest import MODELS, ModelSpec
from superres.service.contract import contract, schema
from superres.service.jobs import ASYNC_FAILURE_PREFIX, ASYNC_INPUT_PREFIX, ASYNC_OUTPUT_PREFIX, INPUT_PREFIX
from superres.service.settings import ServiceSettings

HERE = Path(__file__).resolve().parent
OUTPUTS = {
    "lambda": HERE / "lambda-efs.template.json",
    "gpu": HERE / "sagemaker-gpu.template.json",
    "inf1": HERE / "sagemaker-inf1.template.json",
}

# ---------------------------------------------------------------- constants

#: The placeholders live in one mapping (as in serverless-image-handler's SourceCode
#: mapping); resources read them with FindInMap, so the build substitutes them in one place.
ASSET_MAPPING = {
    "Source": {
        "BucketPrefix": "%%BUCKET_NAME%%",
        "KeyPrefix": "%%SOLUTION_NAME%%/%%VERSION%%",
        "SolutionName": "%%SOLUTION_NAME%%",
        "Version": "%%VERSION%%",
        "EcrAccount": "%%ECR_ACCOUNT_ID%%",
    }
}
PLACEHOLDERS = ("%%BUCKET_NAME%%", "%%SOLUTION_NAME%%", "%%VERSION%%", "%%ECR_ACCOUNT_ID%%")


#: What the deployment build puts in; tests deploy and lint templates filled with these.
EXAMPLE_ASSETS = {
    "%%BUCKET_NAME%%": "superres-assets",
    "%%SOLUTION_NAME%%": "superres-kit",
    "%%VERSION%%": "v1.0.0",
    "%%ECR_ACCOUNT_ID%%": "123456789012",
}


def substitute(text: str, values: dict[str, str] | None = None) -> str:
    """The template text with every placeholder replaced (as deployment/build-s3-dist.sh does)."""
    for placeholder, value in (values or EXAMPLE_ASSETS).items():
        text = text.replace(placeholder, value)
    assert "%%" not in text, "a placeholder is left"
    return text


def asset(key: str) -> dict[str, Any]:
    return {"Fn::FindInMap": ["Assets", "Source", key]}


ASSET_BUCKET = {"Fn::Join": ["-", [asset("BucketPrefix"), {"Ref": "AWS::Region"}]]}
ASSET_VARIABLES = {
    "AssetBucket": ASSET_BUCKET,
    "KeyPrefix": asset("KeyPrefix"),
    "SolutionName": asset("SolutionName"),
    "Version": asset("Version"),
    "EcrAccount": asset("EcrAccount"),
}


def asset_key(filename: str) -> dict[str, Any]:
    return {"Fn::Join": ["/", [asset("KeyPrefix"), filename]]}


def image_uri(repository: str) -> dict[str, Any]:
    """An image in the regional ECR registry of the account that publishes the kit."""
    return {
        "Fn::Sub": [
            "${EcrAccount}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/${SolutionName}-" + repository + ":${Version}",
            ASSET_VARIABLES,
        ]
    }


LAMBDA_PYTHON = "python3.12"
#: The x4 networks the hosts can load with spandrel (the SageMaker artifact ships them all).
X4_MODELS = [name for name, spec in MODELS.items() if spec.scale == 4 and spec.runtime == "spandrel"]
FACE_MODELS = ["GFPGANv1.4", "YuNet"]
EFS_MOUNT = "/mnt/models"
MAX_ALLOWED_BUCKETS = 10
LOG_RETENTION_DAYS = [
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
]
LATENCY_ALARM_MS = 20000

INSTANCE_TYPES = {
    "gpu": ["ml.g4dn.xlarge", "ml.g4dn.2xlarge", "ml.g4dn.8xlarge"],
    "inf1": ["ml.inf1.xlarge", "ml.inf1.2xlarge", "ml.inf1.6xlarge"],
}
VARIANT_NAME = "AllTraffic"
API_NAME = "${AWS::StackName}-superres"


# ---------------------------------------------------------------- helpers


def ref(name: str) -> dict[str, Any]:
    return {"Ref": name}


def getatt(resource: str, attribute: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [resource, attribute]}


def sub(text: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"Fn::Sub": [text, variables] if variables else text}


def if_(condition: str, then: Any, otherwise: Any) -> dict[str, Any]:
    return {"Fn::If": [condition, then, otherwise]}


NO_VALUE = ref("AWS::NoValue")


def skip(*reasons: tuple[str, str]) -> dict[str, Any]:
    """checkov suppressions, each with the reason it is right for this kit."""
    return {"checkov": {"skip": [{"id": check, "comment": why} for check, why in reasons]}}


def statement(actions: list[str], resources: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": actions, "Resource": resources, **extra}


def policy(name: str, *statements: dict[str, Any]) -> dict[str, Any]:
    return {
        "PolicyName": name,
        "PolicyDocument": {"Version": "2012-10-17", "Statement": list(statements)},
    }


def assume_role(service: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": ["sts:AssumeRole"],
            }
        ],
    }


def alnum(name: str) -> str:
    return "".join(ch for ch in name.title() if ch.isalnum())


class Template:
    """The sections of one template; the piece functions below add to them."""

    def __init__(self, description: str) -> None:
        self.description = description
        self.parameters: dict[str, Any] = {}
        self.groups: list[tuple[str, list[str]]] = []
        self.labels: dict[str, str] = {}
        self.mappings: dict[str, Any] = {"Assets": ASSET_MAPPING}
        self.conditions: dict[str, Any] = {}
        self.rules: dict[str, Any] = {}
        self.resources: dict[str, Any] = {}
        self.outputs: dict[str, Any] = {}

    def parameter(self, group: str, name: str, label: str, **spec: Any) -> None:
        self.parameters[name] = spec
        self.labels[name] = label
        for existing, members in self.groups:
            if existing == group:
                members.append(name)
                break
        else:
            self.groups.append((group, [name]))

    def resource(self, name: str, kind: str, properties: dict[str, Any], **attributes: Any) -> str:
        assert name not in self.resources, name
        self.resources[name] = {"Type": kind, **attributes, "Properties": properties}
        return name

    def output(self, name: str, description: str, value: Any, condition: str | None = None) -> None:
        self.outputs[name] = {"Description": description, "Value": value}
        if condition:
            self.outputs[name]["Condition"] = condition

    def render(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Description": self.description,
            "Metadata": {
                "AWS::CloudFormation::Interface": {
                    "ParameterGroups": [
                        {"Label": {"default": group}, "Parameters": members} for group, members in self.groups
                    ],
                    "ParameterLabels": {name: {"default": label} for name, label in self.labels.items()},
                }
            },
            "Parameters": self.parameters,
        }
        if self.mappings:
            body["Mappings"] = self.mappings
        body["Conditions"] = self.conditions
        if self.rules:
            body["Rules"] = self.rules
        body["Resources"] = self.resources
        body["Outputs"] = self.outputs
        return body


# ---------------------------------------------------------------- shared parameters


def common_parameters(t: Template, *, default_model: str, default_face: bool) -> None:
    api = "API"
    t.parameter(
        api,
        "customStageName",
        "Stage name (first path segment of the URL)",
        Type="String",
        Default="prod",
        AllowedPattern="^[A-Za-z0-9_-]{1,128}$",
        Description="API Gateway stage, the first path segment of the invoke URL.",
    )
    t.parameter(
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
    t.parameter(
        api,
        "UsagePlanRateLimit",
        "Per-key rate (requests/second)",
        Type="Number",
        Default=5,
        MinValue=1,
        Description="Steady-state requests per second allowed per API key (usage plan throttle).",
    )
    t.parameter(
        api,
        "UsagePlanBurstLimit",
        "Per-key burst",
        Type="Number",
        Default=10,
        MinValue=1,
        Description="Requests allowed in a burst per API key (usage plan throttle).",
    )
    t.parameter(
        api,
        "UsagePlanDailyQuota",
        "Per-key daily quota (0 = none)",
        Type="Number",
        Default=10000,
        MinValue=0,
        Description="Requests per key per day; 0 disables the quota.",
    )
    t.parameter(
        api,
        "StageRateLimit",
        "Stage-wide rate (requests/second)",
        Type="Number",
        Default=50,
        MinValue=1,
        Description="Requests per second for POST /resolution across all keys.",
    )
    t.parameter(
        api,
        "StageBurstLimit",
        "Stage-wide burst",
        Type="Number",
        Default=100,
        MinValue=1,
        Description="Burst for POST /resolution across all keys.",
    )
    service = "Service"
    t.parameter(
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
    t.parameter(
        service,
        "FaceEnhancement",
        "Face enhancement (GFPGAN)",
        Type="String",
        Default="true" if default_face else "false",
        AllowedValues=["true", "false"],
        Description='Serve "face": true requests (GFPGAN + YuNet); when false they are a 400.',
    )
    t.parameter(
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
    t.parameter(
        ops,
        "LogRetentionDays",
        "Log retention (days)",
        Type="Number",
        Default=365,
        AllowedValues=LOG_RETENTION_DAYS,
        Description="Retention of the access log and function log groups.",
    )
    t.parameter(
        ops,
        "AlarmTopicArn",
        "SNS topic for alarms (optional)",
        Type="String",
        Default="",
        AllowedPattern="^$|^arn:[a-z-]+:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]+$",
        Description="Existing SNS topic the alarms notify; empty: alarms without actions.",
    )
    t.conditions.update(
        {
            "UseIam": {"Fn::Equals": [ref("customAuthType"), "AWS_IAM"]},
            "HasQuota": {"Fn::Not": [{"Fn::Equals": [ref("UsagePlanDailyQuota"), 0]}]},
            "HasAlarmTopic": {"Fn::Not": [{"Fn::Equals": [ref("AlarmTopicArn"), ""]}]},
            "IsChina": {"Fn::Equals": [ref("AWS::Partition"), "aws-cn"]},
        }
    )
    padded = {
        "Fn::Split": [
            ",",
            {"Fn::Join": [",", [{"Fn::Join": [",", ref("AllowedS3Buckets")]}, "," * (MAX_ALLOWED_BUCKETS - 1)]]},
        ]
    }
    for index in range(MAX_ALLOWED_BUCKETS):
        t.conditions[f"HasBucket{index}"] = {"Fn::Not": [{"Fn::Equals": [{"Fn::Select": [index, padded]}, ""]}]}


def allowed_buckets_env() -> dict[str, Any]:
    """SUPERRES_ALLOWED_S3_BUCKETS: a JSON list of the allow-listed buckets."""
    return if_(
        "HasBucket0",
        {"Fn::Join": ["", ['["', {"Fn::Join": ['","', ref("AllowedS3Buckets")]}, '"]']]},
        "[]",
    )


def allowed_buckets_policy(t: Template, *roles: str) -> str:
    """s3:GetObject on objects of the allow-listed buckets; no policy when there are none."""
    padded = {
        "Fn::Split": [
            ",",
            {"Fn::Join": [",", [{"Fn::Join": [",", ref("AllowedS3Buckets")]}, "," * (MAX_ALLOWED_BUCKETS - 1)]]},
        ]
    }

    def arn(index: int) -> dict[str, Any]:
        return sub("arn:${AWS::Partition}:s3:::${Bucket}/*", {"Bucket": {"Fn::Select": [index, padded]}})

    # Bucket 0 exists whenever the policy does (HasBucket0 guards it).
    resources = [arn(0)] + [if_(f"HasBucket{index}", arn(index), NO_VALUE) for index in range(1, MAX_ALLOWED_BUCKETS)]
    return t.resource(
        "AllowedBucketsPolicy",
        "AWS::IAM::Policy",
        {
            **policy("read-allow-listed-buckets", statement(["s3:GetObject"], resources)),
            "Roles": [ref(role) for role in roles],
        },
        Condition="HasBucket0",
    )


# ---------------------------------------------------------------- logging, roles


def log_group(t: Template, name: str) -> str:
    return t.resource(
        name,
        "AWS::Logs::LogGroup",
        {"RetentionInDays": ref("LogRetentionDays")},
        DeletionPolicy="Delete",
        UpdateReplacePolicy="Delete",
        Metadata=skip(
            (
                "CKV_AWS_158",
                "CloudWatch Logs encrypts log data at rest by default; a customer managed KMS key "
                "would add $1/month and a key policy to every deployment for no extra protection "
                "of these request logs (no image data is logged).",
            )
        ),
    )


LAMBDA_SKIPS = (
    (
        "CKV_AWS_116",
        "Invoked synchronously by API Gateway: the caller gets the error, a dead-letter queue "
        "never receives synchronous failures.",
    ),
    (
        "CKV_AWS_115",
        "Concurrency is bounded by the stage and usage-plan throttles; reserving concurrency "
        "fails in accounts with the default 10-execution quota.",
    ),
    (
        "CKV_AWS_173",
        "The environment holds no secrets (model name, flags, bucket names); the default "
        "AWS owned key encrypts it at rest.",
    ),
)


def zip_function(
    description: str, handler: str, archive: str, role: str, log: str, memory: int, timeout: int, **extra: Any
) -> dict[str, Any]:
    """Properties of a python zip function of the kit's assets, traced, logging JSON to ``log``."""
    return {
        "Description": description,
        "Runtime": LAMBDA_PYTHON,
        "Handler": handler,
        "Code": {"S3Bucket": ASSET_BUCKET, "S3Key": asset_key(archive)},
        "Role": getatt(role, "Arn"),
        "MemorySize": memory,
        "Timeout": timeout,
        "TracingConfig": {"Mode": "Active"},
        "LoggingConfig": {"LogFormat": "JSON", "LogGroup": ref(log)},
        **extra,
    }


def function_role(t: Template, name: str, log: str, *extra: Any, vpc: bool) -> str:
    statements = [
        statement(["logs:CreateLogStream", "logs:PutLogEvents"], getatt(log, "Arn")),
        # X-Ray accepts no resource-level permissions.
        statement(["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "*"),
    ]
    if vpc:
        # Lambda creates and deletes the function's network interfaces with these;
        # EC2 grants the Describe call only on "*".
        statements.append(
            statement(
                [
                    "ec2:CreateNetworkInterface",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeSubnets",
                    "ec2:DeleteNetworkInterface",
                    "ec2:AssignPrivateIpAddresses",
                    "ec2:UnassignPrivateIpAddresses",
                ],
                "*",
            )
        )
    policies = [policy("logs-traces-network", *statements), *extra]
    attributes: dict[str, Any] = {}
    if vpc:
        attributes["Metadata"] = skip(
            (
                "CKV_AWS_111",
                "Resource '*' only for actions with no resource-level permissions: the EC2 "
                "network-interface calls Lambda makes for a function in a VPC, and X-Ray segments.",
            )
        )
    return t.resource(
        name,
        "AWS::IAM::Role",
        {"AssumeRolePolicyDocument": assume_role("lambda.amazonaws.com"), "Policies": policies},
        **attributes,
    )


# ---------------------------------------------------------------- API Gateway


def request_model_schema() -> dict[str, Any]:
    """The contract's request schema as an API Gateway (JSON Schema draft 4) model."""
    body = schema("ResolutionRequest")
    return {"$schema": "http://json-schema.org/draft-04/schema#", "title": "ResolutionRequest", **body}


ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "extendedRequestId": "$context.extendedRequestId",
        "ip": "$context.identity.sourceIp",
        "caller": "$context.identity.caller",
        "user": "$context.identity.user",
        "apiKeyId": "$context.identity.apiKeyId",
        "requestTime": "$context.requestTime",
        "httpMethod": "$context.httpMethod",
        "resourcePath": "$context.resourcePath",
        "status": "$context.status",
        "protocol": "$context.protocol",
        "responseLength": "$context.responseLength",
        "latency": "$context.responseLatency",
        "integrationLatency": "$context.integrationLatency",
        "integrationStatus": "$context.integrationStatus",
        "errorMessage": "$context.error.message",
        "errorType": "$context.error.responseType",
    },
    separators=(",", ":"),
)

CORS_HEADERS = {
    "gatewayresponse.header.Access-Control-Allow-Origin": "'*'",
    "gatewayresponse.header.Access-Control-Allow-Headers": (
        "'Content-Type,X-Amz-Date,Authorization,X-Api-Key,X-Amz-Security-Token'"
    ),
    "gatewayresponse.header.Access-Control-Allow-Methods": "'POST,OPTIONS'",
}
#: API Gateway's own errors in the contract's Error shape ({"message", "code"}).
GATEWAY_ERROR_TEMPLATE = '{"message":$context.error.messageString,"code":"$context.error.responseType"}'


#: The contract's operations as API Gateway methods: logical-name prefix of each.
METHOD_NAMES = {"resolution": "Resolution", "createJob": "CreateJob", "getJob": "GetJob"}


def path_resources(t: Template, paths: list[str]) -> dict[str, str]:
    """One AWS::ApiGateway::Resource per path segment of the contract's paths: {path: name}."""
    made: dict[str, str] = {"": ""}
    for path in paths:
        parts = path.strip("/").split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if prefix in made:
                continue
            parent = made["/".join(parts[: depth - 1])]
            name = alnum(prefix.replace("{", "").replace("}", "").replace("/", " ")) + "Resource"
            t.resource(
                name,
                "AWS::ApiGateway::Resource",
                {
                    "RestApiId": ref("Api"),
                    "ParentId": ref(parent) if parent else getatt("Api", "RootResourceId"),
                    "PathPart": parts[depth - 1],
                },
            )
            made[prefix] = name
    return {path: made[path.strip("/")] for path in paths}


def api(t: Template, function: str) -> None:
    """REST API, the contract's operations validated by it, auth, usage plan, key, stage."""
    operations = [
        (path, method.upper(), spec)
        for path, methods in contract()["paths"].items()
        for method, spec in methods.items()
    ]
    t.resource(
        "Api",
        "AWS::ApiGateway::RestApi",
        {
            "Name": sub(API_NAME),
            "Description": "Image super-resolution: POST /resolution, POST /jobs, GET /jobs/{id}",
            "EndpointConfiguration": {"Types": ["REGIONAL"]},
            "ApiKeySourceType": "HEADER",
        },
    )
    resources = path_resources(t, [path for path, _, _ in operations])
    t.resource(
        "ResolutionRequestModel",
        "AWS::ApiGateway::Model",
        {
            "RestApiId": ref("Api"),
            "Name": "ResolutionRequest",
            "ContentType": "application/json",
            "Description": "components/schemas/ResolutionRequest of openapi.yaml",
            "Schema": request_model_schema(),
        },
    )
    t.resource(
        "BodyValidator",
        "AWS::ApiGateway::RequestValidator",
        {"RestApiId": ref("Api"), "Name": "body", "ValidateRequestBody": True, "ValidateRequestParameters": False},
    )
    uri = sub(
        "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Function.Arn}/invocations",
        {"Function.Arn": getatt(function, "Arn")},
    )
    methods = []
    for path, method, spec in operations:
        name = METHOD_NAMES[spec["operationId"]]
        properties: dict[str, Any] = {
            "RestApiId": ref("Api"),
            "ResourceId": ref(resources[path]),
            "HttpMethod": method,
            "OperationName": spec["operationId"],
            "AuthorizationType": if_("UseIam", "AWS_IAM", "NONE"),
            "ApiKeyRequired": True,
            "Integration": {"Type": "AWS_PROXY", "IntegrationHttpMethod": "POST", "TimeoutInMillis": 29000, "Uri": uri},
        }
        if "requestBody" in spec:
            model = spec["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            assert model == "ResolutionRequest", model
            properties["RequestValidatorId"] = ref("BodyValidator")
            properties["RequestModels"] = {"application/json": ref("ResolutionRequestModel")}
        parameters = {
            f"method.request.{p['in']}.{p['name']}": bool(p.get("required")) for p in spec.get("parameters", [])
        }
        if parameters:
            properties["RequestParameters"] = parameters
        methods.append(t.resource(name + "Method", "AWS::ApiGateway::Method", properties))
        # Each method may invoke the function, and nothing else of this API may.
        t.resource(
            ("Api" if name == "Resolution" else name) + "InvokePermission",
            "AWS::Lambda::Permission",
            {
                "Action": "lambda:InvokeFunction",
                "FunctionName": getatt(function, "Arn"),
                "Principal": "apigateway.amazonaws.com",
                "SourceArn": sub(
                    "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}/*/"
                    + method
                    + path.replace("{id}", "*")
                ),
            },
        )
    for kind in ("DEFAULT_4XX", "DEFAULT_5XX"):
        t.resource(
            "GatewayResponse" + kind.replace("DEFAULT_", "Default"),
            "AWS::ApiGateway::GatewayResponse",
            {
                "RestApiId": ref("Api"),
                "ResponseType": kind,
                "ResponseParameters": CORS_HEADERS,
                "ResponseTemplates": {"application/json": GATEWAY_ERROR_TEMPLATE},
            },
        )
    log_group(t, "AccessLogGroup")
    t.resource(
        "ApiDeployment",
        "AWS::ApiGateway::Deployment",
        {"RestApiId": ref("Api"), "Description": "POST /resolution, POST /jobs, GET /jobs/{id}"},
        DependsOn=[*methods, "GatewayResponseDefault4XX", "GatewayResponseDefault5XX"],
    )
    t.resource(
        "ApiStage",
        "AWS::ApiGateway::Stage",
        {
            "RestApiId": ref("Api"),
            "DeploymentId": ref("ApiDeployment"),
            "StageName": ref("customStageName"),
            "TracingEnabled": True,
            "AccessLogSetting": {"DestinationArn": getatt("AccessLogGroup", "Arn"), "Format": ACCESS_LOG_FORMAT},
            "MethodSettings": [
                {
                    "ResourcePath": "/*",
                    "HttpMethod": "*",
                    "MetricsEnabled": True,
                    "ThrottlingRateLimit": ref("StageRateLimit"),
                    "ThrottlingBurstLimit": ref("StageBurstLimit"),
                    "CachingEnabled": False,
                }
            ],
        },
        Metadata=skip(
            (
                "CKV_AWS_120",
                "Every request carries its own image: a cache would never hit and would bill by the hour at rest.",
            ),
        ),
    )
    quota = if_("HasQuota", {"Limit": ref("UsagePlanDailyQuota"), "Period": "DAY"}, NO_VALUE)
    t.resource(
        "UsagePlan",
        "AWS::ApiGateway::UsagePlan",
        {
            "UsagePlanName": sub("${AWS::StackName}-default"),
            "Description": "Default plan; add one per customer tier",
            "ApiStages": [{"ApiId": ref("Api"), "Stage": ref("ApiStage")}],
            "Throttle": {"RateLimit": ref("UsagePlanRateLimit"), "BurstLimit": ref("UsagePlanBurstLimit")},
            "Quota": quota,
        },
    )
    t.resource(
        "ApiKey",
        "AWS::ApiGateway::ApiKey",
        {"Name": sub("${AWS::StackName}-default"), "Enabled": True, "Description": "First key, in the default plan"},
    )
    t.resource(
        "UsagePlanKey",
        "AWS::ApiGateway::UsagePlanKey",
        {"KeyId": ref("ApiKey"), "KeyType": "API_KEY", "UsagePlanId": ref("UsagePlan")},
    )
    t.output(
        "aikitsInvokeURLresolution",
        "POST here (header x-api-key; SigV4-signed when customAuthType is AWS_IAM)",
        sub("https://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${ApiStage}/resolution"),
    )
    t.output(
        "JobsURL",
        "POST here to start an asynchronous job; GET <this>/<id> for its state",
        sub("https://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${ApiStage}/jobs"),
    )
    t.output("ApiKeyId", "Id of the first API key (in the default usage plan)", ref("ApiKey"))
    t.output(
        "GetApiKeyCommand",
        "Prints the value of the first API key",
        sub(
            "aws apigateway get-api-key --api-key ${ApiKey} --include-value --query value "
            "--output text --region ${AWS::Region}"
        ),
    )
    t.output("UsagePlanId", "Usage plan the keys belong to", ref("UsagePlan"))
    t.output(
        "IssueApiKeyCommand",
        "Issues a key for a new customer and adds it to the usage plan (replace CUSTOMER)",
        sub(
            "aws apigateway create-usage-plan-key --region ${AWS::Region} --usage-plan-id ${UsagePlan} "
            "--key-type API_KEY --key-id $(aws apigateway create-api-key --region ${AWS::Region} "
            "--name CUSTOMER --enabled --query id --output text)"
        ),
    )
    t.output(
        "RevokeApiKeyCommand",
        "Disables a customer's key (replace KEY_ID); list keys with: aws apigateway get-api-keys",
        sub(
            "aws apigateway update-api-key --region ${AWS::Region} --api-key KEY_ID "
            "--patch-operations op=replace,path=/enabled,value=false"
        ),
    )
    t.output("AccessLogGroupName", "API access logs (JSON, one line per request)", ref("AccessLogGroup"))


# ---------------------------------------------------------------- observability


def _console(path: str) -> dict[str, Any]:
    return if_(
        "IsChina",
        sub("https://${AWS::Region}.console.amazonaws.cn/" + path),
        sub("https://${AWS::Region}.console.aws.amazon.com/" + path),
    )


ALARM_ACTIONS = if_("HasAlarmTopic", [ref("AlarmTopicArn")], NO_VALUE)
ALARM_COMMON = {"AlarmActions": ALARM_ACTIONS, "OKActions": ALARM_ACTIONS, "TreatMissingData": "notBreaching"}


def dead_letter_alarm(t: Template, name: str, queue: str, what: str, condition: str | None = None) -> None:
    """Anything in a dead-letter queue is a job that will never finish by itself."""
    t.resource(
        name,
        "AWS::CloudWatch::Alarm",
        {
            "AlarmDescription": f"{what} in {queue}: look at the function's log, then redrive or delete them",
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [{"Name": "QueueName", "Value": getatt(queue, "QueueName")}],
            "Statistic": "Maximum",
            "Period": 300,
            "EvaluationPeriods": 1,
            "Threshold": 0,
            "ComparisonOperator": "GreaterThanThreshold",
            **ALARM_COMMON,
        },
        **({"Condition": condition} if condition else {}),
    )


def observability(t: Template, function: str, endpoint: str | None) -> None:
    """Dashboard and alarms: API 5xx rate, p99 latency, throttles, backend errors."""
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
            for index, widget in enumerate(widgets)
        ]
    }
    variables: dict[str, Any] = {"Function": ref(function)}
    if endpoint:
        variables["Endpoint.EndpointName"] = getatt(endpoint, "EndpointName")
    t.resource(
        "Dashboard",
        "AWS::CloudWatch::Dashboard",
        {
            "DashboardName": sub("${AWS::StackName}-superres"),
            "DashboardBody": sub(json.dumps(body, separators=(",", ":")), variables),
        },
    )
    api_dimensions = [
        {"Name": "ApiName", "Value": sub(API_NAME)},
        {"Name": "Stage", "Value": ref("customStageName")},
    ]
    common = ALARM_COMMON
    t.resource(
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
            **common,
        },
    )
    t.resource(
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
            **common,
        },
    )
    t.resource(
        "FunctionThrottleAlarm",
        "AWS::CloudWatch::Alarm",
        {
            "AlarmDescription": "The function was throttled (concurrency exhausted)",
            "Namespace": "AWS/Lambda",
            "MetricName": "Throttles",
            "Dimensions": [{"Name": "FunctionName", "Value": ref(function)}],
            "Statistic": "Sum",
            "Period": 300,
            "EvaluationPeriods": 1,
            "Threshold": 0,
            "ComparisonOperator": "GreaterThanThreshold",
            **common,
        },
    )
    if endpoint:
        backend = {
            "AlarmDescription": "The SageMaker endpoint answered 5xx (model or container errors)",
            "Namespace": "AWS/SageMaker",
            "MetricName": "Invocation5XXErrors",
            "Dimensions": [
                {"Name": "EndpointName", "Value": getatt(endpoint, "EndpointName")},
                {"Name": "VariantName", "Value": VARIANT_NAME},
            ],
        }
    else:
        backend = {
            "AlarmDescription": "The function failed (unhandled errors, timeouts, out of memory)",
            "Namespace": "AWS/Lambda",
            "MetricName": "Errors",
            "Dimensions": [{"Name": "FunctionName", "Value": ref(function)}],
        }
    t.resource(
        "BackendErrorAlarm",
        "AWS::CloudWatch::Alarm",
        {
            **backend,
            "Statistic": "Sum",
            "Period": 300,
            "EvaluationPeriods": 1,
            "Threshold": 0,
            "ComparisonOperator": "GreaterThanThreshold",
            **common,
        },
    )
    t.output(
        "DashboardURL",
        "CloudWatch dashboard of the stack",
        {
            "Fn::Join": [
                "",
                [_console("cloudwatch/home?region="), ref("AWS::Region"), "#dashboards:name=", ref("Dashboard")],
            ]
        },
    )


# ---------------------------------------------------------------- VPC (Lambda variant)


def vpc(t: Template) -> None:
    """A new VPC (2 public + 2 private subnets, one NAT gateway, S3 gateway endpoint) or an existing one."""
    group = "Network"
    t.parameter(
        group,
        "ExistingVpcId",
        "Existing VPC (empty: create one)",
        Type="String",
        Default="",
        AllowedPattern="^$|^vpc-[0-9a-f]+$",
        Description="Leave empty to create a VPC with a NAT gateway; else the VPC of the two subnets below.",
    )
    for index, which in enumerate(("first", "second")):
        t.parameter(
            group,
            f"ExistingPrivateSubnet{index}",
            f"Existing private subnet ({which} AZ)",
            Type="String",
            Default="",
            AllowedPattern="^$|^subnet-[0-9a-f]{8,17}$",
            Description=(
                "With an existing VPC: a private subnet with a route to the internet (NAT) for url "
                "inputs and the model download; the two subnets must be in different Availability Zones."
            ),
        )
    t.conditions["CreateVpc"] = {"Fn::Equals": [ref("ExistingVpcId"), ""]}
    for index in range(2):
        t.conditions[f"UseExistingSubnet{index}"] = {
            "Fn::Not": [{"Fn::Equals": [ref(f"ExistingPrivateSubnet{index}"), ""]}]
        }
    t.rules["ExistingVpcNeedsTwoSubnets"] = {
        "RuleCondition": {"Fn::Not": [{"Fn::Equals": [ref("ExistingVpcId"), ""]}]},
        "Assertions": [
            {
                "Assert": {"Fn::Not": [{"Fn::Equals": [ref(f"ExistingPrivateSubnet{index}"), ""]}]},
                "AssertDescription": "With an existing VPC, give two private subnets of it (two AZs).",
            }
            for index in range(2)
        ],
    }
    t.rules["NewVpcTakesNoSubnets"] = {
        "RuleCondition": {"Fn::Equals": [ref("ExistingVpcId"), ""]},
        "Assertions": [
            {
                "Assert": {"Fn::Equals": [ref(f"ExistingPrivateSubnet{index}"), ""]},
                "AssertDescription": "Subnets are only used with an existing VPC (set ExistingVpcId).",
            }
            for index in range(2)
        ],
    }
    cond = {"Condition": "CreateVpc"}
    t.resource(
        "Vpc",
        "AWS::EC2::VPC",
        {
            "CidrBlock": "10.0.0.0/16",
            "EnableDnsHostnames": True,
            "EnableDnsSupport": True,
            "Tags": [{"Key": "Name", "Value": ref("AWS::StackName")}],
        },
        **cond,
    )
    t.resource("InternetGateway", "AWS::EC2::InternetGateway", {}, **cond)
    t.resource(
        "GatewayAttachment",
        "AWS::EC2::VPCGatewayAttachment",
        {"VpcId": ref("Vpc"), "InternetGatewayId": ref("InternetGateway")},
        **cond,
    )
    # /20 subnets of the fixed 10.0.0.0/16 (4096 addresses each: room for Lambda ENIs).
    cidrs = [f"10.0.{16 * index}.0/20" for index in range(4)]
    for index, kind in enumerate(["Public0", "Public1", "Private0", "Private1"]):
        t.resource(
            f"{kind}Subnet",
            "AWS::EC2::Subnet",
            {
                "VpcId": ref("Vpc"),
                "CidrBlock": cidrs[index],
                "AvailabilityZone": {"Fn::Select": [index % 2, {"Fn::GetAZs": ""}]},
                "MapPublicIpOnLaunch": False,
                "Tags": [{"Key": "Name", "Value": sub("${AWS::StackName}-" + kind.lower())}],
            },
            **cond,
        )
    t.resource("PublicRouteTable", "AWS::EC2::RouteTable", {"VpcId": ref("Vpc")}, **cond)
    t.resource(
        "PublicDefaultRoute",
        "AWS::EC2::Route",
        {
            "RouteTableId": ref("PublicRouteTable"),
            "DestinationCidrBlock": "0.0.0.0/0",
            "GatewayId": ref("InternetGateway"),
        },
        DependsOn="GatewayAttachment",
        **cond,
    )
    for index in range(2):
        t.resource(
            f"Public{index}RouteAssociation",
            "AWS::EC2::SubnetRouteTableAssociation",
            {"RouteTableId": ref("PublicRouteTable"), "SubnetId": ref(f"Public{index}Subnet")},
            **cond,
        )
    t.resource("NatAddress", "AWS::EC2::EIP", {"Domain": "vpc"}, DependsOn="GatewayAttachment", **cond)
    t.resource(
        "NatGateway",
        "AWS::EC2::NatGateway",
        {"AllocationId": getatt("NatAddress", "AllocationId"), "SubnetId": ref("Public0Subnet")},
        **cond,
    )
    t.resource("PrivateRouteTable", "AWS::EC2::RouteTable", {"VpcId": ref("Vpc")}, **cond)
    t.resource(
        "PrivateDefaultRoute",
        "AWS::EC2::Route",
        {
            "RouteTableId": ref("PrivateRouteTable"),
            "DestinationCidrBlock": "0.0.0.0/0",
            "NatGatewayId": ref("NatGateway"),
        },
        **cond,
    )
    for index in range(2):
        t.resource(
            f"Private{index}RouteAssociation",
            "AWS::EC2::SubnetRouteTableAssociation",
            {"RouteTableId": ref("PrivateRouteTable"), "SubnetId": ref(f"Private{index}Subnet")},
            **cond,
        )
    t.resource(
        "S3GatewayEndpoint",
        "AWS::EC2::VPCEndpoint",
        {
            "VpcId": ref("Vpc"),
            "ServiceName": sub("com.amazonaws.${AWS::Region}.s3"),
            "VpcEndpointType": "Gateway",
            "RouteTableIds": [ref("PrivateRouteTable")],
        },
        **cond,
    )


def vpc_id() -> dict[str, Any]:
    return if_("CreateVpc", ref("Vpc"), ref("ExistingVpcId"))


def private_subnet(index: int) -> dict[str, Any]:
    return if_(f"UseExistingSubnet{index}", ref(f"ExistingPrivateSubnet{index}"), ref(f"Private{index}Subnet"))


def network_ready() -> dict[str, Any]:
    """A value that depends on the NAT route when the stack makes the VPC."""
    return if_("CreateVpc", ref("PrivateDefaultRoute"), "existing-vpc")


# ---------------------------------------------------------------- EFS (Lambda variant)


def efs(t: Template) -> None:
    """Encrypted file system, TLS-only policy, mount targets, the models access point."""
    t.resource(
        "FunctionSecurityGroup",
        "AWS::EC2::SecurityGroup",
        {
            "GroupDescription": "Super-resolution functions: HTTPS/HTTP out for url inputs and model downloads",
            "VpcId": vpc_id(),
            "SecurityGroupEgress": [
                {
                    "IpProtocol": "tcp",
                    "FromPort": 443,
                    "ToPort": 443,
                    "CidrIp": "0.0.0.0/0",
                    "Description": "HTTPS: url inputs, model download, AWS APIs",
                },
                {
                    "IpProtocol": "tcp",
                    "FromPort": 80,
                    "ToPort": 80,
                    "CidrIp": "0.0.0.0/0",
                    "Description": "HTTP: url inputs (the contract allows http://)",
                },
            ],
        },
    )
    t.resource(
        "FileSystemSecurityGroup",
        "AWS::EC2::SecurityGroup",
        {
            "GroupDescription": "Model file system: NFS from the functions only",
            "VpcId": vpc_id(),
            "SecurityGroupIngress": [
                {
                    "IpProtocol": "tcp",
                    "FromPort": 2049,
                    "ToPort": 2049,
                    "SourceSecurityGroupId": ref("FunctionSecurityGroup"),
                    "Description": "NFS from the functions",
                },
            ],
            "SecurityGroupEgress": [
                {
                    "IpProtocol": "tcp",
                    "FromPort": 2049,
                    "ToPort": 2049,
                    "DestinationSecurityGroupId": ref("FunctionSecurityGroup"),
                    "Description": "NFS traffic with the functions only (replaces allow-all egress)",
                },
            ],
        },
    )
    t.resource(
        "FunctionToFileSystemEgress",
        "AWS::EC2::SecurityGroupEgress",
        {
            "GroupId": ref("FunctionSecurityGroup"),
            "IpProtocol": "tcp",
            "FromPort": 2049,
            "ToPort": 2049,
            "DestinationSecurityGroupId": ref("FileSystemSecurityGroup"),
            "Description": "NFS to the model file system",
        },
    )
    t.resource(
        "FileSystem",
        "AWS::EFS::FileSystem",
        {
            "Encrypted": True,
            "PerformanceMode": "generalPurpose",
            "ThroughputMode": "elastic",
            "BackupPolicy": {"Status": "DISABLED"},
            "FileSystemTags": [{"Key": "Name", "Value": sub("${AWS::StackName}-models")}],
            "FileSystemPolicy": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "TlsOnly",
                        "Effect": "Deny",
                        "Principal": {"AWS": "*"},
                        "Action": [
                            "elasticfilesystem:ClientMount",
                            "elasticfilesystem:ClientWrite",
                            "elasticfilesystem:ClientRootAccess",
                        ],
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    }
                ],
            },
        },
        DeletionPolicy="Delete",
        UpdateReplacePolicy="Delete",
    )
    for index in range(2):
        t.resource(
            f"MountTarget{index}",
            "AWS::EFS::MountTarget",
            {
                "FileSystemId": ref("FileSystem"),
                "SubnetId": private_subnet(index),
                "SecurityGroups": [ref("FileSystemSecurityGroup")],
            },
        )
    t.resource(
        "ModelsAccessPoint",
        "AWS::EFS::AccessPoint",
        {
            "FileSystemId": ref("FileSystem"),
            "PosixUser": {"Uid": "1000", "Gid": "1000"},
            "RootDirectory": {
                "Path": "/superres-models",
                "CreationInfo": {"OwnerUid": "1000", "OwnerGid": "1000", "Permissions": "755"},
            },
            "AccessPointTags": [{"Key": "Name", "Value": sub("${AWS::StackName}-models")}],
        },
    )
    t.output("FileSystemId", "EFS file system holding the model files", ref("FileSystem"))


# ARNs spelled out rather than GetAtt: same value, and moto's EFS models have no GetAtt.
FILE_SYSTEM_ARN = sub(
    "arn:${AWS::Partition}:elasticfilesystem:${AWS::Region}:${AWS::AccountId}:file-system/${FileSystem}"
)
ACCESS_POINT_ARN = sub(
    "arn:${AWS::Partition}:elasticfilesystem:${AWS::Region}:${AWS::AccountId}:access-point/${ModelsAccessPoint}"
)


def efs_statement(*actions: str) -> dict[str, Any]:
    return statement(
        list(actions),
        FILE_SYSTEM_ARN,
        Condition={"StringEquals": {"elasticfilesystem:AccessPointArn": ACCESS_POINT_ARN}},
    )


def vpc_config() -> dict[str, Any]:
    return {"SecurityGroupIds": [ref("FunctionSecurityGroup")], "SubnetIds": [private_subnet(0), private_subnet(1)]}


def file_system_config() -> list[dict[str, Any]]:
    return [{"Arn": ACCESS_POINT_ARN, "LocalMountPath": EFS_MOUNT}]


# ---------------------------------------------------------------- model staging (Lambda variant)


def model_entry(spec: ModelSpec) -> dict[str, Any]:
    return {
        "Name": spec.name,
        "Filename": spec.filename,
        "Url": spec.url,
        "Size": str(spec.size),
        "Sha256": spec.sha256,
    }


def model_stager(t: Template) -> None:
    """A custom resource that puts the chosen model files onto EFS, verified by sha256."""
    group = "Service"
    t.parameter(
        group,
        "ModelMirrorBucket",
        "Copy models from this bucket (optional)",
        Type="String",
        Default="",
        AllowedPattern="^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        Description=(
            "Empty: download the official files (GitHub releases). Else copy <prefix><filename> "
            "from this bucket (e.g. in the China regions); sizes and sha256 are checked either way."
        ),
    )
    t.parameter(
        group,
        "ModelMirrorPrefix",
        "Key prefix in the mirror bucket",
        Type="String",
        Default="models/",
        AllowedPattern="^[A-Za-z0-9!_.*'()/-]*$",
        Description="Prefix of the model files in the mirror bucket, e.g. models/.",
    )
    t.conditions["HasModelMirror"] = {"Fn::Not": [{"Fn::Equals": [ref("ModelMirrorBucket"), ""]}]}
    t.conditions["FaceOn"] = {"Fn::Equals": [ref("FaceEnhancement"), "true"]}
    for name in X4_MODELS[:-1]:
        t.conditions[f"ModelIs{alnum(name)}"] = {"Fn::Equals": [ref("ModelName"), name]}
    chosen: Any = model_entry(MODELS[X4_MODELS[-1]])
    for name in reversed(X4_MODELS[:-1]):
        chosen = if_(f"ModelIs{alnum(name)}", model_entry(MODELS[name]), chosen)
    models = [chosen, *(if_("FaceOn", model_entry(MODELS[name]), NO_VALUE) for name in FACE_MODELS)]

    log_group(t, "StagerLogGroup")
    function_role(
        t,
        "StagerRole",
        "StagerLogGroup",
        policy("write-models", efs_statement("elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite")),
        vpc=True,
    )
    t.resource(
        "ModelMirrorPolicy",
        "AWS::IAM::Policy",
        {
            **policy(
                "read-model-mirror",
                statement(
                    ["s3:GetObject"], sub("arn:${AWS::Partition}:s3:::${ModelMirrorBucket}/${ModelMirrorPrefix}*")
                ),
            ),
            "Roles": [ref("StagerRole")],
        },
        Condition="HasModelMirror",
    )
    t.resource(
        "StagerFunction",
        "AWS::Lambda::Function",
        zip_function(
            "Stages the model files onto EFS for the stack (custom resource)",
            "efs_model_stager.handler",
            "efs-model-stager.zip",
            "StagerRole",
            "StagerLogGroup",
            1024,
            900,
            VpcConfig=vpc_config(),
            FileSystemConfigs=file_system_config(),
            Environment={"Variables": {"STAGER_TARGET_DIR": EFS_MOUNT}},
        ),
        DependsOn=["MountTarget0", "MountTarget1"],
        Metadata=skip(*LAMBDA_SKIPS),
    )
    t.resource(
        "ModelFiles",
        "Custom::EfsModelFiles",
        {
            "ServiceToken": getatt("StagerFunction", "Arn"),
            # CloudFormation gives up after this many seconds even if no answer ever comes.
            "ServiceTimeout": 960,
            "Models": models,
            "MirrorBucket": ref("ModelMirrorBucket"),
            "MirrorPrefix": ref("ModelMirrorPrefix"),
            # Both values only order the work: the NAT route and the S3 read policy come first.
            "NetworkReady": network_ready(),
            "MirrorReadable": if_("HasModelMirror", ref("ModelMirrorPolicy"), "no-mirror"),
        },
    )
    t.output("ModelFilesStaged", "Model files on EFS (custom resource)", getatt("ModelFiles", "Files"))


# ---------------------------------------------------------------- SageMaker endpoint


def container_model(kind: str, environment: dict[str, Any]) -> dict[str, Any]:
    """The SageMaker model: this variant's image, the model artifact, the service settings."""
    return {
        "ExecutionRoleArn": getatt("EndpointRole", "Arn"),
        "EnableNetworkIsolation": True,
        "PrimaryContainer": {
            "Image": image_uri(f"sagemaker-{kind}"),
            "ModelDataUrl": sub(
                "s3://${AssetBucket}/${KeyPrefix}/sagemaker-" + kind + "-model.tar.gz", ASSET_VARIABLES
            ),
            "Environment": {
                "SUPERRES_VARIANT": "gpu",
                "SUPERRES_MODEL_X4": ref("ModelName"),
                "SUPERRES_FACE_ENABLED": ref("FaceEnhancement"),
                **environment,
            },
        },
    }


def sagemaker_endpoint(t: Template, kind: str) -> str:
    """Model, endpoint config, endpoint, target-tracking autoscaling."""
    group = "SageMaker endpoint"
    t.parameter(
        group,
        "deployInstanceType",
        "Instance type",
        Type="String",
        Default=INSTANCE_TYPES[kind][0],
        AllowedValues=INSTANCE_TYPES[kind],
        Description="SageMaker instance type of the endpoint.",
    )
    t.parameter(
        group,
        "MinInstances",
        "Minimum instances",
        Type="Number",
        Default=1,
        MinValue=1,
        Description="Instances always running (billed by the hour, also at rest).",
    )
    t.parameter(
        group,
        "MaxInstances",
        "Maximum instances",
        Type="Number",
        Default=2,
        MinValue=1,
        Description="Upper bound for autoscaling.",
    )
    t.parameter(
        group,
        "TargetInvocationsPerInstance",
        "Scaling target (invocations/instance/minute)",
        Type="Number",
        Default=30,
        MinValue=1,
        Description="Target tracking on SageMakerVariantInvocationsPerInstance.",
    )
    repository = f"sagemaker-{kind}"
    t.resource(
        "EndpointRole",
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": assume_role("sagemaker.amazonaws.com"),
            "Policies": [
                policy(
                    "model-image-logs",
                    statement(
                        ["s3:GetObject"],
                        sub("arn:${AWS::Partition}:s3:::${AssetBucket}/${KeyPrefix}/*", ASSET_VARIABLES),
                    ),
                    statement(
                        ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                        sub(
                            "arn:${AWS::Partition}:ecr:${AWS::Region}:${EcrAccount}:repository/${SolutionName}-"
                            + repository,
                            ASSET_VARIABLES,
                        ),
                    ),
                    # ECR issues registry tokens only on "*".
                    statement(["ecr:GetAuthorizationToken"], "*"),
                    statement(
                        ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                        sub(
                            "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/aws/sagemaker/Endpoints/*"
                        ),
                    ),
                    statement(
                        ["cloudwatch:PutMetricData"],
                        "*",
                        Condition={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", "AWS/SageMaker"]}},
                    ),
                )
            ],
        },
    )
    t.resource("Model", "AWS::SageMaker::Model", container_model(kind, {}))
    t.resource(
        "EndpointConfig",
        "AWS::SageMaker::EndpointConfig",
        {
            "ProductionVariants": [
                {
                    "VariantName": VARIANT_NAME,
                    "ModelName": getatt("Model", "ModelName"),
                    "InstanceType": ref("deployInstanceType"),
                    "InitialInstanceCount": ref("MinInstances"),
                    "InitialVariantWeight": 1,
                }
            ]
        },
    )
    t.resource(
        "Endpoint", "AWS::SageMaker::Endpoint", {"EndpointConfigName": getatt("EndpointConfig", "EndpointConfigName")}
    )
    t.resource(
        "ScalableTarget",
        "AWS::ApplicationAutoScaling::ScalableTarget",
        {
            "ServiceNamespace": "sagemaker",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "ResourceId": sub(f"endpoint/${{Endpoint.EndpointName}}/variant/{VARIANT_NAME}"),
            "MinCapacity": ref("MinInstances"),
            "MaxCapacity": ref("MaxInstances"),
        },
    )
    t.resource(
        "ScalingPolicy",
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "PolicyName": sub("${AWS::StackName}-invocations"),
            "PolicyType": "TargetTrackingScaling",
            "ScalingTargetId": ref("ScalableTarget"),
            "TargetTrackingScalingPolicyConfiguration": {
                "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
                "TargetValue": ref("TargetInvocationsPerInstance"),
                "ScaleInCooldown": 300,
                "ScaleOutCooldown": 60,
            },
        },
    )
    t.output("EndpointName", "SageMaker endpoint", getatt("Endpoint", "EndpointName"))
    return "Endpoint"


# ---------------------------------------------------------------- results and jobs

#: The key prefixes the service writes (IAM grants exactly these).
RESULTS_PREFIX = ServiceSettings.model_fields["output_prefix"].default
JOB_INPUT_PREFIX = INPUT_PREFIX
#: The worker runs up to Lambda's limit; SQS hides a message longer than that.
WORKER_TIMEOUT = 900


def output_objects(prefix: str) -> dict[str, Any]:
    return sub("${OutputBucket.Arn}/" + prefix + "*")


def output_bucket(t: Template) -> None:
    """The bucket of "output": "s3" results and job results: encrypted, private, TLS only,
    every object expired after ResultExpiryDays."""
    group = "Results and jobs"
    t.parameter(
        group,
        "ResultExpiryDays",
        "Days results are kept",
        Type="Number",
        Default=7,
        MinValue=1,
        MaxValue=3650,
        Description="The output bucket deletes every result (and job input) this many days after it was written.",
    )
    t.parameter(
        group,
        "ResultUrlSeconds",
        "Presigned URL lifetime (seconds)",
        Type="Number",
        Default=3600,
        MinValue=60,
        MaxValue=43200,
        Description=(
            "How long the presigned GET URL of a result works. It is signed with the function's "
            "temporary credentials, so it never outlives them (a few hours at most)."
        ),
    )
    t.resource(
        "OutputBucket",
        "AWS::S3::Bucket",
        {
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": True}
                ]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            "LifecycleConfiguration": {
                "Rules": [
                    {
                        "Id": "expire-results",
                        "Status": "Enabled",
                        "ExpirationInDays": ref("ResultExpiryDays"),
                        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                    }
                ]
            },
        },
        # Results are disposable and expire anyway; a stack deletion must not fail on them,
        # but CloudFormation cannot empty a bucket: Retain leaves it to expire and be deleted.
        DeletionPolicy="Retain",
        UpdateReplacePolicy="Retain",
        Metadata=skip(
            (
                "CKV_AWS_18",
                "Results are written by the stack's own functions and read through presigned URLs; "
                "the API access log already records every request, and a second logging bucket "
                "would cost at rest for no extra trace.",
            ),
            (
                "CKV_AWS_21",
                "Every object is a disposable result that the lifecycle rule expires; versioning would "
                "keep deleted results and bill for them.",
            ),
        ),
    )
    t.resource(
        "OutputBucketPolicy",
        "AWS::S3::BucketPolicy",
        {
            "Bucket": ref("OutputBucket"),
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "TlsOnly",
                        "Effect": "Deny",
                        "Principal": {"AWS": "*"},
                        "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"],
                        "Resource": [getatt("OutputBucket", "Arn"), output_objects("")],
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    }
                ],
            },
        },
    )
    t.output("OutputBucketName", "Bucket of results answered as presigned URLs", ref("OutputBucket"))


def output_env() -> dict[str, Any]:
    return {"SUPERRES_OUTPUT_BUCKET": ref("OutputBucket"), "SUPERRES_OUTPUT_URL_SECONDS": ref("ResultUrlSeconds")}


def output_statement() -> dict[str, Any]:
    """Write a result, and read it (a presigned URL acts with its signer's permissions)."""
    return statement(["s3:PutObject", "s3:GetObject"], output_objects(RESULTS_PREFIX))


TABLE_ARN = getatt("JobTable", "Arn")
QUEUE_ARN = getatt("JobQueue", "Arn")


def job_table_and_topic(t: Template, condition: str | None = None) -> None:
    """The jobs' records and the topic told of every finished job (both job engines)."""
    when = {"Condition": condition} if condition else {}
    t.resource(
        "JobTable",
        "AWS::DynamoDB::Table",
        {
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "TimeToLiveSpecification": {"AttributeName": "expires", "Enabled": True},
            "SSESpecification": {"SSEEnabled": True},
        },
        DeletionPolicy="Delete",
        UpdateReplacePolicy="Delete",
        Metadata=skip(
            (
                "CKV_AWS_28",
                "Job records are transient (a TTL deletes them after days) and hold no result, only "
                "its URL; point-in-time recovery would bill for restoring what expires anyway.",
            ),
            (
                "CKV_AWS_119",
                "Encrypted with the AWS managed DynamoDB key; a customer managed key adds $1/month and "
                "a key policy for records that hold no image data.",
            ),
        ),
        **when,
    )
    t.resource(
        "JobTopic",
        "AWS::SNS::Topic",
        {"DisplayName": "superres jobs", "KmsMasterKeyId": AWS_SNS_KEY},
        **when,
    )
    t.output(
        "JobTopicArn",
        "SNS topic told of every finished job (subscribe a queue, a function or an HTTPS endpoint)",
        ref("JobTopic"),
        condition,
    )
    t.output("JobTableName", "DynamoDB table of the jobs", ref("JobTable"), condition)


AWS_SNS_KEY = sub("arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:alias/aws/sns")


SQS_ENCRYPTION = skip(
    (
        "CKV_AWS_27",
        "Encrypted at rest with SQS-managed keys (SqsManagedSseEnabled), which checkov does not "
        "recognise; a KMS key would bill every message for ids that are not secret.",
    )
)
NO_VPC_SKIP = (
    "CKV_AWS_117",
    "The function reaches only public AWS APIs and the caller's http(s) urls; a VPC "
    "would need a NAT gateway (billed hourly at rest) and protect nothing.",
)


def job_resources(t: Template) -> None:
    """Jobs of the Lambda variant: table, topic, work queue with a dead-letter queue."""
    job_table_and_topic(t)
    t.resource(
        "JobDeadLetterQueue",
        "AWS::SQS::Queue",
        {"MessageRetentionPeriod": 1209600, "SqsManagedSseEnabled": True},
        Metadata=SQS_ENCRYPTION,
    )
    t.resource(
        "JobQueue",
        "AWS::SQS::Queue",
        {
            # Longer than the worker may run, so a job being computed is never handed out twice.
            "VisibilityTimeout": WORKER_TIMEOUT + 60,
            "MessageRetentionPeriod": 345600,
            "SqsManagedSseEnabled": True,
            "RedrivePolicy": {"deadLetterTargetArn": getatt("JobDeadLetterQueue", "Arn"), "maxReceiveCount": 3},
        },
        Metadata=SQS_ENCRYPTION,
    )
    dead_letter_alarm(t, "JobDeadLetterAlarm", "JobDeadLetterQueue", "Job messages the worker failed on three times")
    t.output("JobDeadLetterQueueUrl", "Jobs whose worker failed three times", ref("JobDeadLetterQueue"))


def job_env() -> dict[str, Any]:
    return {
        "SUPERRES_JOB_TABLE": ref("JobTable"),
        "SUPERRES_JOB_QUEUE_URL": ref("JobQueue"),
        "SUPERRES_JOB_TOPIC_ARN": ref("JobTopic"),
    }


ASYNC_CONDITION = "UseAsyncJobs"
#: Where the asynchronous endpoint reads requests and writes answers (the service's prefixes).
ASYNC_PREFIXES = {"in": ASYNC_INPUT_PREFIX, "out": ASYNC_OUTPUT_PREFIX, "failed": ASYNC_FAILURE_PREFIX}


def async_jobs(t: Template, kind: str) -> None:
    """GPU/Inf1 jobs on SageMaker Asynchronous Inference, all behind the AsyncJobs parameter:
    a second endpoint of the same model that scales to zero when idle, its notification
    topic, the function that finishes jobs from it, the job table and the kit's topic."""
    t.parameter(
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
    t.conditions[ASYNC_CONDITION] = {"Fn::Equals": [ref("AsyncJobs"), "true"]}
    when = {"Condition": ASYNC_CONDITION}
    job_table_and_topic(t, ASYNC_CONDITION)
    t.resource(
        "InferenceEventsTopic",
        "AWS::SNS::Topic",
        {"DisplayName": "superres async inference results", "KmsMasterKeyId": AWS_SNS_KEY},
        **when,
    )
    # No time budget inside (SageMaker's invocation timeout, an hour, bounds it) and answers
    # up to the 1 GB an asynchronous output may hold.
    t.resource(
        "AsyncModel",
        "AWS::SageMaker::Model",
        container_model(
            kind,
            {
                "SUPERRES_TIME_BUDGET_SECONDS": "0",
                "SUPERRES_MAX_RESPONSE_BYTES": "1000000000",
                "SUPERRES_MAX_REQUEST_BYTES": "16000000",
            },
        ),
        **when,
    )
    bucket_path = "s3://${OutputBucket}/"
    t.resource(
        "AsyncEndpointConfig",
        "AWS::SageMaker::EndpointConfig",
        {
            "ProductionVariants": [
                {
                    "VariantName": VARIANT_NAME,
                    "ModelName": getatt("AsyncModel", "ModelName"),
                    "InstanceType": ref("deployInstanceType"),
                    "InitialInstanceCount": 1,
                    "InitialVariantWeight": 1,
                }
            ],
            "AsyncInferenceConfig": {
                "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 1},
                "OutputConfig": {
                    "S3OutputPath": sub(bucket_path + ASYNC_PREFIXES["out"]),
                    "S3FailurePath": sub(bucket_path + ASYNC_PREFIXES["failed"]),
                    "NotificationConfig": {
                        "SuccessTopic": ref("InferenceEventsTopic"),
                        "ErrorTopic": ref("InferenceEventsTopic"),
                    },
                },
            },
        },
        **when,
    )
    t.resource(
        "AsyncEndpoint",
        "AWS::SageMaker::Endpoint",
        {"EndpointConfigName": getatt("AsyncEndpointConfig", "EndpointConfigName")},
        **when,
    )
    t.resource(
        "AsyncEndpointPolicy",
        "AWS::IAM::Policy",
        {
            **policy(
                "async-inference",
                statement(["s3:GetObject"], output_objects(ASYNC_PREFIXES["in"])),
                statement(
                    ["s3:PutObject"], [output_objects(ASYNC_PREFIXES["out"]), output_objects(ASYNC_PREFIXES["failed"])]
                ),
                statement(["sns:Publish"], ref("InferenceEventsTopic")),
            ),
            "Roles": [ref("EndpointRole")],
        },
        **when,
    )
    # Scale to zero when idle; the backlog wakes it (target tracking cannot leave zero by itself).
    resource_id = sub(f"endpoint/${{AsyncEndpoint.EndpointName}}/variant/{VARIANT_NAME}")
    t.resource(
        "AsyncScalableTarget",
        "AWS::ApplicationAutoScaling::ScalableTarget",
        {
            "ServiceNamespace": "sagemaker",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "ResourceId": resource_id,
            "MinCapacity": 0,
            "MaxCapacity": ref("MaxInstances"),
        },
        **when,
    )
    endpoint_dimension = [{"Name": "EndpointName", "Value": getatt("AsyncEndpoint", "EndpointName")}]
    t.resource(
        "AsyncBacklogScalingPolicy",
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "PolicyName": sub("${AWS::StackName}-async-backlog"),
            "PolicyType": "TargetTrackingScaling",
            "ScalingTargetId": ref("AsyncScalableTarget"),
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
        **when,
    )
    t.resource(
        "AsyncWakeUpPolicy",
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "PolicyName": sub("${AWS::StackName}-async-wake-up"),
            "PolicyType": "StepScaling",
            "ScalingTargetId": ref("AsyncScalableTarget"),
            "StepScalingPolicyConfiguration": {
                "AdjustmentType": "ChangeInCapacity",
                "Cooldown": 300,
                "MetricAggregationType": "Maximum",
                "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
            },
        },
        **when,
    )
    t.resource(
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
            "AlarmActions": [ref("AsyncWakeUpPolicy")],
        },
        **when,
    )
    # The function that finishes jobs from SageMaker's notifications.
    log_group(t, "JobEventsLogGroup")
    t.resources["JobEventsLogGroup"]["Condition"] = ASYNC_CONDITION
    t.resource(
        "JobEventsDeadLetterQueue",
        "AWS::SQS::Queue",
        {"MessageRetentionPeriod": 1209600, "SqsManagedSseEnabled": True},
        Metadata=SQS_ENCRYPTION,
        **when,
    )
    dead_letter_alarm(
        t,
        "JobEventsDeadLetterAlarm",
        "JobEventsDeadLetterQueue",
        "SageMaker notifications JobEvents could not handle",
        ASYNC_CONDITION,
    )
    function_role(
        t,
        "JobEventsRole",
        "JobEventsLogGroup",
        policy(
            "finish-jobs",
            output_statement(),
            statement(
                ["s3:GetObject"], [output_objects(ASYNC_PREFIXES["out"]), output_objects(ASYNC_PREFIXES["failed"])]
            ),
            statement(["dynamodb:GetItem", "dynamodb:PutItem"], TABLE_ARN),
            statement(["sns:Publish"], ref("JobTopic")),
            statement(["sqs:SendMessage"], getatt("JobEventsDeadLetterQueue", "Arn")),
        ),
        vpc=False,
    )
    t.resources["JobEventsRole"]["Condition"] = ASYNC_CONDITION
    t.resource(
        "JobEvents",
        "AWS::Lambda::Function",
        zip_function(
            "Asynchronous jobs: SageMaker's results -> result URL, job record, notification",
            "lambda_sr.job_events.handler",
            "invoke-endpoint.zip",
            "JobEventsRole",
            "JobEventsLogGroup",
            # The answer of a 7680x4320 result is tens of MB of base64 JSON, decoded in memory.
            3008,
            120,
            DeadLetterConfig={"TargetArn": getatt("JobEventsDeadLetterQueue", "Arn")},
            Environment={
                "Variables": {
                    "SUPERRES_VARIANT": "gpu",
                    **output_env(),
                    "SUPERRES_JOB_TABLE": ref("JobTable"),
                    "SUPERRES_JOB_TOPIC_ARN": ref("JobTopic"),
                }
            },
        ),
        Metadata=skip(*LAMBDA_SKIPS[1:], NO_VPC_SKIP),
        **when,
    )
    t.resource(
        "JobEventsSubscription",
        "AWS::SNS::Subscription",
        {"TopicArn": ref("InferenceEventsTopic"), "Protocol": "lambda", "Endpoint": getatt("JobEvents", "Arn")},
        **when,
    )
    t.resource(
        "JobEventsPermission",
        "AWS::Lambda::Permission",
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": getatt("JobEvents", "Arn"),
            "Principal": "sns.amazonaws.com",
            "SourceArn": ref("InferenceEventsTopic"),
        },
        **when,
    )
    # The invoke-endpoint function may start jobs: record them, store their input, invoke.
    t.resource(
        "AsyncJobsPolicy",
        "AWS::IAM::Policy",
        {
            **policy(
                "start-async-jobs",
                statement(["sagemaker:InvokeEndpointAsync"], ref("AsyncEndpoint")),
                statement(["s3:PutObject"], output_objects(ASYNC_PREFIXES["in"])),
                statement(["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"], TABLE_ARN),
            ),
            "Roles": [ref("FunctionRole")],
        },
        **when,
    )
    t.output(
        "AsyncEndpointName",
        "SageMaker asynchronous endpoint of the jobs",
        getatt("AsyncEndpoint", "EndpointName"),
        ASYNC_CONDITION,
    )


def async_jobs_env() -> dict[str, Any]:
    """The invoke-endpoint function's job settings: set only with AsyncJobs."""
    return {
        "SUPERRES_JOB_TABLE": if_(ASYNC_CONDITION, ref("JobTable"), NO_VALUE),
        "SUPERRES_JOB_TOPIC_ARN": if_(ASYNC_CONDITION, ref("JobTopic"), NO_VALUE),
        "SUPERRES_ASYNC_ENDPOINT_NAME": if_(ASYNC_CONDITION, getatt("AsyncEndpoint", "EndpointName"), NO_VALUE),
    }


# ---------------------------------------------------------------- templates


def lambda_efs_template() -> dict[str, Any]:
    t = Template(
        "AI Solution Kit - Image Super-Resolution (Lambda + EFS, CPU), version %%VERSION%%: "
        "API Gateway -> Lambda container in a VPC -> model files on EFS."
    )
    common_parameters(t, default_model="realesr-general-x4v3", default_face=False)
    vpc(t)
    efs(t)
    model_stager(t)
    output_bucket(t)
    job_resources(t)
    read_models = policy("read-models", efs_statement("elasticfilesystem:ClientMount"))
    log_group(t, "FunctionLogGroup")
    function_role(
        t,
        "FunctionRole",
        "FunctionLogGroup",
        read_models,
        policy(
            "results-and-jobs",
            output_statement(),
            statement(["s3:PutObject"], output_objects(JOB_INPUT_PREFIX)),
            statement(["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"], TABLE_ARN),
            statement(["sqs:SendMessage"], QUEUE_ARN),
        ),
        vpc=True,
    )
    log_group(t, "WorkerLogGroup")
    function_role(
        t,
        "WorkerRole",
        "WorkerLogGroup",
        read_models,
        policy(
            "run-jobs",
            output_statement(),
            statement(["s3:GetObject"], output_objects(JOB_INPUT_PREFIX)),
            statement(["dynamodb:GetItem", "dynamodb:PutItem"], TABLE_ARN),
            statement(
                ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"],
                QUEUE_ARN,
            ),
            statement(["sns:Publish"], ref("JobTopic")),
        ),
        vpc=True,
    )
    allowed_buckets_policy(t, "FunctionRole", "WorkerRole")

    def cpu_function(description: str, command: str, role: str, log: str, timeout: int) -> dict[str, Any]:
        """The API function and the job worker: one image, one environment, two entry points."""
        return {
            "Description": description,
            "PackageType": "Image",
            "Code": {"ImageUri": image_uri("lambda")},
            "ImageConfig": {"Command": [command]},
            "Role": getatt(role, "Arn"),
            "MemorySize": 10240,
            "Timeout": timeout,
            "TracingConfig": {"Mode": "Active"},
            "LoggingConfig": {"LogFormat": "JSON", "LogGroup": ref(log)},
            "VpcConfig": vpc_config(),
            "FileSystemConfigs": file_system_config(),
            "Environment": {
                "Variables": {
                    "SUPERRES_VARIANT": "lambda",
                    "SUPERRES_MODEL_DIR": EFS_MOUNT,
                    "SUPERRES_MODEL_X4": ref("ModelName"),
                    "SUPERRES_FACE_ENABLED": ref("FaceEnhancement"),
                    "SUPERRES_ALLOWED_S3_BUCKETS": allowed_buckets_env(),
                    **output_env(),
                    **job_env(),
                }
            },
        }

    t.resource(
        "Function",
        "AWS::Lambda::Function",
        cpu_function(
            "POST /resolution on CPU (Real-ESRGAN, models on EFS); POST /jobs, GET /jobs/{id}",
            "lambda_sr.handler.handler",
            "FunctionRole",
            "FunctionLogGroup",
            60,
        ),
        # The model is on EFS before the function (and so the API) exists.
        DependsOn=["ModelFiles"],
        Metadata=skip(*LAMBDA_SKIPS),
    )
    t.resource(
        "Worker",
        "AWS::Lambda::Function",
        cpu_function(
            "Asynchronous jobs: SQS -> compute -> result in S3, record in DynamoDB, SNS notification",
            "lambda_sr.worker.handler",
            "WorkerRole",
            "WorkerLogGroup",
            WORKER_TIMEOUT,
        ),
        DependsOn=["ModelFiles"],
        Metadata=skip(
            (
                "CKV_AWS_116",
                "Invoked by an SQS event source mapping: failed messages go to the queue's own "
                "dead-letter queue (JobDeadLetterQueue); a function DLQ only catches asynchronous invokes.",
            ),
            *LAMBDA_SKIPS[1:],
        ),
    )
    t.resource(
        "WorkerEventSource",
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": QUEUE_ARN,
            "FunctionName": ref("Worker"),
            # One job per invocation: each gets the whole 15 minutes and 10 GB.
            "BatchSize": 1,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        },
    )
    t.output("WorkerName", "The job worker function", ref("Worker"))
    api(t, "Function")
    observability(t, "Function", None)
    t.output("FunctionName", "The resolution function", ref("Function"))
    return t.render()


def sagemaker_template(kind: str) -> dict[str, Any]:
    label = {"gpu": "SageMaker GPU", "inf1": "SageMaker Inf1 (AWS Neuron)"}[kind]
    t = Template(
        f"AI Solution Kit - Image Super-Resolution ({label}), version %%VERSION%%: "
        "API Gateway -> Lambda (validate, invoke endpoint) -> SageMaker real-time endpoint."
    )
    common_parameters(t, default_model="RealESRGAN_x4plus", default_face=kind == "gpu")
    endpoint = sagemaker_endpoint(t, kind)
    output_bucket(t)
    async_jobs(t, kind)
    log_group(t, "FunctionLogGroup")
    function_role(
        t,
        "FunctionRole",
        "FunctionLogGroup",
        policy("invoke-endpoint", statement(["sagemaker:InvokeEndpoint"], ref(endpoint))),
        policy("results", output_statement()),
        vpc=False,
    )
    allowed_buckets_policy(t, "FunctionRole")
    t.resource(
        "Function",
        "AWS::Lambda::Function",
        zip_function(
            "POST /resolution: validates, fetches, invokes the SageMaker endpoint",
            "lambda_sr.invoke_endpoint.handler",
            "invoke-endpoint.zip",
            "FunctionRole",
            "FunctionLogGroup",
            1024,
            30,
            Environment={
                "Variables": {
                    "SUPERRES_VARIANT": "gpu",
                    "SUPERRES_ENDPOINT_NAME": getatt(endpoint, "EndpointName"),
                    "SUPERRES_MODEL_X4": ref("ModelName"),
                    "SUPERRES_FACE_ENABLED": ref("FaceEnhancement"),
                    "SUPERRES_ALLOWED_S3_BUCKETS": allowed_buckets_env(),
                    **output_env(),
                    **async_jobs_env(),
                }
            },
        ),
        Metadata=skip(*LAMBDA_SKIPS, NO_VPC_SKIP),
    )
    api(t, "Function")
    observability(t, "Function", endpoint)
    t.output("FunctionName", "The invoke-endpoint function", ref("Function"))
    return t.render()


def render_all() -> dict[Path, str]:
    built = {"lambda": lambda_efs_template(), "gpu": sagemaker_template("gpu"), "inf1": sagemaker_template("inf1")}
    return {OUTPUTS[kind]: json.dumps(body, indent=2, ensure_ascii=False) + "\n" for kind, body in built.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a committed template differs")
    args = parser.parse_args(argv)
    stale = []
    for path, text in render_all().items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print(f"stale: {', '.join(stale)} (run python templates/build.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
