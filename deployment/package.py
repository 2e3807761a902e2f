"""Build the deployment assets the AWS Solutions way, reproducibly.

    python deployment/package.py build BUCKET_PREFIX SOLUTION_NAME VERSION
        [--model-dir DIR] [--models NAME,NAME] [--no-fetch] [--out deployment]
    python deployment/package.py publish BUCKET_PREFIX SOLUTION_NAME VERSION --region R [--region R2 ...]
    python deployment/package.py links --global-bucket YOUR_BUCKET [--readme README.md]

(``deployment/build-s3-dist.sh`` is the thin shell entry point around ``build``.)
Why here and not in the ``superres`` CLI: these three need a checkout (templates/, source/,
README.md) and serve whoever publishes the kit; the installed ``superres`` command keeps
what a deployer and an operator need (``superres stack``, ``superres keys``). ``build`` writes

- ``global-s3-assets/``: the three templates of ``templates/`` with the placeholders
  substituted by ``templates/build.py``'s ``substitute``, named ``*.template``;
- ``regional-s3-assets/``: ``cpu-service.zip`` (the Lambda stack's API function and job
  worker), ``efs-model-stager.zip``, ``invoke-endpoint.zip`` (code plus third-party packages
  installed for the Lambda platform from ``requirements.lock``: the zip's dependency group
  in ``pyproject.toml`` and its closure, at their locked hashes, less what ``Prune`` leaves
  out), ``networks/`` (the chosen models that have an OpenVINO plan, converted to OpenVINO
  IR from their verified weights, and ``networks/manifest.json`` with each file's size and
  sha256: what the Lambda stack's stager puts on EFS), ``sagemaker-gpu-model.tar.gz`` and
  ``sagemaker-neuron-model.tar.gz`` (the weights, the host and its vendored packages for AWS's
  PyTorch inference image and its Neuron inference images: ``deployment/sagemaker_artifact.py``).

Reproducible: archive entries are sorted, every timestamp is ``SOURCE_DATE_EPOCH``, modes
are normalised, gzip carries no file name and no mtime; the same inputs give the same
bytes (``tests/test_deployment.py`` builds twice and compares).
"""

from __future__ import annotations

import fnmatch
import gzip
import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import click
from uv import find_uv_bin

from superres.errors import SuperResError
from superres.manifest import MODELS, get_spec
from superres.store import CONVERSION_SUFFIX, FileStatus, ModelStore, sha256_of

# Run as a script, only this file's folder is on the path; the checkout's root holds the
# deployment package of the modules beside it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from deployment import sagemaker_artifact

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SOURCE = ROOT / "source"
#: The kit's one lockfile (make lock): versions and hashes of everything it installs.
LOCKFILE = ROOT / "requirements.lock"

#: Global asset name -> generated template in templates/.
TEMPLATES = {
    "lambda-efs.template": "lambda-efs.template.json",
    "sagemaker-gpu.template": "sagemaker-gpu.template.json",
    "sagemaker-inferentia.template": "sagemaker-inferentia.template.json",
}
#: The Lambda runtime the zips target (templates/build.py: LAMBDA_PYTHON = python3.12, x86_64):
#: Amazon Linux 2023, glibc 2.34, so manylinux_2_28 wheels and older ones run there.
LAMBDA_PLATFORM = "x86_64-manylinux_2_28"
LAMBDA_PYTHON_VERSION = "3.12"
#: Lambda's limit for a function's code and layers, unzipped (the build refuses more).
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
#: The folder of regional-s3-assets/ holding the converted networks, and their manifest.
NETWORKS_DIR = "networks"
NETWORKS_MANIFEST = "manifest.json"
#: Never packed: caches of Python and its tools.
IGNORED = {"__pycache__", ".mypy_cache", ".pytest_cache"}

#: The x4 networks the SageMaker host can serve plus the face models (templates/README.md).
DEFAULT_ARTIFACT_MODELS = (
    *(name for name, spec in MODELS.items() if spec.scale == 4 and spec.runtime == "spandrel"),
    "GFPGANv1.4",
    "YuNet",
)


