"""Functions, the EFS model stager, and the SageMaker endpoint."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from . import images, inferentia
from .core import (
    ASSET_BUCKET,
    ASSET_VARIABLES,
    Json,
    Parameter,
    Resource,
    Template,
    asset_key,
    if_,
    skip,
    sub,
)
from .iam import Role, function_role, grant_efs_client, role
from .network import EFS_MOUNT, ModelFileSystem
from .observability import VARIANT_NAME, log_group
from .parameters import X4_MODELS, Common

LAMBDA_PYTHON = "python3.12"
#: The CPU stack's API function and job worker (deployment/package.py builds it).
CPU_SERVICE_ZIP = "cpu-service.zip"
INSTANCE_TYPES = {
    "gpu": ["ml.g4dn.xlarge", "ml.g4dn.2xlarge", "ml.g4dn.8xlarge"],
    "inferentia": inferentia.INSTANCE_TYPES,
}
#: Seconds an asynchronous job waits for the network's compile: within its invocation's hour,
#: with ten minutes left to compute.
NEURON_ASYNC_WARMUP_WAIT = images.ASYNC_SECONDS - 600
INSTANCE_DESCRIPTIONS = {
    "gpu": "SageMaker instance type of the endpoint.",
    "inferentia": (
        "SageMaker instance type of the endpoint: ml.inf2 (Inferentia2, torch-neuronx) or ml.inf1 (Inferentia, "
        "which AWS calls legacy: torch-neuron). Each family is offered in some Regions only; the stack refuses "
        "one its Region does not have, and says where it is."
    ),
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
        "A one-off helper (model staging, job notifications) that runs a few times: reserving "
        "concurrency fails in accounts whose concurrency quota is 10, and nothing calls it in bulk."
    ),
)
WORKER_CONCURRENCY_SKIP = (
    "CKV_AWS_115",
    (
        "The SQS event source's MaximumConcurrency (WorkerMaxConcurrency) caps the worker without "
        "reserving concurrency, which accounts with a quota of 10 cannot do."
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
NO_VPC_GUARD_SKIP = ("lambda_inside_vpc_check", NO_VPC_SKIP[1])
IN_VPC_GUARD_SKIP = (
    "lambda_inside_vpc_check",
    (
        "The function is in a VPC: its subnets are the stack's own or the given ones (Fn::If on "
        "ExistingVpcId), which the rule cannot resolve."
    ),
)


def runs_as(role: Role, log: Resource, memory: Json, timeout: int) -> dict[str, Any]:
    """What every function of the kit states the same way: role, size, X-Ray, JSON logs to ``log``."""
    return {
        "Role": role.resource.arn,
        "MemorySize": memory,
        "Timeout": timeout,
        "TracingConfig": {"Mode": "Active"},
        "LoggingConfig": {"LogFormat": "JSON", "LogGroup": log.ref},
    }


def zip_function(
    description: str, handler: str, archive: str, role: Role, log: Resource, memory: Json, timeout: int, **extra: Any
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
    face = common.face_enhancement.ref if common.face_enhancement else "false"
    return {"SUPERRES_MODEL_X4": common.model_name.ref, "SUPERRES_FACE_ENABLED": face}


# ---------------------------------------------------------------- Lambda stack sizing


#: What a new account may give a function: Lambda's memory quota starts at 3008 MB in new
#: accounts (10240 MB once raised through Service Quotas).
NEW_ACCOUNT_MEMORY_MB = 3008


@dataclass(frozen=True)
class LambdaSizing:
    """The CPU functions' memory (Lambda gives one vCPU per 1769 MB) and the job worker's cap."""

    memory: Parameter
    worker_concurrency: Parameter


def lambda_sizing(t: Template) -> LambdaSizing:
    group = "Service"
    memory = t.number(
        group,
        "LambdaMemorySize",
        "Memory of the CPU functions (MB)",
        default=NEW_ACCOUNT_MEMORY_MB,
        minimum=1024,
        maximum=10240,
        description=(
            "Memory of the API function and the job worker; Lambda gives 1 vCPU per 1769 MB (6 at "
            "10240), so more memory is faster. New accounts may use at most 3008 MB until the quota "
            "is raised (Service Quotas, AWS Lambda)."
        ),
    )
    worker_concurrency = t.number(
        group,
        "WorkerMaxConcurrency",
        "Jobs computed at once (at most)",
        default=2,
        minimum=2,
        maximum=1000,
        description=(
            "The SQS event source's maximum concurrency: the most job workers that run (and bill) at "
            "once; further jobs wait in the queue. 2 is the least SQS allows."
        ),
    )
    return LambdaSizing(memory, worker_concurrency)


# ---------------------------------------------------------------- model staging (Lambda stack)


#: Where the release build puts the converted networks and their manifest (deployment/package.py).
NETWORKS_MANIFEST = "networks/manifest.json"
#: What face enhancement runs (ServiceSettings.face_model and the detector), staged beside the
#: upscaler when the Lambda stack's FaceEnhancement is true.
FACE_NETWORKS = ("GFPGANv1.4", "YuNet")


def model_stager(t: Template, common: Common, storage: ModelFileSystem) -> Resource:
    """A custom resource that puts the chosen network, converted for the CPU runtime by the
    release build, from the asset bucket onto EFS, verified against the release's manifest;
    with FaceEnhancement, the face networks too (and off again, it removes them)."""
    networks: Json = [common.model_name.ref]
    if common.face_enhancement is not None:
        faces_on = t.condition("FaceEnhancementOn", {"Fn::Equals": [common.face_enhancement.ref, "true"]})
        networks = if_(faces_on, [common.model_name.ref, *FACE_NETWORKS], [common.model_name.ref])
    log = log_group(t, common, "StagerLogGroup")
    stager_role = function_role(t, "StagerRole", log, vpc=True)
    grant_efs_client(stager_role.policy("write-models"), storage.file_system, storage.access_point, write=True)
    # One-off: the asset bucket is the release's, not a resource of the stack (no handle).
    stager_role.policy("read-release-networks").allow(
        ["s3:GetObject"],
        sub("arn:${AWS::Partition}:s3:::${AssetBucket}/${KeyPrefix}/networks/*", variables=ASSET_VARIABLES),
    )
    stager = t.add(
        "StagerFunction",
        "AWS::Lambda::Function",
        zip_function(
            "Stages the converted networks onto EFS for the stack (custom resource)",
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
        depends_on=storage.mount_ready,
        Metadata=skip(SYNCHRONOUS_DLQ_SKIP, CONCURRENCY_SKIP, ENVIRONMENT_KEY_SKIP, IN_VPC_GUARD_SKIP),
    )
    model_files = t.add(
        "ModelFiles",
        "Custom::EfsModelFiles",
        {
            "ServiceToken": stager.arn,
            # CloudFormation gives up after this many seconds even if no answer ever comes.
            "ServiceTimeout": 960,
            "Bucket": ASSET_BUCKET,
            "ManifestKey": asset_key(NETWORKS_MANIFEST),
            "Networks": networks,
            # Only orders the work: the route to S3 (NAT route, the private subnets' association
            # with their table) comes first.
            "NetworkReady": storage.network.ready(),
        },
    )
    t.output("ModelFilesStaged", "Network files on EFS (custom resource)", model_files.att("Files"))
    return model_files


# ---------------------------------------------------------------- SageMaker endpoint


@dataclass(frozen=True)
class ModelImage:
    """What a stack's SageMaker models run, and what goes with that choice."""

    #: The image, and its ECR repository (the endpoint role's pull permission).
    uri: Json
    repository: Json
    #: The model artifact among the release's regional assets.
    artifact: str
    #: The model's environment beyond the service settings and the serving toolkit's.
    environment: dict[str, Json]
    #: The production variant's extra properties (the GPU host's driver).
    variant: dict[str, Any]
    #: The models the endpoint serves, as the JSON list SUPERRES_MODELS holds.
    served_models: Json
    #: The asynchronous model's environment beyond the real-time one's.
    async_environment: dict[str, Json]


