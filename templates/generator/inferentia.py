"""AWS's Neuron inference containers for the Inferentia stack: the image each instance family
runs, its registry account per Region, and the Regions where the family can be deployed.

Inf1 (NeuronCore v1) runs torch-neuron, which exists for torch 1.x only; Inf2 (NeuronCore v2)
runs torch-neuronx. One model artifact serves both (Python 3.10 in both images), so only the
image differs with the family of ``deployInstanceType``.

Three generated or cited sources, all read at build time, none typed by hand but the named
constants below:

- registry accounts: the pinned ``sagemaker-core``'s ``image_uri_config``. It has no
  ``pytorch-inference-neuron(x)`` entries; its Hugging Face Neuron inference entries
  (``huggingface-neuron.json``: Inf1, ``huggingface-neuronx.json``: Inf2) are published by the
  same Deep Learning Containers accounts, Region by Region, so their ``registries`` are the
  best pinned statement of where AWS publishes a Neuron inference image, and from which account;
- instance types: cfn-lint's per-Region table of SageMaker *hosting* instance types
  (``aws_sagemaker_hosting/instancetype_enum.json``, which cfn-lint generates from the AWS
  Price List API: an instance type is there where SageMaker sells it for endpoints);
- the Deep Learning Containers' own table of the Regions that have Neuron containers
  (``NEURON_CONTAINER_REGIONS``): sagemaker-core lists a registry in some Regions where that
  table says no Neuron image is published (eu-south-2 for Inf2, for one).

A family is offered in a Region where all three agree.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import distribution
from typing import Any

from .core import Condition, Json, Parameter, Template, if_, sub
from .images import version_key

#: sagemaker-core's image tables (the SageMaker SDK's own), pinned in pyproject.toml.
IMAGE_CONFIG_DIR = "sagemaker/core/image_uri_config"
#: cfn-lint's SageMaker hosting instance types per Region (pinned in pyproject.toml).
HOSTING_INSTANCE_TYPES = "cfnlint/data/schemas/extensions/aws_sagemaker_hosting/instancetype_enum.json"
#: The Regions whose "Neuron Container" column says "Available" in aws/deep-learning-containers'
#: available_images.md (commit bbf69f1f93650fd4041b26bc31f1f3fb10929d41, 2026-02-06: the last
#: revision with that column; the repository's later region table no longer tells them apart).
NEURON_CONTAINER_REGIONS = frozenset(
    {
        "us-east-1",
        "us-east-2",
        "us-west-2",
        "ap-east-2",
        "ap-northeast-1",
        "ap-south-1",
        "ap-southeast-1",
        "ap-southeast-2",
        "eu-central-1",
        "eu-west-1",
        "eu-west-3",
        "sa-east-1",
    }
)
MAPPING = "NeuronInferenceRegistry"


@dataclass(frozen=True)
class Family:
    """An Inferentia instance family and AWS's PyTorch Neuron inference image for it."""

    #: The second-level key of the registry mapping, and the family's name in the text.
    name: str
    #: The ``deployInstanceType`` choices of this family (the first is the family's default).
    instance_types: tuple[str, ...]
    repository: str
    tag: str
    #: The sagemaker-core table whose registries say where (and from which account) AWS
    #: publishes Neuron inference images for this family.
    registry_source: str

    @property
    def instance_prefix(self) -> str:
        return self.instance_types[0].rsplit(".", 1)[0] + "."


#: Inf2 (torch-neuronx): the newest pytorch-inference-neuronx tag with Python 3.10, from the
#: Deep Learning Containers' table (available_images.md, commit bbf69f1f: "PyTorch 2.7.0,
#: Neuron 2.25.0, py310"); the releases after it moved to Python 3.11 and 3.12.
INF2 = Family(
    "Inf2",
    ("ml.inf2.xlarge", "ml.inf2.8xlarge"),
    "pytorch-inference-neuronx",
    "2.7.0-neuronx-py310-sdk2.25.0-ubuntu22.04",
    "huggingface-neuronx.json",
)
#: Inf1 (torch-neuron, torch 1.13.1): the newest 1.13.1-neuron-py310-sdk2.* tag, from the same
#: table ("PyTorch 1.13.1, torch-neuron, Neuron 2.20.2, inf1"), its newest Inf1 image.
INF1 = Family(
    "Inf1",
    ("ml.inf1.xlarge", "ml.inf1.2xlarge", "ml.inf1.6xlarge"),
    "pytorch-inference-neuron",
    "1.13.1-neuron-py310-sdk2.20.2-ubuntu20.04",
    "huggingface-neuron.json",
)
#: Inf2 first: its ml.inf2.xlarge is the stack's default, because AWS calls Inf1 legacy and
#: advises Inf2 for new work (the Inf1 image above dates from Neuron SDK 2.20).
FAMILIES = (INF2, INF1)
#: The stack's deployInstanceType choices, the first its default.
INSTANCE_TYPES = [instance for family in FAMILIES for instance in family.instance_types]


