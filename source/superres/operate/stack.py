"""Create, update, watch and delete a kit stack with boto3's CloudFormation client.

``deploy`` creates the stack, or updates it if it exists (parameters not given keep their
previous values), prints every stack event as it arrives, waits for the end, and either
returns the outputs or raises ``StackError`` naming each failed resource with the reason
CloudFormation gave. A template file is uploaded to S3 first when it is larger than
CloudFormation accepts inline (51,200 bytes: all three of the kit's are).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from .regions import partition_of

#: CloudFormation's limit for TemplateBody.
INLINE_TEMPLATE_LIMIT = 51_200
CAPABILITIES = ["CAPABILITY_IAM"]
SUCCESS = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "DELETE_COMPLETE", "IMPORT_COMPLETE"}
FAILURE = {
    "CREATE_FAILED",
    "ROLLBACK_COMPLETE",
    "ROLLBACK_FAILED",
    "UPDATE_FAILED",
    "UPDATE_ROLLBACK_COMPLETE",
    "UPDATE_ROLLBACK_FAILED",
    "DELETE_FAILED",
    "IMPORT_ROLLBACK_COMPLETE",
    "IMPORT_ROLLBACK_FAILED",
}
#: The outputs a person needs first, in this order (templates/build.py names them).
KEY_OUTPUTS = ("aikitsInvokeURLresolution", "ApiKeyId", "GetApiKeyCommand", "UsagePlanId", "DashboardURL")

Log = Callable[[str], None]


class StackError(Exception):
    """The stack operation was refused or failed; the message says why (and what failed)."""


@dataclass
class Result:
    stack_name: str
    status: str
    outputs: dict[str, str] = field(default_factory=dict)
    changed: bool = True


def parse_parameters(pairs: Iterable[str]) -> dict[str, str]:
    """``Key=Value`` strings as a mapping; ValueError names a malformed one."""
    parameters: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"parameter {pair!r} is not Key=Value")
        parameters[key.strip()] = value
    return parameters


def describe(cfn: Any, stack_name: str) -> dict[str, Any] | None:
    """The stack, or None if there is none by that name (deleted stacks do not count)."""
    try:
        stack: dict[str, Any] = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    except ClientError as error:
        if "does not exist" in str(error):
            return None
        raise
    return None if stack["StackStatus"] == "DELETE_COMPLETE" else stack


def outputs_of(stack: Mapping[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def stack_outputs(cfn: Any, stack_name: str) -> dict[str, str]:
    stack = describe(cfn, stack_name)
    if stack is None:
        raise StackError(f"no stack named {stack_name}")
    return outputs_of(stack)


def template_source(template: str, s3: Any | None, bucket: str | None, stack_name: str) -> dict[str, str]:
    """TemplateURL for an https URL, TemplateBody for a small file, else the file uploaded to ``bucket``."""
    if template.startswith("https://"):
        return {"TemplateURL": template}
    path = Path(template)
    if not path.is_file():
        raise StackError(f"template {template} is neither an https:// URL nor a file")
    body = path.read_bytes()
    if len(body) <= INLINE_TEMPLATE_LIMIT:
        return {"TemplateBody": body.decode()}
    if not bucket or s3 is None:
        raise StackError(
            f"{path.name} is {len(body):,} bytes, more than CloudFormation takes inline "
            f"({INLINE_TEMPLATE_LIMIT:,}): pass --template-bucket BUCKET to upload it, or the template's https:// URL"
        )
    key = f"superres-templates/{stack_name}/{path.name}"
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    region = s3.meta.region_name
    partition = partition_of(region)
    return {"TemplateURL": f"https://{bucket}.s3.{region}.{partition.url_suffix}/{key}"}


def _event_ids(cfn: Any, stack_name: str) -> set[str]:
    return {event["EventId"] for event in _events(cfn, stack_name)}


def _events(cfn: Any, stack_name: str) -> list[dict[str, Any]]:
    """All events of the stack, oldest first."""
    events: list[dict[str, Any]] = []
    for page in cfn.get_paginator("describe_stack_events").paginate(StackName=stack_name):
        events.extend(page["StackEvents"])
    return sorted(events, key=lambda e: e["Timestamp"])


def format_event(event: Mapping[str, Any]) -> str:
    stamp = event["Timestamp"]
    clock = stamp.strftime("%H:%M:%S") if isinstance(stamp, datetime) else str(stamp)
    reason = event.get("ResourceStatusReason")
    line = f"{clock}  {event['ResourceStatus']:<28} {event.get('ResourceType', ''):<40} {event['LogicalResourceId']}"
    return f"{line}  ({reason})" if reason else line


def failure_reasons(events: Iterable[Mapping[str, Any]]) -> list[str]:
    """``LogicalId (Type): reason`` for each failed resource (the root causes, not the cascade)."""
    reasons = []
    for event in events:
        if not event["ResourceStatus"].endswith("_FAILED"):
            continue
        reason = event.get("ResourceStatusReason") or "no reason given"
        if "Resource creation cancelled" in reason:
            continue  # a consequence of another failure
        reasons.append(f"{event['LogicalResourceId']} ({event.get('ResourceType', '?')}): {reason}")
    return reasons


def wait(
    cfn: Any,
    stack_id: str,
    seen: set[str],
    *,
    log: Log,
    poll: float = 5.0,
    timeout: float = 3600.0,
) -> dict[str, Any]:
    """Print new events until the stack reaches a final status; returns the stack."""
    deadline = time.monotonic() + timeout
    new_events: list[dict[str, Any]] = []
    while True:
        # The status first, then the events: every event that led to a final status is then
        # listed before it returns (the other order can miss the stack's own last event).
        stack: dict[str, Any] = cfn.describe_stacks(StackName=stack_id)["Stacks"][0]
        status = stack["StackStatus"]
        for event in _events(cfn, stack_id):
            if event["EventId"] not in seen:
                seen.add(event["EventId"])
                new_events.append(event)
                log(format_event(event))
        if status in SUCCESS:
            return stack
        if status in FAILURE:
            reasons = failure_reasons(new_events) or [stack.get("StackStatusReason") or "no reason given"]
            raise StackError(f"stack {stack['StackName']} ended in {status}:\n  " + "\n  ".join(reasons))
        if time.monotonic() >= deadline:
            raise StackError(
                f"stack {stack['StackName']} is still {status} after {timeout:.0f} s; it goes on in "
                "CloudFormation (watch it there, or run this again to wait)"
            )
        time.sleep(poll)


def kept_parameters(
    cfn: Any, existing: Mapping[str, Any], source: Mapping[str, str], given: Mapping[str, str]
) -> list[dict[str, Any]]:
    """What an update passes so that parameters not given keep their current values.

    A parameter omitted from UpdateStack falls back to the template's default, so one whose
    value differs from the new template's default is passed with UsePreviousValue; one at
    the default is left out (same result, and moto 5.2.5 fails on UsePreviousValue for a
    parameter that was not given at create time).
    """
    summary = cfn.get_template_summary(**source)
    defaults = {p["ParameterKey"]: p.get("DefaultValue") for p in summary.get("Parameters", [])}
    return [
        {"ParameterKey": p["ParameterKey"], "UsePreviousValue": True}
        for p in existing.get("Parameters", [])
        if p["ParameterKey"] not in given
        and p["ParameterKey"] in defaults
        and p.get("ParameterValue") != defaults[p["ParameterKey"]]
    ]


def deploy(
    cfn: Any,
    stack_name: str,
    source: Mapping[str, str],
    parameters: Mapping[str, str],
    *,
    log: Log = print,
    poll: float = 5.0,
    timeout: float = 3600.0,
    tags: Mapping[str, str] | None = None,
) -> Result:
    """Create or update ``stack_name`` from ``source`` (TemplateURL or TemplateBody) and wait."""
    try:
        existing = describe(cfn, stack_name)
        given = [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()]
        common: dict[str, Any] = {
            "StackName": stack_name,
            **source,
            "Capabilities": CAPABILITIES,
            "Tags": [{"Key": k, "Value": v} for k, v in (tags or {}).items()],
        }
        if existing is None:
            log(f"creating stack {stack_name} ...")
            stack_id = cfn.create_stack(**common, Parameters=given)["StackId"]
            seen: set[str] = set()
        else:
            status = existing["StackStatus"]
            if status == "ROLLBACK_COMPLETE":
                raise StackError(
                    f"stack {stack_name} failed to create before (ROLLBACK_COMPLETE) and cannot be updated: "
                    f"delete it first (superres stack delete {stack_name})"
                )
            if status.endswith("_IN_PROGRESS"):
                raise StackError(f"stack {stack_name} is busy ({status}); wait until it finishes")
            kept = kept_parameters(cfn, existing, source, parameters)
            stack_id = existing["StackId"]
            seen = _event_ids(cfn, stack_id)
            log(f"updating stack {stack_name} ({status}) ...")
            try:
                cfn.update_stack(**common, Parameters=given + kept)
            except ClientError as error:
                if "No updates are to be performed" not in str(error):
                    raise
                log("no changes: the stack already matches this template and these parameters")
                return Result(stack_name, status, outputs_of(existing), changed=False)
        stack = wait(cfn, stack_id, seen, log=log, poll=poll, timeout=timeout)
    except ClientError as error:
        raise StackError(f"CloudFormation refused: {error.response.get('Error', {}).get('Message') or error}") from None
    except (BotoCoreError, ResponseParserError) as error:
        raise StackError(f"CloudFormation call failed: {error}") from None
    return Result(stack_name, stack["StackStatus"], outputs_of(stack))


def delete(cfn: Any, stack_name: str, *, log: Log = print, poll: float = 5.0, timeout: float = 3600.0) -> Result:
    """Delete the stack and wait; what the stack keeps is in README (Uninstall)."""
    try:
        existing = describe(cfn, stack_name)
        if existing is None:
            raise StackError(f"no stack named {stack_name}")
        stack_id = existing["StackId"]
        seen = _event_ids(cfn, stack_id)
        log(f"deleting stack {stack_name} ...")
        cfn.delete_stack(StackName=stack_id)
        stack = wait(cfn, stack_id, seen, log=log, poll=poll, timeout=timeout)
    except ClientError as error:
        raise StackError(f"CloudFormation refused: {error.response.get('Error', {}).get('Message') or error}") from None
    except (BotoCoreError, ResponseParserError) as error:
        raise StackError(f"CloudFormation call failed: {error}") from None
    return Result(stack_name, stack["StackStatus"])


def format_outputs(outputs: Mapping[str, str]) -> list[str]:
    """The key outputs first (invoke URL, API key id, ...), then the rest, one ``name: value`` a line."""
    order = [k for k in KEY_OUTPUTS if k in outputs] + sorted(k for k in outputs if k not in KEY_OUTPUTS)
    return [f"{key}: {outputs[key]}" for key in order]
