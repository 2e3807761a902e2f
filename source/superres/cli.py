"""``superres``: upscale files, manage the model store."""

from __future__ import annotations

import sys
import time
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import click
from tqdm import tqdm

from . import codec
from .engine import Upscaler
from .errors import SuperResError
from .manifest import DEFAULT_MODEL, MODELS, ModelSpec, get_spec
from .store import MODEL_DIR_ENV, FileStatus, ModelStore, default_model_dir
from .tiling import TileConfig

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
UPSCALERS = [name for name, spec in MODELS.items() if spec.scale > 1]

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
    "--bf16/--fp32",
    default=None,
    help="Network trunk in bf16 (CPUs with AMX/AVX512-BF16; >= 50 dB vs fp32) or fp32 [default: bf16 where native].",
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
    bf16: bool | None,
) -> None:
    """Upscale image files and folders of images."""
    spec = get_spec(model)
    try:
        upscaler = Upscaler.from_file(
            ModelStore(model_dir).path(spec), spec, device=device, bf16=bf16, tiles=TileConfig(tile=tile, pad=pad)
        )
    except (SuperResError, ValueError) as error:
        raise click.ClickException(str(error)) from None
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


@main.command()
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
def serve(host: str, port: int, model_dir: Path | None, variant: str) -> None:
    """Serve POST /resolution (and the SageMaker routes) on this machine."""
    import uvicorn

    from .service.local import local_app
    from .service.settings import ServiceSettings

    overrides = {"model_dir": model_dir} if model_dir else {}
    try:
        app = local_app(ServiceSettings.for_variant(variant, **overrides))
    except SuperResError as error:
        raise click.ClickException(error.message) from None
    uvicorn.run(app, host=host, port=port, log_level="info")


_URL_PREFIXES = ("http://", "https://", "s3://")


@main.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--scale", type=click.Choice(["2", "4"]), default="4", show_default=True)
@model_dir_option
@click.option(
    "--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=Path("out"), show_default=True
)
def demo(image: Path, scale: str, model_dir: Path | None, output: Path) -> None:
    """Start the local service on 127.0.0.1, upscale IMAGE through POST /resolution over HTTP, stop."""
    from .client import ResolutionAPIError, ResolutionClient
    from .service.local import local_app, serving
    from .service.settings import ServiceSettings

    overrides = {"model_dir": model_dir} if model_dir else {}
    try:
        app = local_app(ServiceSettings.for_variant("local", **overrides))
    except SuperResError as error:
        raise click.ClickException(error.message) from None
    with serving(app) as base_url:
        endpoint = f"{base_url}/resolution"
        click.echo(f"service up at {endpoint}; POST {image.name} scale={scale} ...")
        started = time.perf_counter()
        try:
            with ResolutionClient(endpoint, timeout=3600) as api:
                result = api.upscale(image.read_bytes(), scale=int(scale))
        except ResolutionAPIError as error:
            raise click.ClickException(str(error)) from None
    output.mkdir(parents=True, exist_ok=True)
    target = output / f"{image.stem}_x{scale}.{'jpg' if result.format == 'jpeg' else result.format}"
    target.write_bytes(result.image)
    click.echo(
        f"{target} ({result.width}x{result.height}, {result.metadata.get('model')}) in "
        f"{time.perf_counter() - started:.1f}s over HTTP"
    )


@main.command("client")
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
    from botocore.exceptions import NoCredentialsError

    from .client import ResolutionAPIError, ResolutionClient

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
        click.echo(str(error), err=True)  # HTTP <status> <code>: <message>
        sys.exit(1)
    except NoCredentialsError as error:
        raise click.ClickException(str(error)) from None
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


# ---------------------------------------------------------------- AWS: stacks and customer keys

_VARIANTS = ("lambda", "gpu", "inf1")
region_option = click.option(
    "--region", default=None, help="AWS region [default: the credential chain's, e.g. $AWS_REGION]."
)
profile_option = click.option("--profile", default=None, help="Named AWS profile [default: the credential chain].")


def _aws(profile: str | None, region: str | None, *services: str) -> list[Any]:
    """boto3 clients for ``services``, or a clear error if the profile or region is missing."""
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        session = boto3.session.Session(profile_name=profile, region_name=region)
        if not session.region_name:
            raise click.ClickException("no AWS region: pass --region or set AWS_REGION")
        return [session.client(service) for service in services]
    except BotoCoreError as error:
        raise click.ClickException(str(error)) from None


