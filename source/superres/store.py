"""The model store: a directory of weight files, and a verifying downloader.

Integrity is checked when a file is written (size and sha256 before it gets
its final name) and on demand (``verify``); loading trusts the directory the
operator configured and checks the architecture instead, which is cheap.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import httpx

from .errors import ModelDownloadError, ModelNotFoundError
from .manifest import ModelSpec

MODEL_DIR_ENV = "SUPERRES_MODEL_DIR"
#: ``<name>.openvino/``: a network the release build converted to OpenVINO IR, which is what
#: the Lambda stack stages on EFS instead of weight files (runtimes.openvino_runner).
CONVERSION_SUFFIX = ".openvino"
_CHUNK = 1 << 20


def default_model_dir() -> Path:
    """``$SUPERRES_MODEL_DIR``, else the user's cache directory."""
    configured = os.environ.get(MODEL_DIR_ENV)
    if configured:
        return Path(configured)
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "superres" / "models"


class FileStatus(str, Enum):  # not StrEnum (3.11): the core runs on the Neuron images' Python 3.10
    OFFICIAL = "official"
    KNOWN_COPY = "known copy"
    MISMATCH = "mismatch"
    MISSING = "missing"


@dataclass(frozen=True)
class Verification:
    name: str
    status: FileStatus
    path: Path | None
    detail: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class ModelStore:
    """Weight files of the manifest's models in one directory."""

    def __init__(self, directory: Path | str | None = None) -> None:
        self.directory = Path(directory) if directory else default_model_dir()

    def find(self, spec: ModelSpec) -> Path | None:
        for filename in spec.filenames:
            candidate = self.directory / filename
            if candidate.is_file():
                return candidate
        return None

    def path(self, spec: ModelSpec) -> Path:
        """The file to load for ``spec``, or an error that says how to get it."""
        found = self.find(spec)
        if found is None:
            raise ModelNotFoundError(
                f"model {spec.name} is not in {self.directory} (looked for "
                f"{', '.join(spec.filenames)}). Get it with: superres models fetch "
                f"{spec.name} --model-dir {shlex.quote(str(self.directory))}   (downloads {spec.url}, "
                f"{spec.size:,} bytes, sha256 {spec.sha256}), or copy the file there."
            )
        return found

    def conversion(self, spec: ModelSpec) -> Path:
        """Where a released conversion of ``spec`` sits in this store (it may not exist)."""
        return self.directory / f"{spec.name}{CONVERSION_SUFFIX}"

    def network(self, spec: ModelSpec) -> Path:
        """What to load for ``spec``: its weight file, else its released conversion."""
        if self.find(spec) is None and self.conversion(spec).is_dir():
            return self.conversion(spec)
        return self.path(spec)

    def verify(self, spec: ModelSpec) -> Verification:
        found = self.find(spec)
        if found is None:
            return Verification(spec.name, FileStatus.MISSING, None, "not downloaded")
        digest = sha256_of(found)
        if found.name == spec.filename and digest == spec.sha256:
            return Verification(spec.name, FileStatus.OFFICIAL, found, "sha256 matches the release")
        for copy in spec.known_copies:
            if found.name == copy.filename and digest == copy.sha256:
                return Verification(spec.name, FileStatus.KNOWN_COPY, found, copy.origin)
        return Verification(spec.name, FileStatus.MISMATCH, found, f"sha256 {digest} is not a known file of this model")

    def fetch(
        self,
        spec: ModelSpec,
        *,
        url: str | None = None,
        retries: int = 3,
        timeout: float = 30.0,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> Path:
        """Download the official file unless a verified file (official or known copy) is there."""
        present = self.verify(spec)
        if present.status in (FileStatus.OFFICIAL, FileStatus.KNOWN_COPY) and present.path:
            return present.path
        target = self.directory / spec.filename
        self.directory.mkdir(parents=True, exist_ok=True)
        download(
            url or spec.url,
            target,
            size=spec.size,
            sha256=spec.sha256,
            retries=retries,
            timeout=timeout,
            on_progress=on_progress,
        )
        return target


class _Retryable(Exception):
    """A failure worth another attempt (network, 5xx, short body)."""


def download(
    url: str,
    target: Path,
    *,
    size: int,
    sha256: str,
    retries: int = 3,
    timeout: float = 30.0,
    backoff: float = 1.0,
    on_progress: Callable[[int, int], None] | None = None,
) -> None:
    """Stream ``url`` to ``target``; the final name only ever holds a verified file.

    Bytes go to a hidden temporary file in the target's directory (same file
    system, so the closing ``os.replace`` is atomic). Network errors, 5xx
    answers and short bodies are retried with exponential backoff; a 4xx or a
    wrong size or digest is final, since repeating it yields the same bytes.
    """
    last_error = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            _download_once(url, target, size, sha256, timeout, on_progress)
            return
        except _Retryable as error:
            last_error = str(error)
    raise ModelDownloadError(f"download of {url} failed after {retries + 1} attempts: {last_error}")


def _download_once(
    url: str,
    target: Path,
    size: int,
    sha256: str,
    timeout: float,
    on_progress: Callable[[int, int], None] | None,
) -> None:
    # A fresh hidden name next to the target: created like any file (umask
    # applies, unlike mkstemp's 0600), never opened by another attempt.
    partial = target.with_name(f".{target.name}.{secrets.token_hex(8)}.part")
    try:
        handle = partial.open("xb")
        digest = hashlib.sha256()
        received = 0
        with handle, httpx.stream("GET", url, follow_redirects=True, timeout=timeout) as response:
            if response.status_code >= 500 or response.status_code == 429:
                raise _Retryable(f"HTTP {response.status_code}")
            if response.status_code != 200:
                raise ModelDownloadError(f"download of {url} failed: HTTP {response.status_code}")
            for chunk in response.iter_bytes(_CHUNK):
                received += len(chunk)
                if received > size:
                    raise ModelDownloadError(f"download of {url} failed: more than the expected {size:,} bytes")
                digest.update(chunk)
                handle.write(chunk)
                if on_progress:
                    on_progress(received, size)
            handle.flush()
            os.fsync(handle.fileno())
        if received != size:
            raise _Retryable(f"got {received:,} of {size:,} bytes")
        if digest.hexdigest() != sha256:
            raise ModelDownloadError(f"download of {url} failed: sha256 {digest.hexdigest()} != expected {sha256}")
        os.replace(partial, target)
    except (httpx.TransportError, httpx.StreamError) as error:
        raise _Retryable(f"{type(error).__name__}: {error}") from error
    except (httpx.HTTPError, OSError) as error:  # bad URL, redirect loop, disk full
        raise ModelDownloadError(f"download of {url} failed: {error}") from error
    finally:
        partial.unlink(missing_ok=True)