class BuildError(Exception):
    """A build input is wrong or missing; the message says which and how to fix it."""


@dataclass(frozen=True)
class Prune:
    """What a zip leaves out of its installed packages. Every folder and pattern must match
    something, so a package that changes its layout fails the build instead of growing the zip."""

    #: folder -> glob patterns of the files kept in it (the others are removed)
    keep_only: dict[str, tuple[str, ...]]
    #: folders removed whole
    remove: tuple[str, ...]


#: OpenVINO as the CPU service runs it: the core, the CPU plugin, the IR reader (the release
#: ships IR) and TBB, its thread pool. Left out: the GPU and NPU plugins, the AUTO, HETERO
#: and BATCH meta-plugins, every other model frontend, the C API, the converter (ovc), the
#: headers and the GPU kernel cache: 178 MB installed, 93 MB kept.
OPENVINO_CPU_IR_ONLY = Prune(
    keep_only={
        "openvino/libs": (
            "libopenvino.so.*",
            "libopenvino_intel_cpu_plugin.so",
            "libopenvino_ir_frontend.so.*",
            "libtbb.so.*",
            "libtbbmalloc.so.*",
            "libtbbbind_2_5.so.*",
            "libhwloc.so.*",
        )
    },
    remove=(
        "openvino/include",
        "openvino/cmake",
        "openvino/tools",
        "openvino/frontend/jax",
        "openvino/frontend/onnx",
        "openvino/frontend/paddle",
        "openvino/frontend/pytorch",
        "openvino/frontend/tensorflow",
    ),
)


@dataclass(frozen=True)
class LambdaZip:
    """One zip asset: source files at given archive paths plus locked third-party packages."""

    name: str
    #: archive path -> file in the checkout
    files: dict[str, Path]
    #: the dependency group of pyproject.toml whose locked closure the zip carries
    group: str
    prune: Prune | None = None


def _package_files(package: str, prefix: str = "") -> dict[str, Path]:
    """Every file of ``source/<package>`` (code and package data), by archive path."""
    base = SOURCE / package
    return {
        f"{prefix}{path.relative_to(SOURCE).as_posix()}": path
        for path in sorted(base.rglob("*"))
        if path.is_file() and not IGNORED.intersection(path.relative_to(SOURCE).parts)
    }


def lambda_zips() -> list[LambdaZip]:
    """The zip assets the templates reference (see templates/README.md)."""
    store_modules = ("__init__", "errors", "manifest", "store")
    service = {**_package_files("lambda_sr"), **_package_files("superres")}
    return [
        LambdaZip("cpu-service.zip", service, "lambda-cpu-service", OPENVINO_CPU_IR_ONLY),
        LambdaZip(
            "efs-model-stager.zip",
            {
                "efs_model_stager.py": SOURCE / "custom_resources" / "efs_model_stager.py",
                **{f"superres/{m}.py": SOURCE / "superres" / f"{m}.py" for m in store_modules},
            },
            "lambda-model-stager",
        ),
        LambdaZip("invoke-endpoint.zip", service, "lambda-invoke-endpoint"),
    ]


# ---------------------------------------------------------------- pins


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def locked_versions(lock: Path = LOCKFILE) -> dict[str, set[str]]:
    """``name -> versions`` of every package in ``requirements.lock``, names normalised
    (a universal lock may hold a package at one version per Python or platform)."""
    versions: dict[str, set[str]] = {}
    for line in lock.read_text().splitlines():
        if line[:1].isalnum() and "==" in line:
            name, _, rest = line.partition("==")
            versions.setdefault(_normalise(name), set()).add(rest.split(";")[0].split("\\")[0].strip())
    return versions


def group_requirements(group: str, destination: Path, lock: Path = LOCKFILE) -> Path:
    """``group``'s members pinned at their versions in ``lock``, written to ``destination``.

    Installed with ``lock`` as constraints, their whole closure comes at the locked versions
    with the locked hashes.
    """
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text()).get("dependency-groups", {})
    if group not in groups:
        raise BuildError(f"pyproject.toml has no dependency group {group}")
    versions = locked_versions(lock)
    pins = []
    for name in groups[group]:
        found = versions.get(_normalise(name), set())
        if len(found) != 1:
            held = f"at {len(found)} versions" if found else "not at all"
            raise BuildError(f"{lock.name} holds {name} {held}; a zip needs one (run make lock)")
        pins.append(f"{name}=={found.pop()}\n")
    destination.write_text("".join(pins))
    return destination


