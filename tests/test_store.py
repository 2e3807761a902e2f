"""The model store and its verifying downloader, against a real HTTP server on 127.0.0.1.

No mocks: ``download`` talks httpx to a ``ThreadingHTTPServer`` started by the
``server`` fixture, whose paths select a behaviour (good file, corrupt bytes,
truncated body, 404, 503, slow answers, ...). The server counts requests per
path, so the tests can tell a retried failure from a final one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import os
import random
import stat
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import SHARED
from superres.errors import ModelDownloadError, ModelNotFoundError
from superres.manifest import ModelSpec, get_spec
from superres.store import FileStatus, ModelStore, download, sha256_of

SHARED_MODELS = SHARED / "models"

PAYLOAD = random.Random(20240521).randbytes(3 * 1024 * 1024)
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
# Same size as PAYLOAD, one byte different: only the digest can tell.
CORRUPT = PAYLOAD[:1000] + bytes([PAYLOAD[1000] ^ 0xFF]) + PAYLOAD[1001:]
# How long the slow paths stall; far above the 0.5 s client timeout. The
# fixture's teardown wakes stalled handlers at once.
STALL = 10.0
TIMEOUT = 0.5


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up on a stalled handler is expected; keep stderr quiet."""


class LocalServer:
    """A threaded HTTP server on 127.0.0.1:<free port> serving PAYLOAD by behaviour."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.httpd = _QuietServer(("127.0.0.1", 0), _make_handler(self))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"

    def count(self, path: str) -> int:
        """Number of requests seen so far for ``path`` (its n-th request gets n)."""
        with self._lock:
            self.requests[path] += 1
            return self.requests[path]

    def hits(self, path: str | None = None) -> int:
        with self._lock:
            return sum(self.requests.values()) if path is None else self.requests[path]

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def _make_handler(server: LocalServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, and closing the connection ends it.
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _headers(self, status: int, length: int) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(length))
            self.end_headers()

        def _body(self, data: bytes) -> None:
            for start in range(0, len(data), 256 * 1024):
                self.wfile.write(data[start : start + 256 * 1024])

        def _send(self, data: bytes, status: int = 200) -> None:
            self._headers(status, len(data))
            self._body(data)

        def do_GET(self) -> None:
            path = self.path
            nth = server.count(path)
            with contextlib.suppress(OSError):  # the client gave up (timeout) and closed the socket
                self._serve(path, nth)
            self.close_connection = True

        def _serve(self, path: str, nth: int) -> None:
            half = len(PAYLOAD) // 2
            if path == "/good":
                self._send(PAYLOAD)
            elif path == "/corrupt":
                self._send(CORRUPT)
            elif path == "/too-long":
                self._send(PAYLOAD + b"trailing garbage")
            elif path == "/truncated" or (path == "/truncated-once" and nth == 1):
                # Announce the full size, send half, hang up.
                self._headers(200, len(PAYLOAD))
                self._body(PAYLOAD[:half])
            elif path == "/short-no-length":
                # No Content-Length: the body ends when the connection closes,
                # so only the downloader's own byte count can notice it is short.
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                self._body(PAYLOAD[:half])
            elif path == "/truncated-once":
                self._send(PAYLOAD)
            elif path == "/unavailable" or (path == "/unavailable-once" and nth == 1):
                self._send(b"try again later", status=503)
            elif path == "/unavailable-once":
                self._send(PAYLOAD)
            elif path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "/good")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif path == "/slow-headers":
                server.stop.wait(STALL)
                self._send(PAYLOAD)
            elif path == "/slow-body":
                self._headers(200, len(PAYLOAD))
                self._body(PAYLOAD[:65536])
                self.wfile.flush()
                server.stop.wait(STALL)
                self._body(PAYLOAD[65536:])
            else:
                self._send(b"not found", status=404)

    return Handler


@pytest.fixture
def server():
    local = LocalServer()
    try:
        yield local
    finally:
        local.close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """httpx honours proxy variables; requests to 127.0.0.1 must go straight to the server."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def local_spec(url: str, payload: bytes = PAYLOAD) -> ModelSpec:
    return dataclasses.replace(
        get_spec("RealESRGAN_x4plus"),
        url=url,
        size=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
    )


def entries(directory: Path) -> list[str]:
    """Every name in ``directory``, hidden temporary files included."""
    return sorted(os.listdir(directory))


def fetch_kwargs(**overrides):
    kwargs = {"size": len(PAYLOAD), "sha256": PAYLOAD_SHA256, "retries": 3, "timeout": 5.0, "backoff": 0}
    kwargs.update(overrides)
    return kwargs