def newest_registries(config: dict[str, Any]) -> dict[str, str]:
    """Region -> registry account of the newest inference entry of a sagemaker-core Hugging Face
    Neuron table (``{"inference": {"versions": {v: {"pytorchX": {"registries": ...}}}}}``)."""
    versions = config["inference"]["versions"]
    newest = versions[max(versions, key=version_key)]
    frameworks = {key: entry for key, entry in newest.items() if key.startswith("pytorch")}
    if not frameworks:
        raise ValueError("the newest Neuron inference entry names no PyTorch image")
    entry = frameworks[max(frameworks, key=lambda key: version_key(key.removeprefix("pytorch")))]
    return dict(sorted(entry["registries"].items()))


def hosting_regions(table: dict[str, Any], instance_types: tuple[str, ...]) -> set[str]:
    """The Regions where every one of ``instance_types`` is a SageMaker hosting instance type."""
    return {
        region
        for region, entry in table.items()
        if isinstance(entry, dict) and set(instance_types) <= set(entry.get("enum", []))
    }


@dataclass(frozen=True)
class Availability:
    """One family's registry account in each Region where it can be deployed."""

    family: Family
    accounts: dict[str, str]


def availability(family: Family, registries: dict[str, str], hosting: dict[str, Any]) -> Availability:
    """``family``'s Regions: an image registry, the instance types for endpoints and AWS's
    word that the Neuron images are published there."""
    regions = set(registries) & hosting_regions(hosting, family.instance_types) & NEURON_CONTAINER_REGIONS
    if not regions:
        # A choice no Region accepts must not reach the template: the data changed, look again.
        raise ValueError(f"no Region has {family.name} endpoints and AWS's {family.repository} image")
    return Availability(family, {region: registries[region] for region in sorted(regions)})


def _installed_json(package: str, path: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(distribution(package).locate_file(path).read_text())
    return loaded


@cache
def pinned_availability() -> tuple[Availability, ...]:
    """Every family's availability, from the installed (pinned) sagemaker-core and cfn-lint."""
    hosting = _installed_json("cfn-lint", HOSTING_INSTANCE_TYPES)
    return tuple(
        availability(
            family,
            newest_registries(_installed_json("sagemaker-core", f"{IMAGE_CONFIG_DIR}/{family.registry_source}")),
            hosting,
        )
        for family in FAMILIES
    )


def registry_mapping(offered: tuple[Availability, ...]) -> dict[str, dict[str, str]]:
    """Region -> {family name: registry account}, each family only where it is offered."""
    mapping: dict[str, dict[str, str]] = {}
    for each in offered:
        for region, account in each.accounts.items():
            mapping.setdefault(region, {})[each.family.name] = account
    return dict(sorted(mapping.items()))


def inf1_chosen(t: Template, instance_type: Parameter) -> Condition:
    """The condition that ``instance_type`` is an Inf1 one (else it is an Inf2 one)."""
    return t.condition(
        "Inf1Instance", {"Fn::Or": [{"Fn::Equals": [instance_type.ref, each]} for each in INF1.instance_types]}
    )


def region_rules(t: Template, instance_type: Parameter, offered: tuple[Availability, ...]) -> None:
    """A rule per family: chosen, it must be offered in the stack's Region (checked before any
    resource is created, with a message that says where it is)."""
    for each in offered:
        regions = list(each.accounts)
        t.rules[f"{each.family.name}Region"] = {
            "RuleCondition": {"Fn::Contains": [list(each.family.instance_types), instance_type.ref]},
            "Assertions": [
                {
                    "Assert": {"Fn::Contains": [regions, {"Ref": "AWS::Region"}]},
                    "AssertDescription": (
                        f"{each.family.instance_prefix}* endpoints with AWS's {each.family.repository} image "
                        f"are offered in {', '.join(regions)} only: choose another instance type or deploy "
                        "the stack in one of these Regions."
                    ),
                }
            ],
        }


def _account(family: Family) -> dict[str, Any]:
    """Fn::Sub's ``${Account}``: ``family``'s registry account in the stack's Region. Only the
    chosen branch of an Fn::If is resolved, so the mapping needs the key only where the Region
    rule lets the family deploy."""
    return {"Account": {"Fn::FindInMap": [MAPPING, {"Ref": "AWS::Region"}, family.name]}}


def image_uri(family: Family) -> Json:
    """``family``'s image in the stack's Region (China's registries end in .com.cn: URLSuffix)."""
    return sub(
        "${Account}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/" + f"{family.repository}:{family.tag}",
        variables=_account(family),
    )


def repository_arn(family: Family) -> Json:
    """``family``'s image repository, for the endpoint role's ECR pull permissions."""
    return sub(
        "arn:${AWS::Partition}:ecr:${AWS::Region}:${Account}:repository/" + family.repository,
        variables=_account(family),
    )


def chosen(inf1: Condition, value: Callable[[Family], Json]) -> Json:
    """``value`` of the family ``deployInstanceType`` belongs to."""
    return if_(inf1, value(INF1), value(INF2))
