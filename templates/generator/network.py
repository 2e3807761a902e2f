"""The Lambda stack's network: a new or an existing VPC, and the EFS file system of the models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .core import Condition, Parameter, Resource, Template, if_, not_equals, skip, sub

#: Where the functions mount the models' access point.
EFS_MOUNT = "/mnt/models"


@dataclass(frozen=True)
class Network:
    """The VPC the functions run in: the stack's own (CreateVpc) or the one given."""

    create_vpc: Condition
    existing_vpc: Parameter
    existing_subnets: tuple[Parameter, Parameter]
    use_existing_subnets: tuple[Condition, Condition]
    vpc: Resource
    private_subnets: tuple[Resource, Resource]
    #: The NAT route and the private subnets' associations with its table: until all exist,
    #: a function in a private subnet has no way out.
    private_egress: tuple[Resource, ...]

    @property
    def vpc_id(self) -> dict[str, Any]:
        return if_(self.create_vpc, self.vpc.ref, self.existing_vpc.ref)

    def private_subnet(self, index: int) -> dict[str, Any]:
        return if_(self.use_existing_subnets[index], self.existing_subnets[index].ref, self.private_subnets[index].ref)

    def ready(self) -> dict[str, Any]:
        """A value that depends on the private subnets' way out when the stack makes the VPC."""
        return if_(self.create_vpc, [each.ref for each in self.private_egress], ["existing-vpc"])


def vpc(t: Template) -> Network:
    """A new VPC (2 public + 2 private subnets, one NAT gateway, S3 gateway endpoint) or an existing one."""
    group = "Network"
    existing_vpc = t.parameter(
        group,
        "ExistingVpcId",
        "Existing VPC (empty: create one)",
        Type="String",
        Default="",
        AllowedPattern="^$|^vpc-[0-9a-f]+$",
        Description="Leave empty to create a VPC with a NAT gateway; else the VPC of the two subnets below.",
    )
    existing_subnets = tuple(
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
        for index, which in enumerate(("first", "second"))
    )
    create_vpc = t.condition("CreateVpc", {"Fn::Equals": [existing_vpc.ref, ""]})
    use_existing_subnets = tuple(
        t.condition(f"UseExistingSubnet{index}", not_equals(subnet.ref, ""))
        for index, subnet in enumerate(existing_subnets)
    )
    t.rules["ExistingVpcNeedsTwoSubnets"] = {
        "RuleCondition": not_equals(existing_vpc.ref, ""),
        "Assertions": [
            {
                "Assert": not_equals(subnet.ref, ""),
                "AssertDescription": "With an existing VPC, give two private subnets of it (two AZs).",
            }
            for subnet in existing_subnets
        ],
    }
    t.rules["NewVpcTakesNoSubnets"] = {
        "RuleCondition": {"Fn::Equals": [existing_vpc.ref, ""]},
        "Assertions": [
            {
                "Assert": {"Fn::Equals": [subnet.ref, ""]},
                "AssertDescription": "Subnets are only used with an existing VPC (set ExistingVpcId).",
            }
            for subnet in existing_subnets
        ],
    }
    new_vpc = t.add(
        "Vpc",
        "AWS::EC2::VPC",
        {
            "CidrBlock": "10.0.0.0/16",
            "EnableDnsHostnames": True,
            "EnableDnsSupport": True,
            "Tags": [{"Key": "Name", "Value": {"Ref": "AWS::StackName"}}],
        },
        condition=create_vpc,
    )
    gateway = t.add("InternetGateway", "AWS::EC2::InternetGateway", {}, condition=create_vpc)
    attachment = t.add(
        "GatewayAttachment",
        "AWS::EC2::VPCGatewayAttachment",
        {"VpcId": new_vpc.ref, "InternetGatewayId": gateway.ref},
        condition=create_vpc,
    )
    # /20 subnets of the fixed 10.0.0.0/16 (4096 addresses each: room for Lambda ENIs).
    subnets = [
        t.add(
            f"{kind}Subnet",
            "AWS::EC2::Subnet",
            {
                "VpcId": new_vpc.ref,
                "CidrBlock": f"10.0.{16 * index}.0/20",
                "AvailabilityZone": {"Fn::Select": [index % 2, {"Fn::GetAZs": ""}]},
                "MapPublicIpOnLaunch": False,
                "Tags": [{"Key": "Name", "Value": sub("${AWS::StackName}-" + kind.lower())}],
            },
            condition=create_vpc,
        )
        for index, kind in enumerate(["Public0", "Public1", "Private0", "Private1"])
    ]
    public_subnets, private_subnets = subnets[:2], subnets[2:]
    public_routes = t.add("PublicRouteTable", "AWS::EC2::RouteTable", {"VpcId": new_vpc.ref}, condition=create_vpc)
    t.add(
        "PublicDefaultRoute",
        "AWS::EC2::Route",
        {"RouteTableId": public_routes.ref, "DestinationCidrBlock": "0.0.0.0/0", "GatewayId": gateway.ref},
        depends_on=attachment,
        condition=create_vpc,
    )
    route_associations(t, "Public", public_routes, public_subnets, create_vpc)
    address = t.add("NatAddress", "AWS::EC2::EIP", {"Domain": "vpc"}, depends_on=attachment, condition=create_vpc)
    nat = t.add(
        "NatGateway",
        "AWS::EC2::NatGateway",
        {"AllocationId": address.att("AllocationId"), "SubnetId": public_subnets[0].ref},
        condition=create_vpc,
    )
    private_routes = t.add("PrivateRouteTable", "AWS::EC2::RouteTable", {"VpcId": new_vpc.ref}, condition=create_vpc)
    private_default_route = t.add(
        "PrivateDefaultRoute",
        "AWS::EC2::Route",
        {"RouteTableId": private_routes.ref, "DestinationCidrBlock": "0.0.0.0/0", "NatGatewayId": nat.ref},
        condition=create_vpc,
    )
    private_associations = route_associations(t, "Private", private_routes, private_subnets, create_vpc)
    t.add(
        "S3GatewayEndpoint",
        "AWS::EC2::VPCEndpoint",
        {
            "VpcId": new_vpc.ref,
            "ServiceName": sub("com.amazonaws.${AWS::Region}.s3"),
            "VpcEndpointType": "Gateway",
            "RouteTableIds": [private_routes.ref],
        },
        condition=create_vpc,
    )
    return Network(
        create_vpc=create_vpc,
        existing_vpc=existing_vpc,
        existing_subnets=(existing_subnets[0], existing_subnets[1]),
        use_existing_subnets=(use_existing_subnets[0], use_existing_subnets[1]),
        vpc=new_vpc,
        private_subnets=(private_subnets[0], private_subnets[1]),
        private_egress=(private_default_route, *private_associations),
    )


