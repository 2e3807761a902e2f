"""Functions, the EFS model stager, and the SageMaker endpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from superres.manifest import MODELS, ModelSpec

from . import images
from .core import (
    ASSET_BUCKET,
    ASSET_VARIABLES,
    NO_VALUE,
    Parameter,
    Resource,
    Template,
    alnum,
    asset_key,
    if_,
    image_uri,
    not_equals,
    skip,
    sub,
)
from .iam import Role, attached_policy, function_role, grant_efs_client, role
from .network import EFS_MOUNT, ModelFileSystem
from .observability import VARIANT_NAME, log_group
from .parameters import X4_MODELS, Common

LAMBDA_PYTHON = "python3.12"
FACE_MODELS = ("GFPGANv1.4", "YuNet")
INSTANCE_TYPES = {
    "gpu": ["ml.g4dn.xlarge", "ml.g4dn.2xlarge", "ml.g4dn.8xlarge"],
    "inf1": ["ml.inf1.xlarge", "ml.inf1.2xlarge", "ml.inf1.6xlarge"],
}

SYNCHRONOUS_DLQ_SKIP = (
    "CKV_AWS_116",
    (
        "Invoked synchronously by API Gateway: the caller gets the error, a dead-letter queue "
        "never receives synchronous failures."
    ),
)
CONCURRENCY_SKIP = (
    "CKV_AWS_115",
    (
        "Concurrency is bounded by the stage and usage-plan throttles; reserving concurrency "
        "fails in accounts with the default 10-execution quota."
    ),
)
ENVIRONMENT_KEY_SKIP = (
    "CKV_AWS_173",
    (
        "The environment holds no secrets (model name, flags, bucket names); the default "
        "AWS owned key encrypts it at rest."
    ),
)
NO_VPC_SKIP = (
    "CKV_AWS_117",
    (
        "The function reaches only public AWS APIs and the caller's http(s) urls; a VPC "
        "would need a NAT gateway (billed hourly at rest) and protect nothing."
    ),
)


def runs_as(role: Role, log: Resource, memory: int, timeout: int) -> dict[str, Any]:
    """What every function of the kit states the same way: role, size, X-Ray, JSON logs to ``log``."""
    return {
        "Role": role.resource.arn,
        "MemorySize": memory,
        "Timeout": timeout,
        "TracingConfig": {"Mode": "Active"},
        "LoggingConfig": {"LogFormat": "JSON", "LogGroup": log.ref},
    }


def zip_function(
    description: str, handler: str, archive: str, role: Role, log: Resource, memory: int, timeout: int, **extra: Any
) -> dict[str, Any]:
    """Properties of a python zip function of the kit's assets."""
    return {
        "Description": description,
        "Runtime": LAMBDA_PYTHON,
        "Handler": handler,
        "Code": {"S3Bucket": ASSET_BUCKET, "S3Key": asset_key(archive)},
        **runs_as(role, log, memory, timeout),
        **extra,
    }


def model_env(common: Common) -> dict[str, Any]:
    """The network and the face switch, as every host reads them."""
    return {"SUPERRES_MODEL_X4": common.model_name.ref, "SUPERRES_FACE_ENABLED": common.face_enhancement.ref}


# ---------------------------------------------------------------- model staging (Lambda stack)


def model_entry(spec: ModelSpec) -> dict[str, Any]:
    return {
        "Name": spec.name,
        "Filename": spec.filename,
        "Url": spec.url,
        "Size": str(spec.size),
        "Sha256": spec.sha256,
    }