def model_image(t: Template, common: Common, kind: str, instance_type: Parameter) -> ModelImage:
    """GPU: every x4 network of the artifact on AWS's PyTorch image, on a host whose driver runs
    its CUDA. Inferentia: the stack's one network (the only one compiled for the NeuronCores;
    another would run uncompiled on the instance's CPU) on AWS's Neuron image of the family of
    ``instance_type``, which a rule allows only in the Regions that family is offered in."""
    if kind == "gpu":
        gpu = images.pinned_image()
        t.mappings[images.MAPPING] = images.registry_mapping(gpu)
        return ModelImage(
            images.image_uri(gpu),
            images.repository_arn(gpu),
            "sagemaker-gpu-model.tar.gz",
            {},
            {"InferenceAmiVersion": images.INFERENCE_AMI_VERSION},
            json.dumps(list(X4_MODELS)),
            {},
        )
    offered = inferentia.pinned_availability()
    t.mappings[inferentia.MAPPING] = inferentia.registry_mapping(offered)
    inferentia.region_rules(t, instance_type, offered)
    inf1 = inferentia.inf1_chosen(t, instance_type)
    served = sub('["${ModelName}"]', common.model_name)
    return ModelImage(
        inferentia.chosen(inf1, inferentia.image_uri),
        inferentia.chosen(inf1, inferentia.repository_arn),
        "sagemaker-neuron-model.tar.gz",
        {"SUPERRES_RUNTIME": "neuron", "SUPERRES_MODELS": served},
        {},
        served,
        # A job that reaches an instance still compiling waits for it (its invocation has an
        # hour) instead of failing with the real-time 503.
        {"SUPERRES_NEURON_WARMUP_WAIT_SECONDS": str(NEURON_ASYNC_WARMUP_WAIT)},
    )