# --- download -------------------------------------------------------------------------


def test_good_file_is_written_verified_with_progress(server, tmp_path):
    target = tmp_path / "model.pth"
    progress: list[tuple[int, int]] = []

    download(
        server.url("/good"),
        target,
        **fetch_kwargs(on_progress=lambda done, total: progress.append((done, total))),
    )

    assert target.read_bytes() == PAYLOAD
    assert sha256_of(target) == PAYLOAD_SHA256
    assert entries(tmp_path) == ["model.pth"]  # no .part file left
    assert server.hits("/good") == 1
    counts = [done for done, _ in progress]
    assert len(counts) >= 2
    assert all(a < b for a, b in itertools.pairwise(counts)), counts
    assert counts[-1] == len(PAYLOAD)
    assert {total for _, total in progress} == {len(PAYLOAD)}


def test_downloaded_file_gets_the_usual_permissions(server, tmp_path):
    """The model must be as readable as any file the process creates (umask), not 0600.

    A model fetched as root in an image build is loaded by another user in the
    Lambda / SageMaker container; a private temp file's mode must not leak into
    the final name.
    """
    target = tmp_path / "model.pth"
    reference = tmp_path / "reference"
    reference.write_bytes(b"")

    download(server.url("/good"), target, **fetch_kwargs())

    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)


def test_redirect_is_followed(server, tmp_path):
    target = tmp_path / "model.pth"
    download(server.url("/redirect"), target, **fetch_kwargs())
    assert sha256_of(target) == PAYLOAD_SHA256
    assert (server.hits("/redirect"), server.hits("/good")) == (1, 1)


def test_wrong_hash_is_final_and_leaves_nothing(server, tmp_path):
    target = tmp_path / "model.pth"
    with pytest.raises(ModelDownloadError, match="sha256"):
        download(server.url("/corrupt"), target, **fetch_kwargs(retries=3))
    assert not target.exists()
    assert entries(tmp_path) == []
    assert server.hits("/corrupt") == 1  # the same bytes would come again: not retried


def test_body_longer_than_expected_is_final(server, tmp_path):
    target = tmp_path / "model.pth"
    with pytest.raises(ModelDownloadError, match="more than the expected"):
        download(server.url("/too-long"), target, **fetch_kwargs(retries=3))
    assert entries(tmp_path) == []
    assert server.hits("/too-long") == 1


def test_truncated_body_is_retried_then_fails(server, tmp_path):
    target = tmp_path / "model.pth"
    retries = 2
    with pytest.raises(ModelDownloadError, match=f"after {retries + 1} attempts"):
        download(server.url("/truncated"), target, **fetch_kwargs(retries=retries))
    assert server.hits("/truncated") == retries + 1
    assert not target.exists()
    assert entries(tmp_path) == []


def test_short_body_without_length_is_retried_then_fails(server, tmp_path):
    target = tmp_path / "model.pth"
    retries = 1
    with pytest.raises(ModelDownloadError, match=f"got {len(PAYLOAD) // 2:,} of {len(PAYLOAD):,} bytes"):
        download(server.url("/short-no-length"), target, **fetch_kwargs(retries=retries))
    assert server.hits("/short-no-length") == retries + 1
    assert entries(tmp_path) == []


def test_truncated_first_attempt_then_good_succeeds(server, tmp_path):
    target = tmp_path / "model.pth"
    download(server.url("/truncated-once"), target, **fetch_kwargs(retries=2))
    assert server.hits("/truncated-once") == 2
    assert sha256_of(target) == PAYLOAD_SHA256
    assert entries(tmp_path) == ["model.pth"]


def test_404_is_final(server, tmp_path):
    target = tmp_path / "model.pth"
    with pytest.raises(ModelDownloadError, match="404"):
        download(server.url("/nothing-here"), target, **fetch_kwargs(retries=3))
    assert server.hits("/nothing-here") == 1
    assert entries(tmp_path) == []


def test_5xx_is_retried_then_fails(server, tmp_path):
    target = tmp_path / "model.pth"
    retries = 2
    with pytest.raises(ModelDownloadError, match="503"):
        download(server.url("/unavailable"), target, **fetch_kwargs(retries=retries))
    assert server.hits("/unavailable") == retries + 1
    assert entries(tmp_path) == []


def test_5xx_then_good_succeeds(server, tmp_path):
    target = tmp_path / "model.pth"
    download(server.url("/unavailable-once"), target, **fetch_kwargs(retries=1))
    assert server.hits("/unavailable-once") == 2
    assert sha256_of(target) == PAYLOAD_SHA256
    assert entries(tmp_path) == ["model.pth"]


