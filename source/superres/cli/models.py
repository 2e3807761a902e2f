"""``superres models``: list, download and verify the model files."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from tqdm import tqdm

from ..manifest import DEFAULT_MODEL, MODELS, ModelSpec, get_spec
from ..store import FileStatus, ModelStore
from .options import model_dir_option
from .reporting import ReportingGroup


@click.group(cls=ReportingGroup)
def models() -> None:
    """List, download and verify model files."""


@models.command("list")
@model_dir_option
def models_list(model_dir: Path | None) -> None:
    """The supported models and whether each is in the model directory."""
    store = ModelStore(model_dir)
    click.echo(f"model directory: {store.directory}")
    for spec in MODELS.values():
        found = store.find(spec)
        state = found.name if found else "not downloaded"
        click.echo(
            f"{spec.name:28} x{spec.scale} {spec.architecture:8} {spec.size / 1e6:6.1f} MB "
            f"{spec.mflop_per_pixel:6.2f} MFLOP/px  {spec.purpose}; {state}"
        )


@models.command("fetch")
@click.argument("names", nargs=-1)
@model_dir_option
@click.option("--all", "fetch_all", is_flag=True, help="Every model of the manifest.")
@click.option(
    "--url", default=None, help="Download from this URL (a mirror) instead; size and sha256 are still checked."
)
def models_fetch(names: tuple[str, ...], model_dir: Path | None, fetch_all: bool, url: str | None) -> None:
    """Download official model files, verifying size and sha256."""
    store = ModelStore(model_dir)
    chosen = list(MODELS) if fetch_all else list(names) or [DEFAULT_MODEL]
    for name in chosen:
        spec = _spec_or_exit(name)
        with tqdm(total=spec.size, unit="B", unit_scale=True, desc=spec.filename, delay=1.0) as bar:
            path = store.fetch(spec, url=url, on_progress=lambda done, _: bar.update(done - bar.n))
        click.echo(f"{spec.name}: {path} (sha256 verified)")


@models.command("verify")
@click.argument("names", nargs=-1)
@model_dir_option
def models_verify(names: tuple[str, ...], model_dir: Path | None) -> None:
    """Check the sha256 of downloaded files; exit 1 on a mismatch."""
    store = ModelStore(model_dir)
    bad = False
    for name in names or tuple(MODELS):
        result = store.verify(_spec_or_exit(name))
        bad |= result.status is FileStatus.MISMATCH
        click.echo(f"{result.name:28} {result.status.value:11} {result.path or ''} {result.detail}")
    if bad:
        sys.exit(1)


def _spec_or_exit(name: str) -> ModelSpec:
    try:
        return get_spec(name)
    except KeyError as error:
        raise click.BadParameter(error.args[0]) from None
