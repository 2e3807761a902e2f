"""Options more than one command group takes."""

from __future__ import annotations

from pathlib import Path

import click

from ..store import MODEL_DIR_ENV, default_model_dir

model_dir_option = click.option(
    "--model-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Model directory [default: ${MODEL_DIR_ENV}, else {default_model_dir()}].",
)