@pytest.mark.parametrize("path", ["/slow-headers", "/slow-body"])
def test_stalled_server_times_out(server, tmp_path, path):
    target = tmp_path / "model.pth"
    retries = 1
    started = time.monotonic()
    with pytest.raises(ModelDownloadError, match="Timeout"):
        download(server.url(path), target, **fetch_kwargs(retries=retries, timeout=TIMEOUT))
    elapsed = time.monotonic() - started
    # (retries + 1) attempts of ~TIMEOUT each; the server would stall for STALL seconds.
    assert elapsed < 4.0, elapsed
    assert server.hits(path) == retries + 1
    assert not target.exists()
    assert entries(tmp_path) == []


# --- ModelStore.fetch ---------------------------------------------------------------------


def test_fetch_keeps_a_valid_target_without_any_request(server, tmp_path):
    spec = local_spec(server.url("/good"))
    existing = tmp_path / spec.filename
    existing.write_bytes(PAYLOAD)
    before = existing.stat().st_mtime_ns

    result = ModelStore(tmp_path).fetch(spec, url=server.url("/good"), retries=0, timeout=5.0)

    assert result == existing
    assert server.hits() == 0
    assert existing.stat().st_mtime_ns == before


def test_fetch_replaces_a_corrupt_target(server, tmp_path):
    spec = local_spec(server.url("/good"))
    (tmp_path / spec.filename).write_bytes(b"not the model")
    store = ModelStore(tmp_path)

    result = store.fetch(spec, retries=0, timeout=5.0)  # spec.url is the local server

    assert result == tmp_path / spec.filename
    assert server.hits("/good") == 1
    assert sha256_of(result) == PAYLOAD_SHA256
    assert entries(tmp_path) == [spec.filename]
    assert store.verify(spec).status is FileStatus.OFFICIAL


def test_fetch_creates_the_directory_and_honours_url(server, tmp_path):
    spec = local_spec(server.url("/nothing-here"))
    directory = tmp_path / "a" / "b"

    result = ModelStore(directory).fetch(spec, url=server.url("/good"), retries=0, timeout=5.0)

    assert result == directory / spec.filename
    assert (server.hits("/good"), server.hits("/nothing-here")) == (1, 0)
    assert ModelStore(directory).path(spec) == result


def test_fetch_failure_raises_and_leaves_nothing(server, tmp_path):
    spec = local_spec(server.url("/corrupt"))
    with pytest.raises(ModelDownloadError, match="sha256"):
        ModelStore(tmp_path).fetch(spec, retries=0, timeout=5.0)
    assert entries(tmp_path) == []


# --- ModelStore.path / verify ---------------------------------------------------------------


def test_path_in_empty_dir_says_how_to_get_the_model(tmp_path):
    spec = get_spec("RealESRGAN_x4plus")
    store = ModelStore(tmp_path)
    assert store.find(spec) is None
    with pytest.raises(ModelNotFoundError) as caught:
        store.path(spec)
    message = str(caught.value)
    assert f"superres models fetch RealESRGAN_x4plus --model-dir {tmp_path}" in message
    assert "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth" in message
    assert spec.sha256 in message


def test_verify_on_the_shared_models():
    assert SHARED_MODELS.is_dir(), f"{SHARED_MODELS} must exist"
    store = ModelStore(SHARED_MODELS)

    x4 = store.verify(get_spec("RealESRGAN_x4plus"))
    assert x4.status is FileStatus.KNOWN_COPY
    assert x4.path == SHARED_MODELS / "RealESRGAN_x4plus.ncnn-fp16.pth"
    assert store.path(get_spec("RealESRGAN_x4plus")) == x4.path

    x2 = store.verify(get_spec("RealESRGAN_x2plus"))
    assert x2.status is FileStatus.MISSING
    assert x2.path is None


def test_verify_reports_garbage_under_the_right_name_as_mismatch(tmp_path):
    spec = get_spec("RealESRGAN_x4plus")
    (tmp_path / spec.filename).write_bytes(os.urandom(4096))
    result = ModelStore(tmp_path).verify(spec)
    assert result.status is FileStatus.MISMATCH
    assert result.path == tmp_path / spec.filename


def test_verify_reports_a_matching_file_as_official(tmp_path):
    spec = local_spec("http://127.0.0.1:9/unused")
    (tmp_path / spec.filename).write_bytes(PAYLOAD)
    assert ModelStore(tmp_path).verify(spec).status is FileStatus.OFFICIAL
