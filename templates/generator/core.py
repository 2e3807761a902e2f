"""The template being built, handles to what it declares, intrinsic functions and the asset mapping.

A handle (``Resource``, ``Parameter``, ``Condition``) is what adding a thing to a ``Template``
returns; pieces pass handles to each other instead of logical names, so a misspelt reference
is a Python error at build time rather than a template CloudFormation rejects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: A CloudFormation value: a literal, an intrinsic function, or a dict/list of them.
Json = Any


# ---------------------------------------------------------------- handles


@dataclass(frozen=True)
class Parameter:
    name: str

    @property
    def ref(self) -> dict[str, Any]:
        return {"Ref": self.name}


@dataclass(frozen=True)
class Condition:
    name: str


@dataclass(frozen=True)
class Resource:
    name: str
    kind: str

    @property
    def ref(self) -> dict[str, Any]:
        return {"Ref": self.name}

    def att(self, attribute: str) -> dict[str, Any]:
        return {"Fn::GetAtt": [self.name, attribute]}

    @property
    def arn(self) -> dict[str, Any]:
        """The resource's ARN, however its type exposes it."""
        if self.kind in ARN_IS_REF:
            return self.ref
        if self.kind in ARN_IS_GETATT:
            return self.att("Arn")
        if self.kind in ARN_SPELLED_OUT:
            return sub(ARN_SPELLED_OUT[self.kind] + "${" + self.name + "}", self)
        raise TypeError(f"{self.name}: no ARN known for {self.kind}")


ARN_IS_REF = {"AWS::SNS::Topic", "AWS::SageMaker::Endpoint"}
ARN_IS_GETATT = {
    "AWS::DynamoDB::Table",
    "AWS::IAM::Role",
    "AWS::Lambda::Function",
    "AWS::Logs::LogGroup",
    "AWS::S3::Bucket",
    "AWS::SQS::Queue",
}
# Spelled out rather than GetAtt: same value, and moto's EFS models have no GetAtt.
ARN_SPELLED_OUT = {
    "AWS::EFS::FileSystem": "arn:${AWS::Partition}:elasticfilesystem:${AWS::Region}:${AWS::AccountId}:file-system/",
    "AWS::EFS::AccessPoint": "arn:${AWS::Partition}:elasticfilesystem:${AWS::Region}:${AWS::AccountId}:access-point/",
}

Named = Parameter | Resource


# ---------------------------------------------------------------- intrinsic functions

_SUB_NAME = re.compile(r"\$\{([^}!][^}]*)\}")


