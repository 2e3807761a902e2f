"""What the AWS commands (stack, keys) share: where to connect and with which credentials."""

from __future__ import annotations

from typing import Any

import click

region_option = click.option(
    "--region", default=None, help="AWS region [default: the credential chain's, e.g. $AWS_REGION]."
)
profile_option = click.option("--profile", default=None, help="Named AWS profile [default: the credential chain].")


def aws_clients(profile: str | None, region: str | None, *services: str) -> list[Any]:
    """boto3 clients for ``services``, or a clear error if the region is missing.

    A missing profile raises botocore's ProfileNotFound, which the command reports.
    """
    import boto3

    session = boto3.session.Session(profile_name=profile, region_name=region)
    if not session.region_name:
        raise click.ClickException("no AWS region: pass --region or set AWS_REGION")
    return [session.client(service) for service in services]
