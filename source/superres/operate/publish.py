"""Upload a built release (``deployment/build-s3-dist.sh``) to its S3 buckets.

Global assets (the templates) go to one bucket per partition, regional assets (code
zips, model artifacts) to ``<bucket-prefix>-<region>`` in every region of the set, all
under ``<solution>/<version>/``, the key prefix the templates' ``Assets`` mapping names.
A version is immutable: an object already there with the same sha256 is skipped, one
with other bytes is an error unless ``overwrite`` is set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError

from .names import check_bucket
from .regions import partition_of

GLOBAL_DIR = "global-s3-assets"
REGIONAL_DIR = "regional-s3-assets"
SHA256_METADATA = "sha256"
CONTENT_TYPES = {
    ".template": "application/json",
    ".zip": "application/zip",
    ".gz": "application/gzip",
    ".json": "application/json",
    ".xml": "application/xml",
}


class PublishError(Exception):
    """A bucket is missing, the assets are not built, or a published object would change."""


@dataclass(frozen=True)
class Upload:
    region: str
    bucket: str
    key: str
    path: Path


def _files(folder: Path) -> dict[str, Path]:
    """Every file under ``folder`` by its key below the release prefix (``networks/...``
    keeps its folders)."""
    files = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
    if not files:
        raise PublishError(f"{folder} holds no assets: run deployment/build-s3-dist.sh first")
    return files


def plan(
    assets: Path, bucket_prefix: str, solution: str, version: str, regions: Sequence[str], global_bucket: str
) -> list[Upload]:
    """Every upload of a release, for regions of one partition."""
    if not regions:
        raise PublishError("name at least one region")
    partitions = {partition_of(region).name for region in regions}
    if len(partitions) > 1:
        raise PublishError(
            "the regions span partitions (aws and aws-cn need separate accounts and credentials): "
            "publish once per partition"
        )
    check_bucket(global_bucket, "global bucket")
    for region in regions:
        check_bucket(f"{bucket_prefix}-{region}", "regional bucket")
    prefix = f"{solution}/{version}"
    home = partition_of(regions[0]).home_region
    uploads = [Upload(home, global_bucket, f"{prefix}/{key}", p) for key, p in _files(assets / GLOBAL_DIR).items()]
    regional = _files(assets / REGIONAL_DIR)
    for region in regions:
        uploads += [Upload(region, f"{bucket_prefix}-{region}", f"{prefix}/{key}", p) for key, p in regional.items()]
    return uploads


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def publish(
    uploads: Sequence[Upload],
    s3_client: Callable[[str], Any],
    *,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> list[Upload]:
    """Upload what is not there yet; returns the uploads made."""
    done = []
    for upload in uploads:
        s3 = s3_client(upload.region)
        digest = _sha256(upload.path)
        where = f"s3://{upload.bucket}/{upload.key}"
        try:
            head = s3.head_object(Bucket=upload.bucket, Key=upload.key)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code not in ("404", "NoSuchKey", "NotFound"):
                raise PublishError(f"{where}: {error}") from None
            head = None
        if head is not None:
            published = head.get("Metadata", {}).get(SHA256_METADATA)
            if published == digest:
                log(f"unchanged  {where}")
                continue
            if not overwrite:
                raise PublishError(
                    f"{where} is already published with other bytes (sha256 {published or 'unknown'}); "
                    "a released version must not change: build a new version, or pass --overwrite"
                )
        try:
            s3.upload_file(
                str(upload.path),
                upload.bucket,
                upload.key,
                ExtraArgs={
                    "Metadata": {SHA256_METADATA: digest},
                    "ContentType": CONTENT_TYPES.get(upload.path.suffix, "application/octet-stream"),
                },
            )
        except (ClientError, S3UploadFailedError) as error:
            if "NoSuchBucket" in str(error):
                raise PublishError(
                    f"bucket {upload.bucket} does not exist in {upload.region}: create it (readable by the "
                    "accounts that deploy the kit) before publishing"
                ) from None
            raise PublishError(f"{where}: {error}") from None
        log(f"uploaded   {where} ({upload.path.stat().st_size:,} bytes)")
        done.append(upload)
    return done