def sub(text: str, *uses: Named, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fn::Sub of ``text``. Every ``${Name}`` or ``${Name.Attribute}`` in it must be a pseudo
    parameter, a key of ``variables`` or one of ``uses``, and every use must appear."""
    given = {use.name for use in uses}
    tokens = set(_SUB_NAME.findall(text))
    # Only the variables the text reads: a template names no value it does not use.
    used = {name: value for name, value in (variables or {}).items() if name in tokens}
    named = {token.split(".", 1)[0] for token in tokens if not token.startswith("AWS::") and token not in used}
    if named != given:
        raise NameError(f"Fn::Sub {text!r}: names {sorted(named)}, handles given for {sorted(given)}")
    return {"Fn::Sub": [text, used] if used else text}


def if_(condition: Condition, then: Any, otherwise: Any) -> dict[str, Any]:
    return {"Fn::If": [condition.name, then, otherwise]}


def not_equals(value: Json, literal: str | int) -> dict[str, Any]:
    return {"Fn::Not": [{"Fn::Equals": [value, literal]}]}


NO_VALUE = {"Ref": "AWS::NoValue"}
REGION = {"Ref": "AWS::Region"}


def skip(*reasons: tuple[str, str]) -> dict[str, Any]:
    """Suppressions, each with the reason it is right for this kit: checkov checks (``CKV_...``)
    and cfn-guard rules (the Control Tower rule names, e.g. ``sqs_dlq_check``).

    Guard's convention is ``Metadata.guard.SuppressedRules``, a list of names; the reasons sit
    beside it under ``Reasons`` (tests/test_templates.py applies both and checks each is needed).
    """
    checkov = [{"id": check, "comment": why} for check, why in reasons if check.startswith("CKV")]
    guard = {rule: why for rule, why in reasons if not rule.startswith("CKV")}
    metadata: dict[str, Any] = {}
    if checkov:
        metadata["checkov"] = {"skip": checkov}
    if guard:
        metadata["guard"] = {"SuppressedRules": list(guard), "Reasons": guard}
    return metadata


def alnum(name: str) -> str:
    return "".join(ch for ch in name.title() if ch.isalnum())


# ---------------------------------------------------------------- assets

#: The placeholders live in one mapping (as in serverless-image-handler's SourceCode
#: mapping); resources read them with FindInMap, so the build substitutes them in one place.
ASSET_MAPPING = {
    "Source": {
        "BucketPrefix": "%%BUCKET_NAME%%",
        "KeyPrefix": "%%SOLUTION_NAME%%/%%VERSION%%",
    }
}
PLACEHOLDERS = ("%%BUCKET_NAME%%", "%%SOLUTION_NAME%%", "%%VERSION%%")

#: What the deployment build puts in; tests deploy and lint templates filled with these.
EXAMPLE_ASSETS = {
    "%%BUCKET_NAME%%": "superres-assets",
    "%%SOLUTION_NAME%%": "superres-kit",
    "%%VERSION%%": "v1.0.0",
}


def substitute(text: str, values: dict[str, str] | None = None) -> str:
    """The template text with every placeholder replaced (as deployment/build-s3-dist.sh does)."""
    for placeholder, value in (values or EXAMPLE_ASSETS).items():
        text = text.replace(placeholder, value)
    assert "%%" not in text, "a placeholder is left"
    return text


def asset(key: str) -> dict[str, Any]:
    return {"Fn::FindInMap": ["Assets", "Source", key]}


ASSET_BUCKET = {"Fn::Join": ["-", [asset("BucketPrefix"), REGION]]}
#: Fn::Sub variables naming the assets (``${AssetBucket}``, ``${KeyPrefix}``).
ASSET_VARIABLES = {"AssetBucket": ASSET_BUCKET, "KeyPrefix": asset("KeyPrefix")}


def asset_key(filename: str) -> dict[str, Any]:
    return {"Fn::Join": ["/", [asset("KeyPrefix"), filename]]}


# ---------------------------------------------------------------- the template


class Template:
    """The sections of one template; the pieces add to them and get handles back."""

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

    def parameter(self, group: str, name: str, label: str, **spec: Any) -> Parameter:
        assert name not in self.parameters, name
        self.parameters[name] = spec
        self.labels[name] = label
        for existing, members in self.groups:
            if existing == group:
                members.append(name)
                break
        else:
            self.groups.append((group, [name]))
        return Parameter(name)

    def number(
        self,
        group: str,
        name: str,
        label: str,
        default: int,
        minimum: int,
        description: str,
        maximum: int | None = None,
    ) -> Parameter:
        """A Number parameter with a lower (and optional upper) bound."""
        bounds: dict[str, int] = (
            {"MinValue": minimum} if maximum is None else {"MinValue": minimum, "MaxValue": maximum}
        )
        return self.parameter(group, name, label, Type="Number", Default=default, **bounds, Description=description)

    def condition(self, name: str, expression: Json) -> Condition:
        assert name not in self.conditions, name
        self.conditions[name] = expression
        return Condition(name)

    def add(
        self,
        name: str,
        kind: str,
        properties: dict[str, Any],
        *,
        depends_on: Resource | list[Resource] | None = None,
        condition: Condition | None = None,
        **attributes: Any,
    ) -> Resource:
        """Add a resource: ``attributes`` are its other attributes (DeletionPolicy, Metadata...)."""
        assert name not in self.resources, name
        body: dict[str, Any] = {"Type": kind}
        if isinstance(depends_on, Resource):
            body["DependsOn"] = depends_on.name
        elif depends_on:
            body["DependsOn"] = [resource.name for resource in depends_on]
        body.update(attributes)
        if condition:
            body["Condition"] = condition.name
        body["Properties"] = properties
        self.resources[name] = body
        return Resource(name, kind)

    def after(self, name: str, condition: Condition, resources: list[Resource]) -> Resource:
        """A resource that exists after ``resources`` when ``condition`` holds, at once otherwise:
        what DependsOn names instead of resources a condition may leave out (DependsOn on one of
        those fails; a Ref inside Fn::If in the Metadata of a WaitConditionHandle orders the same)."""
        return self.add(
            name,
            "AWS::CloudFormation::WaitConditionHandle",
            {},
            Metadata={"After": if_(condition, [each.ref for each in resources], [])},
        )

    def make_conditional(self, resource: Resource, condition: Condition) -> None:
        """Put a resource made by a shared helper (a log group, a role) behind ``condition``."""
        self.resources[resource.name]["Condition"] = condition.name

    def output(self, name: str, description: str, value: Json, condition: Condition | None = None) -> None:
        self.outputs[name] = {"Description": description, "Value": value}
        if condition:
            self.outputs[name]["Condition"] = condition.name

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
