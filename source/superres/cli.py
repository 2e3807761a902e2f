"""``superres``: upscale files, manage the model store."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from tqdm import tqdm

from . import codec
from .engine import Upscaler
from .errors import SuperResError
from .manifest import DEFAULT_MODEL, MODELS, get_spec
from .store import MODEL_DIR_ENV, FileStatus, ModelStore, default_model_dir
from .tiling import TileConfig

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}

model_dir_option = click.option(
    "--model-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Model directory [default: ${MODEL_DIR_ENV}, else {default_model_dir()}].",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Real-ESRGAN super-resolution: the engine behind POST /resolution."""


def _collect(inputs: tuple[Path, ...]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            files.extend(sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            files.append(item)
    return files


def _destination(source: Path, output: Path, scale: int, fmt: str | None, single: bool) -> Path:
    if single and output.suffix:
        return output
    suffix = f".{'jpg' if fmt == 'jpeg' else fmt}" if fmt else source.suffix
    return output / f"{source.stem}_x{scale}{suffix}"


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--scale", type=click.Choice(["2", "4"]), default="4", show_default=True)
@click.option("--model", type=click.Choice(list(MODELS)), default=DEFAULT_MODEL, show_default=True)
@model_dir_option
@click.option("--tile", type=int, default=TileConfig.tile, show_default=True, help="Tile core size in input pixels; 0 = whole image.")
@click.option("--pad", type=int, default=TileConfig.pad, show_default=True, help="Context around each tile.")
@click.option("--format", "fmt", type=click.Choice(codec.OUTPUT_FORMATS), default=None, help="Output format [default: the input's].")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=Path("out"), show_default=True, help="Output folder, or a file name for a single input.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
def upscale(
    inputs: tuple[Path, ...],
    scale: str,
    model: str,
    model_dir: Path | None,
    tile: int,
    pad: int,
    fmt: str | None,
    output: Path,
    device: str,
) -> None:
    """Upscale image files and folders of images."""
    spec = get_spec(model)
    try:
        upscaler = Upscaler.from_file(
            ModelStore(model_dir).path(spec), spec, device=device, tiles=TileConfig(tile=tile, pad=pad)
        )
    except SuperResError as error:
        raise click.ClickException(error.message) from None
    files = _collect(inputs)
    single = len(files) == 1 and not inputs[0].is_dir()
    failed = 0
    for source in tqdm(files, desc="images", unit="img", disable=single):
        destination = _destination(source, output, int(scale), fmt, single)
        try:
            started = time.perf_counter()
            pixels, info = codec.decode(source.read_bytes())
            with tqdm(desc=source.name, unit="tile", leave=False) as bar:

                def progress(done: int, total: int) -> None:
                    bar.total = total
                    bar.update(done - bar.n)

                result = upscaler.upscale(pixels, int(scale), on_progress=progress)
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(codec.encode(result, fmt or info.format))
        except (SuperResError, OSError) as error:
            failed += 1
            tqdm.write(f"FAILED {source}: {getattr(error, 'message', error)}", file=sys.stderr)
            continue
        tqdm.write(
            f"{source} ({info.width}x{info.height}) -> {destination} "
            f"({result.shape[1]}x{result.shape[0]}) in {time.perf_counter() - started:.1f}s"
        )
    if failed:
        raise click.ClickException(f"{failed} of {len(files)} images failed")


@main.group()
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
@click.option("--url", default=None, help="Download from this URL (a mirror) instead; size and sha256 are still checked.")
def models_fetch(names: tuple[str, ...], model_dir: Path | None, fetch_all: bool, url: str | None) -> None:
    """Download official model files, verifying size and sha256."""
    store = ModelStore(model_dir)
    chosen = list(MODELS) if fetch_all else list(names) or [DEFAULT_MODEL]
    for name in chosen:
        spec = _spec_or_exit(name)
        with tqdm(total=spec.size, unit="B", unit_scale=True, desc=spec.filename) as bar:
            try:
                path = store.fetch(spec, url=url, on_progress=lambda done, _: bar.update(done - bar.n))
            except SuperResError as error:
                raise click.ClickException(error.message) from None
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


def _spec_or_exit(name: str):
    try:
        return get_spec(name)
    except KeyError as error:
        raise click.BadParameter(error.args[0]) from None


if __name__ == "__main__":
    main()
