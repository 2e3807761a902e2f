"""``superres keys``: customer API keys on a stack's usage plan."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from .aws import aws_clients, profile_option, region_option
from .reporting import ReportingGroup

_Command = TypeVar("_Command", bound=Callable[..., Any])


def _plan_option(command: _Command) -> _Command:
    command = click.option(
        "--usage-plan-id", default=None, help="The usage plan [default: the stack's UsagePlanId output]."
    )(command)
    return click.option("--stack", "stack_name", default=None, help="Stack whose usage plan to use.")(command)


def _plan(stack_name: str | None, plan_id: str | None, profile: str | None, region: str | None) -> tuple[Any, str]:
    from ..operate.keys import plan_of_stack

    if bool(stack_name) == bool(plan_id):
        raise click.UsageError("give exactly one of --stack and --usage-plan-id")
    cfn, apigw = aws_clients(profile, region, "cloudformation", "apigateway")
    return apigw, plan_id or plan_of_stack(cfn, stack_name or "")


@click.group(cls=ReportingGroup)
def keys() -> None:
    """Customer API keys on a stack's usage plan: issue, list, usage, revoke."""


@keys.command("issue")
@click.argument("customer")
@_plan_option
@region_option
@profile_option
def keys_issue(
    customer: str, stack_name: str | None, usage_plan_id: str | None, region: str | None, profile: str | None
) -> None:
    """Issue a new key for CUSTOMER on the usage plan and print its value (shown once)."""
    from ..operate import keys as api_keys

    apigw, plan = _plan(stack_name, usage_plan_id, profile, region)
    key = api_keys.issue(apigw, plan, customer)
    click.echo(f"key id:    {key.id}\ncustomer:  {key.customer}\nplan:      {plan}\nvalue:     {key.value}")
    click.echo("Send the value to the customer; they pass it as the x-api-key header.")


@keys.command("list")
@_plan_option
@region_option
@profile_option
def keys_list(stack_name: str | None, usage_plan_id: str | None, region: str | None, profile: str | None) -> None:
    """The plan's keys: id, state, created, customer."""
    from ..operate import keys as api_keys

    apigw, plan = _plan(stack_name, usage_plan_id, profile, region)
    found = api_keys.list_keys(apigw, plan)
    click.echo(f"usage plan {plan}: {len(found)} key(s)")
    for key in found:
        click.echo(f"{key.id:12} {'enabled ' if key.enabled else 'disabled'} {key.created:25} {key.customer}")


@keys.command("usage")
@_plan_option
@click.option("--key-id", default=None, help="One key [default: every key of the plan].")
@click.option("--days", type=click.IntRange(1, 90), default=1, show_default=True, help="Days back from today (UTC).")
@region_option
@profile_option
def keys_usage(
    stack_name: str | None,
    usage_plan_id: str | None,
    key_id: str | None,
    days: int,
    region: str | None,
    profile: str | None,
) -> None:
    """Requests per key and day against the plan's quota."""
    from ..operate import keys as api_keys

    apigw, plan = _plan(stack_name, usage_plan_id, profile, region)
    limit = api_keys.quota(apigw, plan)
    rows = api_keys.usage(apigw, plan, days=days, key_id=key_id)
    click.echo(
        f"usage plan {plan}: quota " + (f"{limit.limit} requests per {limit.period.lower()}" if limit else "none")
    )
    if not rows:
        click.echo("no requests recorded in this window")
    for row in rows:
        click.echo(f"{row.key_id}: {row.used} requests in {len(row.days)} day(s)")
        for day, used, remaining in row.days:
            click.echo(f"  {day}  used {used:>8}  remaining {'-' if remaining is None else remaining}")


@keys.command("revoke")
@click.argument("key_id")
@_plan_option
@click.option("--delete", is_flag=True, help="Delete the key instead of disabling it.")
@region_option
@profile_option
def keys_revoke(
    key_id: str,
    stack_name: str | None,
    usage_plan_id: str | None,
    delete: bool,
    region: str | None,
    profile: str | None,
) -> None:
    """Disable KEY_ID (403 from then on, history kept), or delete it with --delete."""
    from ..operate import keys as api_keys

    apigw, plan = _plan(stack_name, usage_plan_id, profile, region)
    done = api_keys.revoke(apigw, plan, key_id, delete=delete)
    click.echo(f"{key_id}: {done}")
