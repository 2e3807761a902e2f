"""``superres``: upscale files, manage the model store, deploy and operate a stack.

One module per command group: ``images`` (upscale, serve, demo, client), ``models``,
``stack`` and ``keys``; ``reporting`` is how every command fails.
"""

from __future__ import annotations

import click

from .images import client, demo, serve, upscale
from .keys import keys
from .models import models
from .reporting import ReportingGroup
from .stack import stack

__all__ = ["main"]


@click.group(cls=ReportingGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Real-ESRGAN super-resolution: the engine behind POST /resolution."""


for _command in (upscale, serve, demo, client, models, stack, keys):
    main.add_command(_command)
