"""A template's ``Rules`` evaluated here, as CloudFormation evaluates them before it creates a
stack: which parameter values a Region accepts, so that a quick-create link never opens a stack
that its own rules refuse.

Only the rule functions the kit's templates use are known (``Ref``, ``Fn::Equals``, ``Fn::Not``,
``Fn::And``, ``Fn::Or``, ``Fn::Contains``); any other is a ValueError, never a silent pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _value(node: Any, values: Mapping[str, str]) -> Any:
    """A literal, a list of them, or a Ref to a parameter or pseudo parameter."""
    if isinstance(node, dict):
        if set(node) == {"Ref"}:
            if node["Ref"] not in values:
                raise ValueError(f"a rule refers to {node['Ref']}, which has no value here")
            return values[node["Ref"]]
        return holds(node, values)
    if isinstance(node, list):
        return [_value(item, values) for item in node]
    return node


def holds(expression: dict[str, Any], values: Mapping[str, str]) -> bool:
    """Whether a rule condition or assertion is true for these parameter (and pseudo parameter) values."""
    ((function, arguments),) = expression.items()
    if function == "Fn::Equals":
        left, right = (_value(argument, values) for argument in arguments)
        return bool(left == right)
    if function == "Fn::Not":
        (inner,) = arguments
        return not holds(inner, values)
    if function == "Fn::And":
        return all(holds(inner, values) for inner in arguments)
    if function == "Fn::Or":
        return any(holds(inner, values) for inner in arguments)
    if function == "Fn::Contains":
        members, value = (_value(argument, values) for argument in arguments)
        return value in members
    raise ValueError(f"rule function {function} is not known here")


def refused(template: Mapping[str, Any], region: str, parameters: Mapping[str, str] | None = None) -> list[str]:
    """The AssertDescription of every rule assertion that fails for a stack of ``template`` in
    ``region``, its parameters at their defaults but for ``parameters``."""
    values = {
        **{name: spec["Default"] for name, spec in template.get("Parameters", {}).items() if "Default" in spec},
        **(parameters or {}),
        "AWS::Region": region,
    }
    failed = []
    for rule in template.get("Rules", {}).values():
        if "RuleCondition" in rule and not holds(rule["RuleCondition"], values):
            continue
        failed += [each["AssertDescription"] for each in rule["Assertions"] if not holds(each["Assert"], values)]
    return failed


def _references(node: Any) -> set[str]:
    if isinstance(node, dict):
        if set(node) == {"Ref"}:
            return {node["Ref"]}
        return set().union(*(_references(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_references(value) for value in node))
    return set()


def launch_parameters(template: Mapping[str, Any], region: str) -> dict[str, str] | None:
    """Parameters with which a stack of ``template`` passes its rules in ``region``: none when the
    defaults pass, else the first allowed value (in the template's order) of one parameter the
    rules read that passes; None when nothing does."""
    if not refused(template, region):
        return {}
    read = _references(template.get("Rules", {}))
    for name, spec in template.get("Parameters", {}).items():
        for value in spec.get("AllowedValues", []) if name in read else []:
            if not refused(template, region, {name: value}):
                return {name: value}
    return None
