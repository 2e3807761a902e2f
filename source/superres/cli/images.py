"""Commands that upscale images: on this machine, through a local service, or a deployed endpoint."""

from __future__ import annotations

import sys
import time
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, get_args
from urllib.parse import urlsplit

import click
from tqdm import tqdm

from .. import codec
from ..engine import Upscaler
from ..errors import SuperResError
from ..manifest import DEFAULT_MODEL, MODELS, get_spec
from ..runtimes import Runtime
from ..store import ModelStore
from ..tiling import TileConfig
from .options import model_dir_option
from .reporting import ReportingCommand

if TYPE_CHECKING:
    from ..service.settings import Variant

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
UPSCALERS = [name for name, spec in MODELS.items() if spec.scale > 1]


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


@click.command(cls=ReportingCommand)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--scale", type=click.Choice(["2", "4"]), default="4", show_default=True)
@click.option("--model", type=click.Choice(UPSCALERS), default=DEFAULT_MODEL, show_default=True)
@model_dir_option
@click.option(
    "--tile",
    type=int,
    default=TileConfig.tile,
    show_default=True,
    help="Tile core size in input pixels; 0 = whole image.",
)
@click.option("--pad", type=int, default=TileConfig.pad, show_default=True, help="Context around each tile.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(codec.OUTPUT_FORMATS),
    default=None,
    help="Output format [default: the input's].",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    default=Path("out"),
    show_default=True,
    help="Output folder, or a file name for a single input.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
@click.option(
    "--runtime",
    type=click.Choice(get_args(Runtime)),
    default="auto",
    show_default=True,
    help="auto: torch on CUDA, OpenVINO on the CPU.",
)
@click.option(
    "--bf16/--fp32",
    default=None,
    help="The network in bf16 after an fp32 first layer (CPUs with AMX/AVX512-BF16; >= 50 dB vs fp32) or fp32 "
    "[default: bf16 where native].",
)
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
    runtime: Runtime,
    bf16: bool | None,
) -> None:
    """Upscale image files and folders of images."""
    spec = get_spec(model)
    upscaler = Upscaler.from_file(
        ModelStore(model_dir).path(spec),
        spec,
        runtime=runtime,
        device=device,
        bf16=bf16,
        tiles=TileConfig(tile=tile, pad=pad),
    )
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


@click.command(cls=ReportingCommand)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Interface to listen on; 127.0.0.1 keeps it on this machine."
)
@click.option("--port", type=int, default=8080, show_default=True)
@model_dir_option
@click.option(
    "--variant",
    type=click.Choice(["local", "lambda", "gpu"]),
    default="local",
    show_default=True,
    help="Whose limits to apply.",
)
def serve(host: str, port: int, model_dir: Path | None, variant: Variant) -> None:
    """Serve POST /resolution (and the SageMaker routes) on this machine."""
    import uvicorn

    from ..service.local import local_app
    from ..service.settings import ServiceSettings

    overrides = {"model_dir": model_dir} if model_dir else {}
    app = local_app(ServiceSettings.for_variant(variant, **overrides))
    uvicorn.run(app, host=host, port=port, log_level="info")


_URL_PREFIXES = ("http://", "https://", "s3://")


@click.command(cls=ReportingCommand)
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--scale", type=click.Choice(["2", "4"]), default="4", show_default=True)
@model_dir_option
@click.option(
    "--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=Path("out"), show_default=True
)
def demo(image: Path, scale: str, model_dir: Path | None, output: Path) -> None:
    """Start the local service on 127.0.0.1, upscale IMAGE through POST /resolution over HTTP, stop."""
    from ..client import ResolutionClient
    from ..service.local import local_app, serving
    from ..service.settings import ServiceSettings

    overrides = {"model_dir": model_dir} if model_dir else {}
    app = local_app(ServiceSettings.for_variant("local", **overrides))
    with serving(app) as base_url:
        endpoint = f"{base_url}/resolution"
        click.echo(f"service up at {endpoint}; POST {image.name} scale={scale} ...")
        started = time.perf_counter()
        with ResolutionClient(endpoint, timeout=3600) as api:
            result = api.upscale(image.read_bytes(), scale=int(scale))
    output.mkdir(parents=True, exist_ok=True)
    target = output / f"{image.stem}_x{scale}.{'jpg' if result.format == 'jpeg' else result.format}"
    target.write_bytes(result.image)
    click.echo(
        f"{target} ({result.width}x{result.height}, {result.metadata.get('model')}) in "
        f"{time.perf_counter() - started:.1f}s over HTTP"
    )


@click.command("client", cls=ReportingCommand)
@click.argument("endpoint")
@click.argument("image_or_url")
@click.option("--scale", type=click.Choice(["2", "4"]), default="2", show_default=True)
@click.option("--face", is_flag=True, help="Restore faces (deployments with a face model only).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jpeg", "png", "webp"]),
    default=None,
    help="Output format [default: the input's].",
)
@click.option(
    "--quality", type=click.IntRange(1, 100), default=None, help="JPEG/WebP quality [default: the service's, 95]."
)
@click.option(
    "--api-key",
    envvar="SUPERRES_API_KEY",
    default=None,
    help="Sent as x-api-key (API Gateway usage plans) [env: SUPERRES_API_KEY].",
)
@click.option(
    "--sigv4",
    "region",
    default=None,
    metavar="REGION",
    help="Sign with SigV4 for IAM auth, using the AWS credential chain.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Result file [default: <stem>_x<scale>.<format> here].",
)
def client(
    endpoint: str,
    image_or_url: str,
    scale: str,
    face: bool,
    fmt: str | None,
    quality: int | None,
    api_key: str | None,
    region: str | None,
    output: Path | None,
) -> None:
    """Upscale IMAGE_OR_URL (a file, or an http(s):// or s3:// URL the service fetches) through
    ENDPOINT, the full URL of a deployed POST /resolution (or of `superres serve`)."""
    import httpx

    from ..client import ResolutionAPIError, ResolutionClient

    is_url = image_or_url.startswith(_URL_PREFIXES)
    try:
        image = None if is_url else Path(image_or_url).read_bytes()
    except OSError as error:
        raise click.ClickException(f"cannot read {image_or_url}: {error.strerror or error}") from None
    try:
        with ResolutionClient(endpoint, api_key=api_key, sigv4_region=region) as api:
            result = api.upscale(
                image, url=image_or_url if is_url else None, scale=int(scale), face=face, format=fmt, quality=quality
            )
    except ResolutionAPIError as error:
        click.echo(str(error), err=True)  # HTTP <status> <code>: <message>, without click's "Error: "
        sys.exit(1)
    except httpx.HTTPError as error:
        raise click.ClickException(f"{endpoint}: {type(error).__name__}: {error}") from None
    if output is None:
        stem = PurePosixPath(urlsplit(image_or_url).path).stem if is_url else Path(image_or_url).stem
        output = Path(f"{stem or 'image'}_x{scale}.{'jpg' if result.format == 'jpeg' else result.format}")
    try:
        output.write_bytes(result.image)
    except OSError as error:
        raise click.ClickException(f"cannot write {output}: {error.strerror or error}") from None
    click.echo(f"{output} ({result.width}x{result.height})")