@dataclass(frozen=True)
class Endpoint:
    """A SageMaker endpoint, the role its models run with, its image and instance type parameter."""

    endpoint: Resource
    role: Role
    image: ModelImage
    instance_type: Parameter
    max_instances: Parameter


def container_model(
    common: Common, image: ModelImage, endpoint_role: Role, environment: dict[str, Any]
) -> dict[str, Any]:
    """The SageMaker model: AWS's image, our code in the artifact, the service settings and the
    serving toolkit set from the service's limits."""
    settings = {"SUPERRES_VARIANT": "gpu", **model_env(common), **image.environment, **environment}
    return {
        "ExecutionRoleArn": endpoint_role.resource.arn,
        "EnableNetworkIsolation": True,
        "PrimaryContainer": {
            "Image": image.uri,
            "ModelDataUrl": sub("s3://${AssetBucket}/${KeyPrefix}/" + image.artifact, variables=ASSET_VARIABLES),
            "Environment": {**images.toolkit_environment(settings), **settings},
        },
    }


def endpoint_properties(config: Resource, instance_type: Parameter, label: str) -> dict[str, Any]:
    """An endpoint named after its instance type, keeping its variants' capacity on update.

    SageMaker refuses an update that changes the instance type of a variant registered with
    autoscaling ("Update endpoints that use auto scaling", SageMaker developer guide). A new
    name makes CloudFormation replace the endpoint instead: the new one is created (no
    scalable target yet), the scalable target follows it, the old ones go in the cleanup.
    RetainAllVariantProperties keeps the instance count autoscaling reached on any other update
    (else every update resets it to InitialInstanceCount).
    """
    stack_id = {
        "Fn::Select": [0, {"Fn::Split": ["-", {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}]}]
    }
    instance = {"Fn::Join": ["-", {"Fn::Split": [".", instance_type.ref]}]}
    return {
        "EndpointName": sub(label + "-${StackId}-${Instance}", variables={"StackId": stack_id, "Instance": instance}),
        "EndpointConfigName": config.att("EndpointConfigName"),
        "RetainAllVariantProperties": True,
    }


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
        Description=INSTANCE_DESCRIPTIONS[kind],
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
    image = model_image(t, common, kind, instance_type)
    endpoint_role = role(t, "EndpointRole", "sagemaker.amazonaws.com")
    # One-off statements: each is about something the stack does not create (the asset
    # bucket, AWS's image repository, SageMaker's own log groups and metrics).
    basics = endpoint_role.policy("model-image-logs")
    basics.allow(
        ["s3:GetObject"], sub("arn:${AWS::Partition}:s3:::${AssetBucket}/${KeyPrefix}/*", variables=ASSET_VARIABLES)
    )
    basics.allow(
        ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"], image.repository
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
    model = t.add("Model", "AWS::SageMaker::Model", container_model(common, image, endpoint_role, {}))
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
                    **image.variant,
                }
            ]
        },
    )
    endpoint = t.add("Endpoint", "AWS::SageMaker::Endpoint", endpoint_properties(config, instance_type, "superres"))
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
    return Endpoint(endpoint, endpoint_role, image, instance_type, max_instances)
