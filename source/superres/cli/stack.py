"""``superres stack``: deploy, inspect and delete a kit stack (boto3 CloudFormation)."""

from __future__ import annotations

from pathlib import Path

import click

from .aws import aws_clients, profile_option, region_option
from .reporting import ReportingGroup

_VARIANTS = ("lambda", "gpu", "inferentia")


@click.group(cls=ReportingGroup)
def stack() -> None:
    """Deploy, inspect and delete a kit stack (boto3 CloudFormation)."""


@stack.command("deploy")
@click.argument("variant", type=click.Choice(_VARIANTS))
@click.option("--stack-name", default=None, help="[default: superres-VARIANT]")
@click.option(
    "--template",
    default=None,
    help="https:// URL of a published template, or a file [default: "
    "deployment/global-s3-assets/<variant's template> from build-s3-dist.sh].",
)
@click.option("--template-bucket", default=None, help="Bucket to upload a template file to (files over 51,200 bytes).")
@click.option(
    "--parameter", "-p", "parameters", multiple=True, metavar="KEY=VALUE", help="Stack parameter; repeat for more."
)
@click.option("--timeout", type=click.FloatRange(min=1), default=3600, show_default=True, help="Seconds to wait.")
@click.option("--poll", type=click.FloatRange(min=0.05), default=5, show_default=True, help="Seconds between polls.")
@region_option
@profile_option
def stack_deploy(
    variant: str,
    stack_name: str | None,
    template: str | None,
    template_bucket: str | None,
    parameters: tuple[str, ...],
    timeout: float,
    poll: float,
    region: str | None,
    profile: str | None,
) -> None:
    """Create or update the VARIANT stack, print its events until done, then its outputs."""
    from ..operate import stack as stacks
    from ..operate.links import VARIANTS

    name = stack_name or f"superres-{variant}"
    chosen = template or str(Path("deployment") / "global-s3-assets" / VARIANTS[variant][1])
    cfn, s3 = aws_clients(profile, region, "cloudformation", "s3")
    source = stacks.template_source(chosen, s3, template_bucket, name)
    result = stacks.deploy(
        cfn,
        name,
        source,
        stacks.parse_parameters(parameters),
        log=click.echo,
        poll=poll,
        timeout=timeout,
        tags={"superres:variant": variant},
    )
    click.echo(f"{result.stack_name}: {result.status}")
    for line in stacks.format_outputs(result.outputs):
        click.echo(f"  {line}")


@stack.command("outputs")
@click.argument("stack_name")
@region_option
@profile_option
def stack_outputs(stack_name: str, region: str | None, profile: str | None) -> None:
    """Print the stack's outputs (invoke URL, API key id, usage plan, ...)."""
    from ..operate import stack as stacks

    (cfn,) = aws_clients(profile, region, "cloudformation")
    outputs = stacks.stack_outputs(cfn, stack_name)
    for line in stacks.format_outputs(outputs):
        click.echo(line)


@stack.command("delete")
@click.argument("stack_name")
@click.option("--yes", is_flag=True, help="Do not ask.")
@click.option("--timeout", type=click.FloatRange(min=1), default=3600, show_default=True)
@click.option("--poll", type=click.FloatRange(min=0.05), default=5, show_default=True)
@region_option
@profile_option
def stack_delete(
    stack_name: str, yes: bool, timeout: float, poll: float, region: str | None, profile: str | None
) -> None:
    """Delete the stack and wait (see README, Uninstall, for what stays)."""
    from ..operate import stack as stacks

    if not yes:
        click.confirm(
            f"Delete stack {stack_name} (the API, its usage plan and first key; see README, Uninstall)?", abort=True
        )
    (cfn,) = aws_clients(profile, region, "cloudformation")
    result = stacks.delete(cfn, stack_name, log=click.echo, poll=poll, timeout=timeout)
    click.echo(f"{stack_name}: {result.status}")