def route_associations(
    t: Template, kind: str, table: Resource, subnets: list[Resource], condition: Condition
) -> list[Resource]:
    return [
        t.add(
            f"{kind}{index}RouteAssociation",
            "AWS::EC2::SubnetRouteTableAssociation",
            {"RouteTableId": table.ref, "SubnetId": subnet.ref},
            condition=condition,
        )
        for index, subnet in enumerate(subnets)
    ]


@dataclass(frozen=True)
class ModelFileSystem:
    """The EFS file system of the models, and how a function in the VPC mounts it."""

    network: Network
    function_security_group: Resource
    file_system: Resource
    access_point: Resource
    #: What a function that mounts the file system waits for: the mount targets and the
    #: functions' NFS egress rule (without it the mount times out).
    mount_ready: list[Resource]

    def vpc_config(self) -> dict[str, Any]:
        return {
            "SecurityGroupIds": [self.function_security_group.ref],
            "SubnetIds": [self.network.private_subnet(0), self.network.private_subnet(1)],
        }

    def mounts(self) -> list[dict[str, Any]]:
        return [{"Arn": self.access_point.arn, "LocalMountPath": EFS_MOUNT}]


def nfs(**peer: Any) -> dict[str, Any]:
    """An NFS (2049/tcp) security-group rule with ``peer`` (group and description)."""
    return {"IpProtocol": "tcp", "FromPort": 2049, "ToPort": 2049, **peer}


def efs(t: Template, network: Network) -> ModelFileSystem:
    """Encrypted file system, TLS-only policy, mount targets, the models access point."""
    function_group = t.add(
        "FunctionSecurityGroup",
        "AWS::EC2::SecurityGroup",
        {
            "GroupDescription": "Super-resolution functions: HTTPS/HTTP out for url inputs and model downloads",
            "VpcId": network.vpc_id,
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
    file_system_group = t.add(
        "FileSystemSecurityGroup",
        "AWS::EC2::SecurityGroup",
        {
            "GroupDescription": "Model file system: NFS from the functions only",
            "VpcId": network.vpc_id,
            "SecurityGroupIngress": [
                nfs(SourceSecurityGroupId=function_group.ref, Description="NFS from the functions"),
            ],
            "SecurityGroupEgress": [
                nfs(
                    DestinationSecurityGroupId=function_group.ref,
                    Description="NFS traffic with the functions only (replaces allow-all egress)",
                ),
            ],
        },
    )
    nfs_egress = t.add(
        "FunctionToFileSystemEgress",
        "AWS::EC2::SecurityGroupEgress",
        {
            "GroupId": function_group.ref,
            **nfs(DestinationSecurityGroupId=file_system_group.ref, Description="NFS to the model file system"),
        },
    )
    file_system = t.add(
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
        Metadata=skip(
            (
                "efs_automatic_backups_enabled_check",
                (
                    "Holds only copies of published model files, staged again (sha256-checked) on every "
                    "deployment; a backup would bill storage for what the stager recreates."
                ),
            )
        ),
    )
    mount_targets = [
        t.add(
            f"MountTarget{index}",
            "AWS::EFS::MountTarget",
            {
                "FileSystemId": file_system.ref,
                "SubnetId": network.private_subnet(index),
                "SecurityGroups": [file_system_group.ref],
            },
        )
        for index in range(2)
    ]
    access_point = t.add(
        "ModelsAccessPoint",
        "AWS::EFS::AccessPoint",
        {
            "FileSystemId": file_system.ref,
            "PosixUser": {"Uid": "1000", "Gid": "1000"},
            "RootDirectory": {
                "Path": "/superres-models",
                "CreationInfo": {"OwnerUid": "1000", "OwnerGid": "1000", "Permissions": "755"},
            },
            "AccessPointTags": [{"Key": "Name", "Value": sub("${AWS::StackName}-models")}],
        },
    )
    t.output("FileSystemId", "EFS file system holding the model files", file_system.ref)
    return ModelFileSystem(network, function_group, file_system, access_point, [*mount_targets, nfs_egress])
