"""Custom resource: put the release's converted networks onto EFS, verified, without ever hanging the stack.

Properties (``Custom::EfsModelFiles``):
    Bucket       the release's regional asset bucket
    ManifestKey  its ``<prefix>/networks/manifest.json`` (deployment/package.py writes it: per
                 network, each file's size and sha256)
    Networks     names of the networks to stage, e.g. ``["RealESRGAN_x4plus"]``; with the
                 stack's FaceEnhancement, also ``"GFPGANv1.4"`` and ``"YuNet"``

Create/Update: each file of each network, ``<prefix>/networks/<name>.openvino/<file>``, is
streamed through a presigned GET into a hidden temporary file next to its final name,
``<EFS>/<name>.openvino/<file>``, and renamed only once its size and sha256 match the
manifest (``superres.store.download``: the same verifying downloader ``superres models
fetch`` uses). A file already there with the right sha256 is kept. Update removes the
networks the previous properties listed and the new ones do not. Delete leaves the files:
the file system is deleted with the stack, and a Delete must never fail (a failed Delete
leaves a stack that cannot be removed). Missing files are fine.

Answers: crhelper (AWS's custom resource helper) sends the response; its timer sends
FAILED half a second before the Lambda's own timeout. Before that, the download itself
stops at ``SAFETY_MARGIN_SECONDS`` before the deadline with a reason that says so, and the
response is sent at most once per request. The template also sets ServiceTimeout, so
CloudFormation stops waiting even if no answer ever arrives.

Packaged as a zip: this file, crhelper, httpx (and its dependencies) and the pure-Python
modules ``superres/{__init__,errors,manifest,store}.py`` (no torch); boto3 is the Lambda
runtime's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crhelper import CfnResource

from superres.manifest import get_spec
from superres.store import CONVERSION_SUFFIX, download, sha256_of

logger = logging.getLogger(__name__)

TARGET_DIR_ENV = "STAGER_TARGET_DIR"
#: Stop working this long before the Lambda deadline so FAILED goes out with a real reason.
#: The downloader reports progress once per MiB, so this must cover one MiB at the slowest
#: rate worth waiting for (20 s: 50 KiB/s).
SAFETY_MARGIN_SECONDS = float(os.environ.get("STAGER_SAFETY_MARGIN_SECONDS", "20"))
#: Per-request network timeout cap (connect/read); the deadline lowers it further.
NETWORK_TIMEOUT_SECONDS = 60.0


class DeadlineExceeded(Exception):
    """The work would not finish before the Lambda's remaining time runs out."""


class _OnceResource(CfnResource):
    """crhelper, but at most one response per request (its timer and the handler may race)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._send_lock = threading.Lock()
        self._sent = False

    def _crhelper_init(self, event: dict[str, Any], context: Any) -> bool:
        with self._send_lock:
            self._sent = False
        return super()._crhelper_init(event, context)  # type: ignore[misc]  # crhelper's stubs leave out its private methods

    def _send(self, status: str | None = None, reason: str = "", **kwargs: Any) -> None:
        with self._send_lock:
            if self._sent:
                logger.info("response already sent for this request; not sending %s", status or self.Status)
                return
            self._sent = True
        super()._send(status, reason, **kwargs)  # type: ignore[misc]  # crhelper's stubs leave out its private methods


# json_logging: one JSON object per line, with RequestType, StackId, RequestId, LogicalResourceId.
# sleep_on_delete=0: the log group outlives the function (it is a stack resource).
helper = _OnceResource(json_logging=True, log_level="INFO", boto_level="WARNING", sleep_on_delete=0)


def _target_dir() -> Path:
    return Path(os.environ.get(TARGET_DIR_ENV, "/mnt/models"))


@dataclass(frozen=True)
class NetworkFile:
    """One file to stage: its key in the bucket, its path under the target, its digest."""

    key: str
    path: str
    size: int
    sha256: str


def _plain(name: str, what: str) -> str:
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"{what} {name!r} must be a plain file name")
    return name


def _networks(properties: dict[str, Any]) -> list[str]:
    names = properties.get("Networks") or []
    if not isinstance(names, list) or not names:
        raise ValueError("property Networks must be a non-empty list")
    for name in names:
        get_spec(str(name))  # KeyError names the known networks
    return [str(name) for name in names]


def _network_files(properties: dict[str, Any]) -> list[NetworkFile]:
    """Every file of the listed networks, as the release's manifest describes it."""
    missing = [key for key in ("Bucket", "ManifestKey") if not properties.get(key)]
    if missing:
        raise ValueError(f"properties lack {', '.join(missing)}")
    names = _networks(properties)
    key = str(properties["ManifestKey"])
    import boto3  # the Lambda runtime's

    manifest = json.loads(boto3.client("s3").get_object(Bucket=properties["Bucket"], Key=key)["Body"].read())
    released = manifest.get("networks", {})
    prefix = key.rsplit("/", 1)[0] if "/" in key else ""
    files = []
    for name in names:
        if name not in released:
            raise ValueError(
                f"network {name} is not in this release (its manifest holds {', '.join(sorted(released)) or 'none'}): "
                "build the release with it (deployment/package.py build --models)"
            )
        folder = _plain(f"{name}{CONVERSION_SUFFIX}", "network")
        for filename, facts in sorted(released[name]["files"].items()):
            relative = f"{folder}/{_plain(filename, 'network file')}"
            files.append(
                NetworkFile(f"{prefix}/{relative}".lstrip("/"), relative, int(facts["size"]), str(facts["sha256"]))
            )
    return files


