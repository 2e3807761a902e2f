"""The EFS model-staging custom resource, run locally against real servers on 127.0.0.1.

- CloudFormation's side: an HTTPS server (self-signed certificate for 127.0.0.1, trusted
  through SSL_CERT_FILE, since crhelper sends responses over HTTPS only) receives the
  response PUT at the event's ResponseURL, exactly as the presigned S3 URL would.
- The model's side: an HTTP server serves the "model" bytes, a 404, or a slow drip.
- The Lambda context is a small object whose remaining time really runs down.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import random
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

os.environ.setdefault("AWS_REGION", "us-east-1")  # crhelper builds its (unused) clients at import

from custom_resources import efs_model_stager as stager
from servers import file_server, self_signed_certificate

MODEL_A = random.Random(1).randbytes(300_000)
MODEL_B = random.Random(2).randbytes(200_000)
STACK_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/superres-test/0f1e2d3c-0000-1111-2222-333344445555"


def entry(name: str, body: bytes, url: str, sha256: str | None = None) -> dict[str, str]:
    return {
        "Name": name,
        "Filename": f"{name}.pth",
        "Url": url,
        "Size": str(len(body)),
        "Sha256": sha256 or hashlib.sha256(body).hexdigest(),
    }


class Context:
    """The parts of the Lambda context crhelper and the stager use; time really passes."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.aws_request_id = "req-0001"
        self.function_name = "stager"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


# ---------------------------------------------------------------- CloudFormation stand-in


class ResponseServer:
    """Receives the custom resource responses (PUT, JSON body) over HTTPS."""

    def __init__(self, url: str, received: queue.Queue) -> None:
        self.url = url
        self.received = received

    def next(self, timeout: float = 30.0) -> tuple[float, dict]:
        return self.received.get(timeout=timeout)

    def empty(self) -> bool:
        return self.received.empty()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"), "127.0.0.1")


