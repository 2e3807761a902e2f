"""Custom resource: put the stack's model files onto EFS, verified, without ever hanging the stack.

Properties (``Custom::EfsModelFiles``):
    Models        list of {Name, Filename, Url, Size, Sha256} (the manifest entries build.py writes)
    MirrorBucket  optional bucket to copy ``<MirrorPrefix><Filename>`` from instead of ``Url``
    MirrorPrefix  key prefix in the mirror bucket

Create/Update: each file is streamed into a hidden temporary file next to its final name
and renamed only once its size and sha256 match (``superres.store.download``: the same
verifying downloader ``superres models fetch`` uses). A file already there with the right
sha256 is kept. S3 copies go through a presigned GET URL, so the same code verifies them.
Update removes the files the previous properties listed and the new ones do not.
Delete leaves the files: the file system is deleted with the stack, and a Delete must
never fail (a failed Delete leaves a stack that cannot be removed). Missing files are fine.

Answers: crhelper (AWS's custom resource helper) sends the response; its timer sends
FAILED half a second before the Lambda's own timeout. Before that, the download itself
stops at ``SAFETY_MARGIN_SECONDS`` before the deadline with a reason that says so, and the
response is sent at most once per request. The template also sets ServiceTimeout, so
CloudFormation stops waiting even if no answer ever arrives.

Packaged as a zip: this file, crhelper, httpx (and its dependencies) and the pure-Python
modules ``superres/{__init__,errors,manifest,store}.py`` (no torch).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from crhelper import CfnResource

from superres.store import download, sha256_of

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


def _models(properties: dict[str, Any]) -> list[dict[str, Any]]:
    models = properties.get("Models") or []
    if not isinstance(models, list) or not models:
        raise ValueError("property Models must be a non-empty list")
    checked = []
    for entry in models:
        missing = [key for key in ("Name", "Filename", "Url", "Size", "Sha256") if not entry.get(key)]
        if missing:
            raise ValueError(f"model entry {entry!r} lacks {', '.join(missing)}")
        filename = str(entry["Filename"])
        if "/" in filename or filename.startswith("."):
            raise ValueError(f"model filename {filename!r} must be a plain file name")
        checked.append(
            {**entry, "Filename": filename, "Size": int(entry["Size"]), "Sha256": str(entry["Sha256"]).lower()}
        )
    return checked


def _deadline(context: Any) -> float:
    """time.monotonic() at which the work must have stopped."""
    return time.monotonic() + context.get_remaining_time_in_millis() / 1000.0 - SAFETY_MARGIN_SECONDS


def _source_url(entry: dict[str, Any], properties: dict[str, Any]) -> str:
    bucket = properties.get("MirrorBucket") or ""
    if not bucket:
        return str(entry["Url"])
    import boto3  # in the Lambda runtime; imported here so url-only staging needs no AWS client

    key = f"{properties.get('MirrorPrefix') or ''}{entry['Filename']}"
    return boto3.client("s3").generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=900)


def _stage(properties: dict[str, Any], context: Any) -> list[str]:
    models = _models(properties)
    target = _target_dir()
    target.mkdir(parents=True, exist_ok=True)
    deadline = _deadline(context)
    staged = []
    for entry in models:
        path = target / entry["Filename"]
        if path.is_file() and path.stat().st_size == entry["Size"] and sha256_of(path) == entry["Sha256"]:
            logger.info("already staged: %s", path.name)
            staged.append(path.name)
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"no time left to stage {path.name} before the function times out")

        def check_deadline(received: int, size: int, name: str = path.name) -> None:
            if time.monotonic() > deadline:
                raise DeadlineExceeded(
                    f"staging {name} stopped at {received:,} of {size:,} bytes: the function would time out"
                )

        url = _source_url(entry, properties)
        logger.info("staging %s (%s bytes, sha256 %s)", path.name, f"{entry['Size']:,}", entry["Sha256"])
        started = time.monotonic()
        download(
            url,
            path,
            size=entry["Size"],
            sha256=entry["Sha256"],
            retries=2,
            timeout=max(1.0, min(NETWORK_TIMEOUT_SECONDS, left)),
            backoff=1.0,
            on_progress=check_deadline,
        )
        logger.info("staged %s in %.1f s", path.name, time.monotonic() - started)
        staged.append(path.name)
    return staged


def _physical_id(properties: dict[str, Any]) -> str:
    names = ",".join(sorted(str(entry.get("Filename")) for entry in properties.get("Models") or []))
    return "efs-models-" + hashlib.sha256(names.encode()).hexdigest()[:16]


@helper.create
def create(event: dict[str, Any], context: Any) -> str:
    properties = event.get("ResourceProperties") or {}
    helper.Data["Files"] = ",".join(_stage(properties, context))
    return _physical_id(properties)


@helper.update
def update(event: dict[str, Any], context: Any) -> str:
    properties = event.get("ResourceProperties") or {}
    staged = _stage(properties, context)
    helper.Data["Files"] = ",".join(staged)
    old = event.get("OldResourceProperties") or {}
    for entry in old.get("Models") or []:
        name = str(entry.get("Filename") or "")
        if name and "/" not in name and not name.startswith(".") and name not in staged:
            (_target_dir() / name).unlink(missing_ok=True)
            logger.info("removed %s (no longer listed)", name)
    return _physical_id(properties)


@helper.delete
def delete(event: dict[str, Any], context: Any) -> None:
    # The files stay: the file system goes with the stack, and they are public weights.
    logger.info("delete: leaving the model files in place")


def handler(event: dict[str, Any], context: Any) -> None:
    helper(event, context)