def _deadline(context: Any) -> float:
    """time.monotonic() at which the work must have stopped."""
    return time.monotonic() + context.get_remaining_time_in_millis() / 1000.0 - SAFETY_MARGIN_SECONDS


def _presigned_url(bucket: str, key: str) -> str:
    """A GET URL for the object, so the one verifying downloader reads S3 too."""
    import boto3

    return str(
        boto3.client("s3").generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=900)
    )


def _stage(properties: dict[str, Any], context: Any) -> list[str]:
    files = _network_files(properties)
    target = _target_dir()
    deadline = _deadline(context)
    for entry in files:
        path = target / entry.path
        if path.is_file() and path.stat().st_size == entry.size and sha256_of(path) == entry.sha256:
            logger.info("already staged: %s", entry.path)
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"no time left to stage {entry.path} before the function times out")

        def check_deadline(received: int, size: int, name: str = entry.path) -> None:
            if time.monotonic() > deadline:
                raise DeadlineExceeded(
                    f"staging {name} stopped at {received:,} of {size:,} bytes: the function would time out"
                )

        logger.info("staging %s (%s bytes, sha256 %s)", entry.path, f"{entry.size:,}", entry.sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        download(
            _presigned_url(str(properties["Bucket"]), entry.key),
            path,
            size=entry.size,
            sha256=entry.sha256,
            retries=2,
            timeout=max(1.0, min(NETWORK_TIMEOUT_SECONDS, left)),
            backoff=1.0,
            on_progress=check_deadline,
        )
        logger.info("staged %s in %.1f s", entry.path, time.monotonic() - started)
    return [entry.path for entry in files]


def _physical_id(properties: dict[str, Any]) -> str:
    names = ",".join(sorted(str(name) for name in properties.get("Networks") or []))
    return "efs-models-" + hashlib.sha256(names.encode()).hexdigest()[:16]


@helper.create
def create(event: dict[str, Any], context: Any) -> str:
    properties = event.get("ResourceProperties") or {}
    helper.Data["Files"] = ",".join(_stage(properties, context))
    return _physical_id(properties)


@helper.update
def update(event: dict[str, Any], context: Any) -> str:
    properties = event.get("ResourceProperties") or {}
    helper.Data["Files"] = ",".join(_stage(properties, context))
    listed = set(_networks(properties))
    old = event.get("OldResourceProperties") or {}
    for name in old.get("Networks") or []:
        folder = f"{name}{CONVERSION_SUFFIX}"
        if name not in listed and "/" not in folder and not folder.startswith("."):
            shutil.rmtree(_target_dir() / folder, ignore_errors=True)
            logger.info("removed %s (no longer listed)", folder)
    return _physical_id(properties)


@helper.delete
def delete(event: dict[str, Any], context: Any) -> None:
    # The files stay: the file system goes with the stack, and they are public weights.
    logger.info("delete: leaving the model files in place")


def handler(event: dict[str, Any], context: Any) -> None:
    helper(event, context)