def install_for_lambda(
    requirements: Path,
    target: Path,
    excludes: Path | None = None,
    lock: Path = LOCKFILE,
    python_version: str = LAMBDA_PYTHON_VERSION,
) -> None:
    """Install the hashed wheels of ``requirements``, built for the Lambda platform, into ``target``.

    uv evaluates the lock's environment markers for the target (python3.12 on x86_64
    Linux), not for the machine running the build; every file must match its hash in ``lock``.
    The GPU container runs the same Python on the same platform, the Neuron images
    ``python_version`` 3.10 from a lock of their own. ``excludes`` names packages left out of
    the closure (the container's own).
    """
    command = [
        find_uv_bin(),
        "pip",
        "install",
        "--quiet",
        "--require-hashes",
        "--no-build",
        "--constraints",
        str(lock),
        "--python-platform",
        LAMBDA_PLATFORM,
        "--python-version",
        python_version,
        "--target",
        str(target),
        "--requirements",
        str(requirements),
        *(["--excludes", str(excludes)] if excludes else []),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
        raise BuildError(f"could not install {requirements.name} for the Lambda platform:\n{result.stderr.strip()}")
    # Console scripts carry this machine's interpreter path and are never run in Lambda;
    # uv's lock file of the target folder is not part of any package.
    shutil.rmtree(target / "bin", ignore_errors=True)
    (target / ".lock").unlink(missing_ok=True)


def prune(site: Path, plan: Prune) -> None:
    """Remove what ``plan`` leaves out of the packages installed in ``site``."""
    for folder in plan.remove:
        if not (site / folder).is_dir():
            raise BuildError(f"nothing to prune at {folder}: the package's layout changed, update Prune")
        shutil.rmtree(site / folder)
    for folder, patterns in plan.keep_only.items():
        files = [path for path in (site / folder).iterdir() if path.is_file()]
        unmatched = [p for p in patterns if not any(fnmatch.fnmatch(f.name, p) for f in files)]
        if unmatched:
            raise BuildError(f"{folder} has no {', '.join(unmatched)}: the package's layout changed, update Prune")
        for path in files:
            if not any(fnmatch.fnmatch(path.name, p) for p in patterns):
                path.unlink()


# ---------------------------------------------------------------- reproducible archives


def source_date_epoch() -> int:
    """``$SOURCE_DATE_EPOCH``, else 1980-01-01 (the earliest time a zip entry can hold)."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "315532800")
    try:
        return max(int(value), 315532800)
    except ValueError:
        raise BuildError(f"SOURCE_DATE_EPOCH must be an integer (seconds since 1970), not {value!r}") from None


def _mode(path: Path) -> int:
    return 0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644


def write_zip(destination: Path, entries: dict[str, Path], epoch: int) -> None:
    """A zip of ``entries`` (archive path -> file), sorted, with fixed times and modes."""
    date_time = time.gmtime(epoch)[:6]
    with zipfile.ZipFile(destination, "w") as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=date_time)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so external_attr carries the mode
            info.external_attr = (stat.S_IFREG | _mode(entries[name])) << 16
            archive.writestr(info, entries[name].read_bytes(), compresslevel=9)


def write_tar_gz(destination: Path, entries: dict[str, Path], epoch: int) -> None:
    """A gzipped tar of ``entries``: sorted, owner 0:0, mtimes ``epoch``; the gzip header has no name, mtime 0."""
    with (
        destination.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for name in sorted(entries):
            info = tarfile.TarInfo(name)
            info.size = entries[name].stat().st_size
            info.mtime = epoch
            info.mode = _mode(entries[name])
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with entries[name].open("rb") as handle:
                archive.addfile(info, handle)


def tree_entries(base: Path, prefix: str = "") -> dict[str, Path]:
    """Every file under ``base`` by archive path (symlinks followed)."""
    return {
        f"{prefix}{path.relative_to(base).as_posix()}": path
        for path in base.rglob("*")
        if path.is_file() and not IGNORED.intersection(path.relative_to(base).parts)
    }


# ---------------------------------------------------------------- assets


def _templates_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("templates_build", ROOT / "templates" / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_templates(out: Path, values: dict[str, str]) -> list[Path]:
    """The three templates with every placeholder substituted."""
    build = _templates_build()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for asset, generated in TEMPLATES.items():
        target = out / asset
        target.write_text(build.substitute((ROOT / "templates" / generated).read_text(), values))
        written.append(target)
    return written


def build_lambda_zip(spec: LambdaZip, out: Path, epoch: int) -> Path:
    with tempfile.TemporaryDirectory(prefix="superres-zip-") as scratch:
        site = Path(scratch) / "site"
        install_for_lambda(group_requirements(spec.group, Path(scratch) / "requirements.txt"), site)
        if spec.prune:
            prune(site, spec.prune)
        entries = tree_entries(site)
        clash = sorted(set(entries) & set(spec.files))
        if clash:
            raise BuildError(f"{spec.name}: a third-party package ships {clash[0]}, which is ours")
        entries.update(spec.files)
        unzipped = sum(path.stat().st_size for path in entries.values())
        if unzipped > LAMBDA_UNZIPPED_LIMIT:
            raise BuildError(f"{spec.name} unzips to {unzipped:,} bytes, past Lambda's {LAMBDA_UNZIPPED_LIMIT:,}")
        target = out / spec.name
        write_zip(target, entries, epoch)
    return target


def build_networks(out: Path, weights: dict[str, Path]) -> list[Path]:
    """``networks/<name>.openvino/`` for each model (name -> verified weight file) that has an
    OpenVINO plan, converted as the local runtime converts it, and ``networks/manifest.json``:
    each file's size and sha256, which the stager checks before a file gets its name on EFS."""
    from superres.runtimes.openvino_runner import convert, openvino_version

    folder = out / NETWORKS_DIR
    networks: dict[str, object] = {}
    for name, path in weights.items():
        spec = get_spec(name)
        if spec.openvino is None:
            continue
        converted = convert(path, spec, folder / f"{name}{CONVERSION_SUFFIX}")
        networks[name] = {
            "plan": spec.openvino,
            "weights_sha256": sha256_of(path),
            "files": {
                file.name: {"size": file.stat().st_size, "sha256": sha256_of(file)}
                for file in sorted(converted.iterdir())
            },
        }
    manifest = folder / NETWORKS_MANIFEST
    folder.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"openvino": openvino_version(), "networks": networks}, indent=2) + "\n")
    return [manifest, *sorted(p for p in folder.rglob("*") if p.is_file() and p != manifest)]


