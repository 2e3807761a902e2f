"""AWS partitions and the regions the kit offers: console domains, S3 host names."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Partition:
    name: str
    #: Domain of S3 and other service endpoints (``${AWS::URLSuffix}``).
    url_suffix: str
    #: Region where the partition's global (template) bucket lives.
    home_region: str

    def console(self, region: str) -> str:
        """The CloudFormation console of ``region``, for links a person opens."""
        if self.name == "aws-cn":
            return f"https://{region}.console.amazonaws.cn/cloudformation/home?region={region}"
        return f"https://console.aws.amazon.com/cloudformation/home?region={region}"

    def s3_url(self, bucket: str, key: str) -> str:
        """Virtual-hosted URL of an object (what CloudFormation's TemplateURL takes)."""
        if self.name == "aws-cn":
            return f"https://{bucket}.s3.{self.home_region}.{self.url_suffix}/{key}"
        return f"https://{bucket}.s3.{self.url_suffix}/{key}"


AWS = Partition("aws", "amazonaws.com", "us-east-1")
AWS_CN = Partition("aws-cn", "amazonaws.com.cn", "cn-north-1")

#: Region -> its name in the link table. The China regions are run by local operators
#: (Beijing: Sinnet, Ningxia: NWCD) and need accounts of the China partition.
REGIONS = {
    "us-east-1": "US East (N. Virginia)",
    "us-west-2": "US West (Oregon)",
    "eu-west-1": "Europe (Ireland)",
    "eu-central-1": "Europe (Frankfurt)",
    "ap-northeast-1": "Asia Pacific (Tokyo)",
    "ap-southeast-1": "Asia Pacific (Singapore)",
    "cn-north-1": "China (Beijing)",
    "cn-northwest-1": "China (Ningxia)",
}


def partition_of(region: str) -> Partition:
    """The partition a region belongs to; ValueError for a name that is no region."""
    if not region or not all(part.isalnum() for part in region.split("-")) or region.count("-") < 2:
        raise ValueError(f"{region!r} is not an AWS region name (e.g. us-east-1, cn-north-1)")
    return AWS_CN if region.startswith("cn-") else AWS
