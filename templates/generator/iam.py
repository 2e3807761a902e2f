"""Roles, their named policies, and the grants that fill them.

A grant takes the policy it writes into (an inline policy of a role, or an ``AWS::IAM::Policy``
attached to roles) and the handle of the resource it is about, and adds one least-privilege
statement: the actions that use of the resource needs, on that resource's ARN only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .core import Condition, Json, Resource, Template, skip, sub


def statement(actions: list[str], resources: Json, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": actions, "Resource": resources, **extra}


@dataclass
class Policy:
    """A named policy document; the grants add statements to it."""

    name: str
    statements: list[dict[str, Any]] = field(default_factory=list)

    def allow(self, actions: list[str], resources: Json, **extra: Any) -> None:
        self.statements.append(statement(actions, resources, **extra))

    def render(self) -> dict[str, Any]:
        # The template keeps this dict, so statements granted later still land in it.
        return {"PolicyName": self.name, "PolicyDocument": {"Version": "2012-10-17", "Statement": self.statements}}


def assume_role(service: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": ["sts:AssumeRole"]}],
    }


@dataclass(frozen=True)
class Role:
    """An IAM role and its inline policies, in the order they were asked for."""

    resource: Resource
    policies: list[dict[str, Any]]

    def policy(self, name: str) -> Policy:
        """A new inline policy of this role."""
        made = Policy(name)
        self.policies.append(made.render())
        return made


def role(t: Template, name: str, service: str, **attributes: Any) -> Role:
    policies: list[dict[str, Any]] = []
    resource = t.add(
        name,
        "AWS::IAM::Role",
        {"AssumeRolePolicyDocument": assume_role(service), "Policies": policies},
        **attributes,
    )
    return Role(resource, policies)


def attached_policy(
    t: Template, name: str, policy_name: str, roles: list[Role], condition: Condition | None = None
) -> tuple[Resource, Policy]:
    """An ``AWS::IAM::Policy`` of its own, for grants that exist only under a condition."""
    made = Policy(policy_name)
    resource = t.add(
        name,
        "AWS::IAM::Policy",
        {**made.render(), "Roles": [each.resource.ref for each in roles]},
        condition=condition,
    )
    return resource, made


def function_role(t: Template, name: str, log: Resource, *, vpc: bool) -> Role:
    """A Lambda function's role: its log group, X-Ray, and (in a VPC) its network interfaces."""
    attributes: dict[str, Any] = {}
    if vpc:
        attributes["Metadata"] = skip(
            (
                "CKV_AWS_111",
                (
                    "Resource '*' only for actions with no resource-level permissions: the EC2 "
                    "network-interface calls Lambda makes for a function in a VPC, and X-Ray segments."
                ),
            )
        )
    made = role(t, name, "lambda.amazonaws.com", **attributes)
    basics = made.policy("logs-traces-network")
    grant_write_logs(basics, log)
    # One-off: X-Ray accepts no resource-level permissions.
    basics.allow(["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "*")
    if vpc:
        # One-off: Lambda creates and deletes the function's network interfaces with these;
        # EC2 grants the Describe call only on "*".
        basics.allow(
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
    return made


# ---------------------------------------------------------------- grants


def _expect(resource: Resource, kind: str) -> None:
    if resource.kind != kind:
        raise TypeError(f"{resource.name} is a {resource.kind}, not a {kind}")


def grant_write_logs(policy: Policy, log: Resource) -> None:
    _expect(log, "AWS::Logs::LogGroup")
    policy.allow(["logs:CreateLogStream", "logs:PutLogEvents"], log.arn)


def objects(bucket: Resource, *prefixes: str) -> Json:
    """The ARN of the bucket's objects under ``prefixes`` (a list when there are several)."""
    _expect(bucket, "AWS::S3::Bucket")
    arns = [sub("${" + bucket.name + ".Arn}/" + prefix + "*", bucket) for prefix in prefixes]
    return arns[0] if len(arns) == 1 else arns


def grant_s3_read(policy: Policy, bucket: Resource, *prefixes: str) -> None:
    policy.allow(["s3:GetObject"], objects(bucket, *prefixes))


def grant_s3_write(policy: Policy, bucket: Resource, *prefixes: str) -> None:
    policy.allow(["s3:PutObject"], objects(bucket, *prefixes))


def grant_s3_read_write(policy: Policy, bucket: Resource, prefix: str) -> None:
    """Write objects and read them back (a presigned URL acts with its signer's permissions)."""
    policy.allow(["s3:PutObject", "s3:GetObject"], objects(bucket, prefix))


def grant_table_read_write(policy: Policy, table: Resource, *, delete: bool) -> None:
    _expect(table, "AWS::DynamoDB::Table")
    actions = ["dynamodb:GetItem", "dynamodb:PutItem"]
    policy.allow([*actions, "dynamodb:DeleteItem"] if delete else actions, table.arn)


def grant_send(policy: Policy, queue: Resource) -> None:
    _expect(queue, "AWS::SQS::Queue")
    policy.allow(["sqs:SendMessage"], queue.arn)


def grant_consume(policy: Policy, queue: Resource) -> None:
    """What an SQS event source mapping needs of its function's role."""
    _expect(queue, "AWS::SQS::Queue")
    policy.allow(
        ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"],
        queue.arn,
    )


def grant_publish(policy: Policy, topic: Resource) -> None:
    _expect(topic, "AWS::SNS::Topic")
    policy.allow(["sns:Publish"], topic.arn)


def grant_invoke_endpoint(policy: Policy, endpoint: Resource, *, asynchronous: bool = False) -> None:
    _expect(endpoint, "AWS::SageMaker::Endpoint")
    policy.allow(["sagemaker:InvokeEndpointAsync" if asynchronous else "sagemaker:InvokeEndpoint"], endpoint.arn)


def grant_efs_client(policy: Policy, file_system: Resource, access_point: Resource, *, write: bool) -> None:
    """Mount (and write) the file system, through this access point only."""
    _expect(file_system, "AWS::EFS::FileSystem")
    _expect(access_point, "AWS::EFS::AccessPoint")
    actions = ["elasticfilesystem:ClientMount"]
    policy.allow(
        [*actions, "elasticfilesystem:ClientWrite"] if write else actions,
        file_system.arn,
        Condition={"StringEquals": {"elasticfilesystem:AccessPointArn": access_point.arn}},
    )
