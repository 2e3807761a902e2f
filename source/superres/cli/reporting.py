"""How every command fails: the errors a user can act on become one line and exit status 1.

Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any

import click

from ..errors import SuperResError


def _reported_errors() -> tuple[type[Exception], ...]:
    # Called only when a command fails (an ``except`` clause is evaluated then), so the CLI
    # starts without importing botocore or the HTTP client.
    from botocore.exceptions import BotoCoreError, ClientError

    from ..client import ResolutionAPIError
    from ..operate.keys import ApiKeyError
    from ..operate.stack import StackError

    # ValueError: bad arguments the library refuses (a device name, a KEY=VALUE, a customer name).
    return (SuperResError, ValueError, StackError, ApiKeyError, ResolutionAPIError, BotoCoreError, ClientError)


class ReportingCommand(click.Command):
    """A command whose expected failures print ``Error: <message>`` and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _reported_errors() as error:
            raise click.ClickException(str(error)) from None


class ReportingGroup(click.Group):
    """A group whose commands, and subgroups' commands, are ``ReportingCommand``s."""

    command_class = ReportingCommand
    group_class = type  # subgroups are ReportingGroups too