def model_stager(t: Template, common: Common, storage: ModelFileSystem) -> Resource:
    """A custom resource that puts the chosen model files onto EFS, verified by sha256."""
    group = "Service"
    mirror_bucket = t.parameter(
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
    mirror_prefix = t.parameter(
        group,
        "ModelMirrorPrefix",
        "Key prefix in the mirror bucket",
        Type="String",
        Default="models/",
        AllowedPattern="^[A-Za-z0-9!_.*'()/-]*$",
        Description="Prefix of the model files in the mirror bucket, e.g. models/.",
    )
    has_mirror = t.condition("HasModelMirror", not_equals(mirror_bucket.ref, ""))
    face_on = t.condition("FaceOn", {"Fn::Equals": [common.face_enhancement.ref, "true"]})
    model_is = {
        name: t.condition(f"ModelIs{alnum(name)}", {"Fn::Equals": [common.model_name.ref, name]})
        for name in X4_MODELS[:-1]
    }
    chosen: Any = model_entry(MODELS[X4_MODELS[-1]])
    for name in reversed(X4_MODELS[:-1]):
        chosen = if_(model_is[name], model_entry(MODELS[name]), chosen)
    models = [chosen, *(if_(face_on, model_entry(MODELS[name]), NO_VALUE) for name in FACE_MODELS)]

    log = log_group(t, common, "StagerLogGroup")
    stager_role = function_role(t, "StagerRole", log, vpc=True)
    grant_efs_client(stager_role.policy("write-models"), storage.file_system, storage.access_point, write=True)
    mirror_policy, mirror = attached_policy(t, "ModelMirrorPolicy", "read-model-mirror", [stager_role], has_mirror)
    # One-off: a bucket named by parameters, not a resource of the stack (no handle).
    mirror.allow(
        ["s3:GetObject"],
        sub("arn:${AWS::Partition}:s3:::${ModelMirrorBucket}/${ModelMirrorPrefix}*", mirror_bucket, mirror_prefix),
    )
    stager = t.add(
        "StagerFunction",
        "AWS::Lambda::Function",
        zip_function(
            "Stages the model files onto EFS for the stack (custom resource)",
            "efs_model_stager.handler",
            "efs-model-stager.zip",
            stager_role,
            log,
            1024,
            900,
            VpcConfig=storage.vpc_config(),
            FileSystemConfigs=storage.mounts(),
            Environment={"Variables": {"STAGER_TARGET_DIR": EFS_MOUNT}},
        ),
        depends_on=storage.mount_targets,
        Metadata=skip(SYNCHRONOUS_DLQ_SKIP, CONCURRENCY_SKIP, ENVIRONMENT_KEY_SKIP),
    )
    model_files = t.add(
        "ModelFiles",
        "Custom::EfsModelFiles",
        {
            "ServiceToken": stager.arn,
            # CloudFormation gives up after this many seconds even if no answer ever comes.
            "ServiceTimeout": 960,
            "Models": models,
            "MirrorBucket": mirror_bucket.ref,
            "MirrorPrefix": mirror_prefix.ref,
            # Both values only order the work: the NAT route and the S3 read policy come first.
            "NetworkReady": storage.network.ready(),
            "MirrorReadable": if_(has_mirror, mirror_policy.ref, "no-mirror"),
        },
    )
    t.output("ModelFilesStaged", "Model files on EFS (custom resource)", model_files.att("Files"))
    return model_files


# ---------------------------------------------------------------- SageMaker endpoint


@dataclass(frozen=True)
class Endpoint:
    """A SageMaker endpoint, the role its models run with, and its instance type parameter."""

    endpoint: Resource
    role: Role
    instance_type: Parameter
    max_instances: Parameter


def container_model(common: Common, kind: str, endpoint_role: Role, environment: dict[str, Any]) -> dict[str, Any]:
    """The SageMaker model: this variant's image, the model artifact, the service settings.

    GPU: AWS's PyTorch inference image, our code in the artifact, its serving toolkit set
    from the service's limits. Inf1: the kit's own image.
    """
    settings = {"SUPERRES_VARIANT": "gpu", **model_env(common), **environment}
    gpu = kind == "gpu"
    return {
        "ExecutionRoleArn": endpoint_role.resource.arn,
        "EnableNetworkIsolation": True,
        "PrimaryContainer": {
            "Image": images.image_uri(images.pinned_image()) if gpu else image_uri(f"sagemaker-{kind}"),
            "ModelDataUrl": sub(
                "s3://${AssetBucket}/${KeyPrefix}/sagemaker-" + kind + "-model.tar.gz", variables=ASSET_VARIABLES
            ),
            "Environment": {**images.toolkit_environment(settings), **settings} if gpu else settings,
        },
    }


def gpu_driver(kind: str) -> dict[str, Any]:
    """The production variant's host image: for GPU, one whose driver runs the container's CUDA."""
    return {"InferenceAmiVersion": images.INFERENCE_AMI_VERSION} if kind == "gpu" else {}


def sagemaker_endpoint(t: Template, common: Common, kind: str) -> Endpoint:
    """Model, endpoint config, endpoint, target-tracking autoscaling."""
    group = "SageMaker endpoint"
    instance_type = t.parameter(
        group,
        "deployInstanceType",
        "Instance type",
        Type="String",
        Default=INSTANCE_TYPES[kind][0],
        AllowedValues=INSTANCE_TYPES[kind],
        Description="SageMaker instance type of the endpoint.",
    )
    min_instances = t.number(
        group,
        "MinInstances",
        "Minimum instances",
        default=1,
        minimum=1,
        description="Instances always running (billed by the hour, also at rest).",
    )
    max_instances = t.number(
        group,
        "MaxInstances",
        "Maximum instances",
        default=2,
        minimum=1,
        description="Upper bound for autoscaling.",
    )
    target = t.number(
        group,
        "TargetInvocationsPerInstance",
        "Scaling target (invocations/instance/minute)",
        default=30,
        minimum=1,
        description="Target tracking on SageMakerVariantInvocationsPerInstance.",
    )
    endpoint_role = role(t, "EndpointRole", "sagemaker.amazonaws.com")
    # One-off statements: each is about something the stack does not create (the asset
    # bucket, the kit's ECR repository, SageMaker's own log groups and metrics).
    basics = endpoint_role.policy("model-image-logs")
    basics.allow(
        ["s3:GetObject"], sub("arn:${AWS::Partition}:s3:::${AssetBucket}/${KeyPrefix}/*", variables=ASSET_VARIABLES)
    )
    if kind == "gpu":
        t.mappings[images.MAPPING] = images.registry_mapping(images.pinned_image())
    basics.allow(
        ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
        images.repository_arn(images.pinned_image())
        if kind == "gpu"
        else sub(
            "arn:${AWS::Partition}:ecr:${AWS::Region}:${EcrAccount}:repository/${SolutionName}-sagemaker-" + kind,
            variables=ASSET_VARIABLES,
        ),
    )
    # ECR issues registry tokens only on "*".
    basics.allow(["ecr:GetAuthorizationToken"], "*")
    basics.allow(
        ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
        sub("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/aws/sagemaker/Endpoints/*"),
    )
    basics.allow(
        ["cloudwatch:PutMetricData"],
        "*",
        Condition={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", "AWS/SageMaker"]}},
    )
    model = t.add("Model", "AWS::SageMaker::Model", container_model(common, kind, endpoint_role, {}))
    config = t.add(
        "EndpointConfig",
        "AWS::SageMaker::EndpointConfig",
        {
            "ProductionVariants": [
                {
                    "VariantName": VARIANT_NAME,
                    "ModelName": model.att("ModelName"),
                    "InstanceType": instance_type.ref,
                    "InitialInstanceCount": min_instances.ref,
                    "InitialVariantWeight": 1,
                    **gpu_driver(kind),
                }
            ]
        },
    )
    endpoint = t.add("Endpoint", "AWS::SageMaker::Endpoint", {"EndpointConfigName": config.att("EndpointConfigName")})
    scalable = t.add(
        "ScalableTarget",
        "AWS::ApplicationAutoScaling::ScalableTarget",
        {
            "ServiceNamespace": "sagemaker",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "ResourceId": sub(f"endpoint/${{Endpoint.EndpointName}}/variant/{VARIANT_NAME}", endpoint),
            "MinCapacity": min_instances.ref,
            "MaxCapacity": max_instances.ref,
        },
    )
    t.add(
        "ScalingPolicy",
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "PolicyName": sub("${AWS::StackName}-invocations"),
            "PolicyType": "TargetTrackingScaling",
            "ScalingTargetId": scalable.ref,
            "TargetTrackingScalingPolicyConfiguration": {
                "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
                "TargetValue": target.ref,
                "ScaleInCooldown": 300,
                "ScaleOutCooldown": 60,
            },
        },
    )
    t.output("EndpointName", "SageMaker endpoint", endpoint.att("EndpointName"))
    return Endpoint(endpoint, endpoint_role, instance_type, max_instances)
