"""Customer API keys on a stack's usage plan: issue, list, usage against the quota, revoke.

Every stack has one usage plan (throttle, burst, daily quota; output ``UsagePlanId``).
A customer key is an API Gateway API key named after the customer, tagged
``superres:customer``, and added to that plan, so the plan's limits apply to it per key.
Revoking disables the key (API Gateway answers 403 at once, and the key and its
history stay for the records) or, with ``delete``, removes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .stack import StackError, stack_outputs

CUSTOMER_TAG = "superres:customer"
USAGE_PLAN_OUTPUT = "UsagePlanId"


class ApiKeyError(Exception):
    """A key operation failed; the message says why."""


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    customer: str
    enabled: bool
    created: str
    value: str | None = None


@dataclass(frozen=True)
class Quota:
    limit: int
    period: str  # DAY, WEEK or MONTH


@dataclass(frozen=True)
class Usage:
    """One key's daily counts in the window: (day, used, remaining of the quota)."""

    key_id: str
    days: list[tuple[date, int, int | None]]

    @property
    def used(self) -> int:
        return sum(used for _, used, _ in self.days)


def _fail(error: Exception) -> ApiKeyError:
    if isinstance(error, ClientError):
        message = error.response.get("Error", {}).get("Message") or str(error)
        return ApiKeyError(f"API Gateway refused: {message}")
    return ApiKeyError(f"API Gateway call failed: {error}")


def check_customer(customer: str) -> str:
    name = customer.strip()
    if not name or len(name) > 128 or not name.isprintable():
        raise ValueError(f"customer {customer!r}: give 1-128 printable characters (a name or an account id)")
    return name


def plan_of_stack(cfn: Any, stack_name: str) -> str:
    """The stack's usage plan id (its ``UsagePlanId`` output)."""
    try:
        outputs = stack_outputs(cfn, stack_name)
    except (ClientError, BotoCoreError) as error:
        raise _fail(error) from None
    except StackError as error:
        raise ApiKeyError(str(error)) from None
    if USAGE_PLAN_OUTPUT not in outputs:
        raise ApiKeyError(f"stack {stack_name} has no {USAGE_PLAN_OUTPUT} output: is it a superres stack?")
    return outputs[USAGE_PLAN_OUTPUT]


def _key(item: Mapping[str, Any]) -> ApiKey:
    tags = item.get("tags") or {}
    created = item.get("createdDate")
    return ApiKey(
        id=item["id"],
        name=item.get("name", ""),
        customer=tags.get(CUSTOMER_TAG, item.get("name", "")),
        enabled=bool(item.get("enabled")),
        created=created.isoformat(timespec="seconds") if isinstance(created, datetime) else str(created or ""),
        value=item.get("value"),
    )


def issue(apigw: Any, plan_id: str, customer: str) -> ApiKey:
    """A new enabled key for ``customer`` on the plan; its value is returned once, here."""
    customer = check_customer(customer)
    try:
        apigw.get_usage_plan(usagePlanId=plan_id)
        created = apigw.create_api_key(
            name=customer,
            description=f"superres customer key for {customer} (usage plan {plan_id})",
            enabled=True,
            tags={CUSTOMER_TAG: customer},
        )
        try:
            apigw.create_usage_plan_key(usagePlanId=plan_id, keyId=created["id"], keyType="API_KEY")
        except (ClientError, BotoCoreError):
            apigw.delete_api_key(apiKey=created["id"])  # no key outside the plan is left behind
            raise
    except (ClientError, BotoCoreError) as error:
        raise _fail(error) from None
    return _key(created)


def list_keys(apigw: Any, plan_id: str) -> list[ApiKey]:
    """The plan's keys with their state, oldest first."""
    try:
        members = [
            item
            for page in apigw.get_paginator("get_usage_plan_keys").paginate(usagePlanId=plan_id)
            for item in page.get("items", [])
        ]
        keys = [_key(apigw.get_api_key(apiKey=member["id"], includeValue=False)) for member in members]
    except (ClientError, BotoCoreError) as error:
        raise _fail(error) from None
    return sorted(keys, key=lambda k: (k.created, k.id))


def quota(apigw: Any, plan_id: str) -> Quota | None:
    """The plan's quota, or None when it has none (``UsagePlanDailyQuota`` 0)."""
    try:
        plan = apigw.get_usage_plan(usagePlanId=plan_id)
    except (ClientError, BotoCoreError) as error:
        raise _fail(error) from None
    found = plan.get("quota")
    return Quota(int(found["limit"]), found.get("period", "DAY")) if found and found.get("limit") else None


def usage(
    apigw: Any, plan_id: str, *, days: int = 1, key_id: str | None = None, today: date | None = None
) -> list[Usage]:
    """Requests per key per day over the last ``days`` days (UTC), with what the quota leaves."""
    if days < 1 or days > 90:
        raise ValueError("days must be 1-90 (API Gateway keeps usage for 90 days)")
    end = today or date.today()
    start = end - timedelta(days=days - 1)
    request: dict[str, Any] = {"usagePlanId": plan_id, "startDate": start.isoformat(), "endDate": end.isoformat()}
    if key_id:
        request["keyId"] = key_id
    try:
        items: dict[str, list[list[int]]] = {}
        for page in apigw.get_paginator("get_usage").paginate(**request):
            for key, rows in page.get("items", {}).items():
                items.setdefault(key, []).extend(rows)
    except (ClientError, BotoCoreError) as error:
        raise _fail(error) from None
    return [
        Usage(
            key,
            [
                (start + timedelta(days=i), int(row[0]), int(row[1]) if len(row) > 1 else None)
                for i, row in enumerate(rows)
            ],
        )
        for key, rows in sorted(items.items())
    ]


def revoke(apigw: Any, plan_id: str, key_id: str, *, delete: bool = False) -> str:
    """Disable (default) or delete a key of the plan; returns what was done."""
    try:
        apigw.get_usage_plan_key(usagePlanId=plan_id, keyId=key_id)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "NotFoundException":
            raise ApiKeyError(f"key {key_id} is not on usage plan {plan_id}") from None
        raise _fail(error) from None
    except BotoCoreError as error:
        raise _fail(error) from None
    try:
        if delete:
            apigw.delete_api_key(apiKey=key_id)
            return "deleted"
        apigw.update_api_key(apiKey=key_id, patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}])
    except (ClientError, BotoCoreError) as error:
        raise _fail(error) from None
    return "disabled"