def model_files(names: Sequence[str], model_dir: Path | None, fetch: bool) -> dict[str, Path]:
    """The verified weight file of each model, by model name.

    With ``fetch`` a missing file is downloaded from its official URL (size and sha256
    checked by the store); without, a missing or unknown file is an error.
    """
    store = ModelStore(model_dir)
    files: dict[str, Path] = {}
    for name in names:
        try:
            spec = get_spec(name)
        except KeyError as error:
            raise BuildError(error.args[0]) from None
        try:
            path = store.fetch(spec) if fetch else store.path(spec)
        except SuperResError as error:
            raise BuildError(error.message) from None
        checked = store.verify(spec)
        if checked.status not in (FileStatus.OFFICIAL, FileStatus.KNOWN_COPY):
            raise BuildError(f"{path}: {checked.detail}; refusing to ship it")
        files[name] = path
    return files


def weight_entries(weights: dict[str, Path]) -> dict[str, Path]:
    """Model name -> weight file, as archive entries at the root (the file names)."""
    return {path.name: path for path in weights.values()}


def build_model_artifact(
    artifact: sagemaker_artifact.ModelArtifact, out: Path, weights: dict[str, Path], epoch: int
) -> Path:
    """A SageMaker model artifact: weights, ``code/inference.py``, the core and its vendored
    packages for the image's Python (``deployment/sagemaker_artifact.py`` says what goes where)."""
    with tempfile.TemporaryDirectory(prefix="superres-artifact-") as scratch:
        site = Path(scratch) / "lib"
        requirements = group_requirements(artifact.group, Path(scratch) / "requirements.txt", artifact.lock)
        excludes = sagemaker_artifact.write_excludes(Path(scratch) / "excludes.txt")
        install_for_lambda(requirements, site, excludes, artifact.lock, artifact.python_version)
        code = {
            sagemaker_artifact.HOST_MODULE: SOURCE / "sagemaker_sr" / "inference.py",
            **_package_files("superres", f"{sagemaker_artifact.CODE}/"),
        }
        try:
            entries = sagemaker_artifact.artifact_entries(artifact, weight_entries(weights), code, site)
        except ValueError as error:
            raise BuildError(str(error)) from None
        target = out / artifact.name
        write_tar_gz(target, entries, epoch)
    return target