def _aws_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    from .operate.keys import ApiKeyError
    from .operate.stack import StackError

    return (StackError, ApiKeyError, ValueError, BotoCoreError, ClientError)


@main.group()
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
    from .operate import stack as stacks
    from .operate.links import VARIANTS

    name = stack_name or f"superres-{variant}"
    chosen = template or str(Path("deployment") / "global-s3-assets" / VARIANTS[variant][1])
    cfn, s3 = _aws(profile, region, "cloudformation", "s3")
    try:
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
    except _aws_errors() as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{result.stack_name}: {result.status}")
    for line in stacks.format_outputs(result.outputs):
        click.echo(f"  {line}")


@stack.command("outputs")
@click.argument("stack_name")
@region_option
@profile_option
def stack_outputs(stack_name: str, region: str | None, profile: str | None) -> None:
    """Print the stack's outputs (invoke URL, API key id, usage plan, ...)."""
    from .operate import stack as stacks

    (cfn,) = _aws(profile, region, "cloudformation")
    try:
        outputs = stacks.stack_outputs(cfn, stack_name)
    except _aws_errors() as error:
        raise click.ClickException(str(error)) from None
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
    from .operate import stack as stacks

    if not yes:
        click.confirm(
            f"Delete stack {stack_name} (the API, its usage plan and first key; see README, Uninstall)?", abort=True
        )
    (cfn,) = _aws(profile, region, "cloudformation")
    try:
        result = stacks.delete(cfn, stack_name, log=click.echo, poll=poll, timeout=timeout)
    except _aws_errors() as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{stack_name}: {result.status}")


def _plan_option(command: Any) -> Any:
    command = click.option(
        "--usage-plan-id", default=None, help="The usage plan [default: the stack's UsagePlanId output]."
    )(command)
    return click.option("--stack", "stack_name", default=None, help="Stack whose usage plan to use.")(command)


def _plan(stack_name: str | None, plan_id: str | None, profile: str | None, region: str | None) -> tuple[Any, str]:
    from .operate.keys import plan_of_stack

    if bool(stack_name) == bool(plan_id):
        raise click.UsageError("give exactly one of --stack and --usage-plan-id")
    cfn, apigw = _aws(profile, region, "cloudformation", "apigateway")
    try:
        return apigw, plan_id or plan_of_stack(cfn, stack_name or "")
    except _aws_errors() as error:
        raise click.ClickException(str(error)) from None


@main.group()
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
    from .operate import keys as api_keys

    apigw, plan = _plan(stack_name, usage_plan_id, profile, region)
    try:
        key = api_keys.issue(apigw, plan, customer)
    except _aws_errors() as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"key id:    {key.id}\ncustomer:  {key.customer}\nplan:      {plan}\nvalue:     {key.value}")
    click.echo("Send the value to the customer; they pass it as the x-api-key header.")


@keys.command("list")
@_plan_option
@region_option
@profile_option
def keys_list(stack_name: str | None, usage_plan_id: str | None, region: str | None, profile: str | None) -> None:
    """The plan's keys: id, state, created, customer."""
    from .operate import keys as api_keys

    apigw, plan = _plan(stack_name, usage_plan_id, profile, region)
    try:
        found = api_keys.list_keys(apigw, plan)
    except _aws_errors() as error:
        raise click.ClickException(str(error)) from None
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
    from .operate import keys as api_keys

    apigw, plan = _plan(stack_name, usage_plan_id, profile, region)
    try:
        limit = api_keys.quota(apigw, plan)
        rows = api_keys.usage(apigw, plan, days=days, key_id=key_id)
    except _aws_errors() as error:
        raise click.ClickException(str(error)) from None
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
    from .operate import keys as api_keys

    apigw, plan = _plan(stack_name, usage_plan_id, profile, region)
    try:
        done = api_keys.revoke(apigw, plan, key_id, delete=delete)
    except _aws_errors() as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{key_id}: {done}")


def _spec_or_exit(name: str) -> ModelSpec:
    try:
        return get_spec(name)
    except KeyError as error:
        raise click.BadParameter(error.args[0]) from None


if __name__ == "__main__":
    main()