@pytest.fixture
def cloudformation(tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[ResponseServer]:
    cert_path, key_path = tls_files
    received: queue.Queue = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.put((time.monotonic(), {"path": self.path, **json.loads(body)}))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # crhelper verifies the certificate with the default trust store: trust ours.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))
    try:
        yield ResponseServer(f"https://127.0.0.1:{server.server_address[1]}/presigned/response?sig=abc", received)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def efs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "mnt" / "models"
    monkeypatch.setenv(stager.TARGET_DIR_ENV, str(target))
    return target


def event(kind: str, response_url: str, models: list[dict], old: list[dict] | None = None, **extra) -> dict:
    body = {
        "RequestType": kind,
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:stager",
        "ResponseURL": response_url,
        "StackId": STACK_ID,
        "RequestId": f"request-{kind.lower()}",
        "LogicalResourceId": "ModelFiles",
        "ResourceType": "Custom::EfsModelFiles",
        "ResourceProperties": {"ServiceToken": "x", "Models": models, "MirrorBucket": "", "MirrorPrefix": "models/"},
        **extra,
    }
    if old is not None:
        body["OldResourceProperties"] = {"ServiceToken": "x", "Models": old}
    return body


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------- tests


def test_create_stages_verified_files(cloudformation: ResponseServer, efs: Path) -> None:
    with file_server({"/a.pth": (200, MODEL_A), "/b.pth": (200, MODEL_B)}) as base:
        models = [entry("model-a", MODEL_A, f"{base}/a.pth"), entry("model-b", MODEL_B, f"{base}/b.pth")]
        stager.handler(event("Create", cloudformation.url, models), Context(60))
    _, answer = cloudformation.next()
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert answer["path"] == "/presigned/response?sig=abc"
    assert answer["RequestId"] == "request-create" and answer["LogicalResourceId"] == "ModelFiles"
    assert answer["PhysicalResourceId"].startswith("efs-models-")
    assert answer["Data"] == {"Files": "model-a.pth,model-b.pth"}
    assert hashlib.sha256((efs / "model-a.pth").read_bytes()).hexdigest() == hashlib.sha256(MODEL_A).hexdigest()
    assert (efs / "model-b.pth").read_bytes() == MODEL_B
    assert leftovers(efs) == []
    assert cloudformation.empty(), "exactly one response per request"


def test_update_stages_new_model_and_removes_the_old_one(cloudformation: ResponseServer, efs: Path) -> None:
    with file_server({"/a.pth": (200, MODEL_A), "/b.pth": (200, MODEL_B)}) as base:
        old = [entry("model-a", MODEL_A, f"{base}/a.pth")]
        stager.handler(event("Create", cloudformation.url, old), Context(60))
        _, created = cloudformation.next()
        assert created["Status"] == "SUCCESS"
        new = [entry("model-b", MODEL_B, f"{base}/b.pth")]
        stager.handler(
            event("Update", cloudformation.url, new, old=old, PhysicalResourceId=created["PhysicalResourceId"]),
            Context(60),
        )
    _, updated = cloudformation.next()
    assert updated["Status"] == "SUCCESS", updated["Reason"]
    assert updated["Data"] == {"Files": "model-b.pth"}
    assert (efs / "model-b.pth").read_bytes() == MODEL_B
    assert not (efs / "model-a.pth").exists()


def test_update_keeps_a_verified_file_without_downloading(cloudformation: ResponseServer, efs: Path) -> None:
    efs.mkdir(parents=True)
    (efs / "model-a.pth").write_bytes(MODEL_A)
    # The url answers 404: success proves the verified file was kept, not fetched again.
    models = [entry("model-a", MODEL_A, "http://127.0.0.1:9/a.pth")]
    stager.handler(
        event("Update", cloudformation.url, models, old=models, PhysicalResourceId="efs-models-1"), Context(60)
    )
    _, answer = cloudformation.next()
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert answer["PhysicalResourceId"].startswith("efs-models-")


def test_delete_leaves_files_and_never_fails(cloudformation: ResponseServer, efs: Path) -> None:
    efs.mkdir(parents=True)
    (efs / "model-a.pth").write_bytes(MODEL_A)
    models = [entry("model-a", MODEL_A, "http://127.0.0.1:9/a.pth")]
    stager.handler(event("Delete", cloudformation.url, models, PhysicalResourceId="efs-models-abc"), Context(60))
    _, answer = cloudformation.next()
    assert answer["Status"] == "SUCCESS"
    assert answer["PhysicalResourceId"] == "efs-models-abc"
    assert (efs / "model-a.pth").read_bytes() == MODEL_A


def test_delete_after_failed_create_with_nothing_on_disk(cloudformation: ResponseServer, efs: Path) -> None:
    # Rollback of a failed Create: no directory, garbage properties; Delete still succeeds.
    stager.handler(
        event("Delete", cloudformation.url, [{"Name": "x"}], PhysicalResourceId="superres-test_ModelFiles_ABC"),
        Context(60),
    )
    _, answer = cloudformation.next()
    assert answer["Status"] == "SUCCESS"
    assert not efs.exists()


def test_wrong_sha256_fails_with_reason_and_leaves_nothing(cloudformation: ResponseServer, efs: Path) -> None:
    with file_server({"/a.pth": (200, MODEL_A)}) as base:
        models = [entry("model-a", MODEL_A, f"{base}/a.pth", sha256="0" * 64)]
        stager.handler(event("Create", cloudformation.url, models), Context(60))
    _, answer = cloudformation.next()
    assert answer["Status"] == "FAILED"
    assert "sha256" in answer["Reason"] and "0" * 64 in answer["Reason"]
    # CloudFormation needs a physical id even for a failed Create (its rollback Deletes it).
    assert answer["PhysicalResourceId"]
    assert list(efs.iterdir()) == []


def test_missing_file_404_fails_with_reason(cloudformation: ResponseServer, efs: Path) -> None:
    with file_server({}) as base:
        models = [entry("model-a", MODEL_A, f"{base}/gone.pth")]
        stager.handler(event("Create", cloudformation.url, models), Context(60))
    _, answer = cloudformation.next()
    assert answer["Status"] == "FAILED"
    assert "HTTP 404" in answer["Reason"]


def test_bad_properties_fail_with_reason(cloudformation: ResponseServer, efs: Path) -> None:
    stager.handler(event("Create", cloudformation.url, []), Context(60))
    _, answer = cloudformation.next()
    assert answer["Status"] == "FAILED"
    assert "Models" in answer["Reason"]


class Drip:
    """A model server that sends its body slowly (or not at all after the headers)."""

    def __init__(self, body: bytes, chunk: int, pause: float) -> None:
        self.stop = threading.Event()
        drip = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                for start in range(0, len(body), chunk or len(body)):
                    if drip.stop.wait(pause):
                        return
                    if chunk:
                        self.wfile.write(body[start : start + chunk])
                        self.wfile.flush()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/model.pth"

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


def test_near_timeout_reports_failed_before_the_deadline(
    cloudformation: ResponseServer, efs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A download too slow for the remaining time stops itself and reports why, in time."""
    # The downloader reports progress per MiB: 3 MiB dripped over about 3 s report at
    # about 1 s and 2 s. The stager must stop at 4 - 2 = 2 s, well before crhelper's own
    # timer (at 3.5 s) and the deadline (4 s).
    monkeypatch.setattr(stager, "SAFETY_MARGIN_SECONDS", 2.0)
    body = random.Random(3).randbytes(3 * 1024 * 1024)
    drip = Drip(body, chunk=100_000, pause=0.1)
    try:
        context = Context(4.0)
        started = time.monotonic()
        stager.handler(event("Create", cloudformation.url, [entry("model-a", body, drip.url)]), context)
        arrived, answer = cloudformation.next()
    finally:
        drip.close()
    assert answer["Status"] == "FAILED"
    assert "would time out" in answer["Reason"], answer["Reason"]
    assert arrived < context.deadline - 0.5, f"answered {arrived - context.deadline:.2f} s after the deadline"
    assert arrived - started < 3.5
    assert leftovers(efs) == [] and not (efs / "model-a.pth").exists()
    assert cloudformation.empty()


def test_stalled_download_is_answered_by_the_timer_once(
    cloudformation: ResponseServer, efs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No byte ever arrives: crhelper's timer sends FAILED before the Lambda would be killed."""
    monkeypatch.setattr(stager, "SAFETY_MARGIN_SECONDS", 0.0)
    drip = Drip(MODEL_A, chunk=0, pause=30)  # headers, then silence
    try:
        context = Context(1.5)
        stager.handler(event("Create", cloudformation.url, [entry("model-a", MODEL_A, drip.url)]), context)
        arrived, answer = cloudformation.next()
    finally:
        drip.close()
    assert answer["Status"] == "FAILED"
    assert answer["Reason"] == "Execution timed out"
    assert arrived < context.deadline
    # The handler's own failure later was not sent a second time.
    time.sleep(0.2)
    assert cloudformation.empty()


def test_copy_from_s3_mirror_is_verified_too(
    cloudformation: ResponseServer, efs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MirrorBucket set: the files come from S3 (moto server) through a presigned GET, same checks."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        for name, value in {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(name, value)
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="model-mirror")
        s3.put_object(Bucket="model-mirror", Key="models/model-a.pth", Body=MODEL_A)
        s3.put_object(Bucket="model-mirror", Key="models/model-b.pth", Body=MODEL_A)  # wrong bytes
        # The official url is unreachable: success proves the copy came from the mirror.
        good = event("Create", cloudformation.url, [entry("model-a", MODEL_A, "http://127.0.0.1:9/a.pth")])
        good["ResourceProperties"]["MirrorBucket"] = "model-mirror"
        stager.handler(good, Context(60))
        _, answer = cloudformation.next()
        assert answer["Status"] == "SUCCESS", answer["Reason"]
        assert (efs / "model-a.pth").read_bytes() == MODEL_A
        bad = event("Create", cloudformation.url, [entry("model-b", MODEL_B, "http://127.0.0.1:9/b.pth")])
        bad["ResourceProperties"]["MirrorBucket"] = "model-mirror"
        stager.handler(bad, Context(60))
        _, answer = cloudformation.next()
        assert answer["Status"] == "FAILED"
        assert not (efs / "model-b.pth").exists()
    finally:
        server.stop()