def build_all(
    values: dict[str, str],
    out: Path,
    *,
    model_dir: Path | None,
    models: Sequence[str] = DEFAULT_ARTIFACT_MODELS,
    fetch: bool = True,
    epoch: int | None = None,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Write global-s3-assets/ and regional-s3-assets/ under ``out``."""
    epoch = source_date_epoch() if epoch is None else epoch
    global_dir, regional_dir = out / "global-s3-assets", out / "regional-s3-assets"
    for folder in (global_dir, regional_dir):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    # Inputs first: a missing model fails the build before minutes of pip.
    weights = model_files(models, model_dir, fetch)
    written = build_templates(global_dir, values)
    for spec in lambda_zips():
        log(f"building {spec.name} ...")
        written.append(build_lambda_zip(spec, regional_dir, epoch))
    log("converting the networks for OpenVINO ...")
    written += build_networks(regional_dir, weights)
    log(f"packing {len(weights)} model files ...")
    for artifact in sagemaker_artifact.ARTIFACTS:
        written.append(build_model_artifact(artifact, regional_dir, weights, epoch))
    return written


# ---------------------------------------------------------------- command line


#: The solution name of the kit's releases (the key prefix); the buckets are the publisher's own.
RELEASE_SOLUTION = "superres-kit"


def release_version() -> str:
    """``v`` + the version in pyproject.toml."""
    return "v" + tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Build, publish and link the kit's release assets (the maintainer's commands)."""


@main.command()
@click.argument("bucket_prefix")
@click.argument("solution_name")
@click.argument("version")
@click.option(
    "--model-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Model store to take the weights from [default: $SUPERRES_MODEL_DIR, else the user cache].",
)
@click.option(
    "--models",
    default=",".join(DEFAULT_ARTIFACT_MODELS),
    show_default=True,
    help="Comma-separated models for the SageMaker artifacts.",
)
@click.option("--no-fetch", is_flag=True, help="Never download: a model missing from --model-dir is an error.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=HERE,
    show_default=True,
    help="Folder that receives global-s3-assets/ and regional-s3-assets/.",
)
def build(
    bucket_prefix: str,
    solution_name: str,
    version: str,
    model_dir: Path | None,
    models: str,
    no_fetch: bool,
    out: Path,
) -> None:
    """Build the assets for s3://BUCKET_PREFIX-<region>/SOLUTION_NAME/VERSION/."""
    from superres.operate.names import check_build_names

    try:
        check_build_names(bucket_prefix, solution_name, version)
        values = {"%%BUCKET_NAME%%": bucket_prefix, "%%SOLUTION_NAME%%": solution_name, "%%VERSION%%": version}
        written = build_all(
            values,
            out,
            model_dir=model_dir,
            models=[m.strip() for m in models.split(",") if m.strip()],
            fetch=not no_fetch,
            log=lambda line: click.echo(line, err=True),
        )
    except (BuildError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    for path in written:
        click.echo(path.relative_to(out) if path.is_relative_to(out) else path)


@main.command()
@click.argument("bucket_prefix")
@click.argument("solution_name")
@click.argument("version")
@click.option(
    "--region",
    "regions",
    multiple=True,
    required=True,
    help="Region to publish to; repeat for more (one partition per run).",
)
@click.option("--global-bucket", default=None, help="Bucket for the templates [default: BUCKET_PREFIX].")
@click.option(
    "--assets",
    type=click.Path(file_okay=False, path_type=Path),
    default=HERE,
    show_default=True,
    help="Folder holding global-s3-assets/ and regional-s3-assets/.",
)
@click.option(
    "--overwrite", is_flag=True, help="Replace objects of this version that differ (never for a public release)."
)
@click.option("--profile", default=None, help="Named AWS profile [default: the credential chain].")
def publish(
    bucket_prefix: str,
    solution_name: str,
    version: str,
    regions: tuple[str, ...],
    global_bucket: str | None,
    assets: Path,
    overwrite: bool,
    profile: str | None,
) -> None:
    """Upload the built assets of VERSION to BUCKET_PREFIX-<region> (and the global bucket)."""
    import boto3
    from botocore.exceptions import BotoCoreError

    from superres.operate import publish as publishing
    from superres.operate.names import check_build_names

    try:
        check_build_names(bucket_prefix, solution_name, version)
        uploads = publishing.plan(
            assets, bucket_prefix, solution_name, version, regions, global_bucket or bucket_prefix
        )
        session = boto3.session.Session(profile_name=profile)
        clients: dict[str, object] = {}

        def s3(region: str) -> object:
            return clients.setdefault(region, session.client("s3", region_name=region))

        done = publishing.publish(uploads, s3, overwrite=overwrite, log=click.echo)
    except (publishing.PublishError, ValueError, BotoCoreError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{len(done)} uploaded, {len(uploads) - len(done)} already there")


@main.command()
@click.option("--global-bucket", required=True, help="Your bucket holding the templates (publish's global bucket).")
@click.option(
    "--china-global-bucket",
    default=None,
    help="Your templates' bucket in the China partition; with it (and --china-profile) the China rows are linked.",
)
@click.option("--solution-name", default=RELEASE_SOLUTION, show_default=True)
@click.option("--version", default=None, help="[default: v + pyproject.toml's version]")
@click.option("--profile", default=None, help="AWS profile of the account that owns --global-bucket.")
@click.option("--china-profile", default=None, help="AWS profile of the China account that owns the China bucket.")
@click.option("--readme", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the table here.")
def links(
    global_bucket: str,
    china_global_bucket: str | None,
    solution_name: str,
    version: str | None,
    profile: str | None,
    china_profile: str | None,
    readme: Path | None,
) -> None:
    """Print (or write into a README) the quick-create links of a release you published.

    Only for a release that exists: each template must be in --global-bucket, and that bucket
    must be one of your own (a link to a bucket name someone else can claim would let them
    serve the template customers launch).
    """
    import boto3
    from botocore.exceptions import BotoCoreError

    from superres.operate.links import Release, ReleaseNotFoundError, check_published, table, with_table
    from superres.operate.regions import REGIONS, partition_of

    china = china_global_bucket is not None and china_profile is not None
    release = Release(global_bucket, solution_name, version or release_version(), china_global_bucket)
    partitions = {"aws", "aws-cn"} if china else {"aws"}
    sessions = {
        "aws": boto3.session.Session(profile_name=profile),
        "aws-cn": boto3.session.Session(profile_name=china_profile) if china else None,
    }

    def s3(region: str) -> object:
        session = sessions[partition_of(region).name]
        assert session is not None
        return session.client("s3", region_name=region)

    try:
        templates = check_published(release, s3, partitions)
    except (ReleaseNotFoundError, BotoCoreError) as error:
        raise click.ClickException(str(error)) from None
    regions = {region: label for region, label in REGIONS.items() if partition_of(region).name in partitions}
    if readme is None:
        click.echo(table(release, templates, regions), nl=False)
        return
    try:
        readme.write_text(with_table(readme.read_text(), release, templates, regions))
    except (OSError, ValueError) as error:
        raise click.ClickException(f"{readme}: {error}") from None
    click.echo(f"{readme}: link table written")


if __name__ == "__main__":
    main()
