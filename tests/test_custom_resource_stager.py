"""The EFS model-staging custom resource, run locally against real servers on 127.0.0.1.

- CloudFormation's side: an HTTPS server (self-signed certificate for 127.0.0.1, trusted
  through SSL_CERT_FILE, since crhelper sends responses over HTTPS only) receives the
  response PUT at the event's ResponseURL, exactly as the presigned S3 URL would.
- The release's side: moto in server mode holds the asset bucket with the networks the
  release build converts (``deployment/package.py``'s ``build_networks`` on the real
  realesr-animevideov3 weights) and their manifest; the stager reads them through presigned
  GETs. The deadline tests swap in a server that drips its body slowly.
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
from typing import Any

import boto3
import numpy as np
import pytest

os.environ.setdefault("AWS_REGION", "us-east-1")  # crhelper builds its (unused) clients at import

from conftest import SHARED, load_photo
from custom_resources import efs_model_stager as stager
from repo_modules import load_script
from servers import moto_server, self_signed_certificate
from superres.engine import Upscaler
from superres.face_detection import FaceDetector
from superres.manifest import get_spec
from superres.store import ModelStore

package = load_script("deployment_package", "deployment/package.py")

STACK_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/superres-test/0f1e2d3c-0000-1111-2222-333344445555"
BUCKET = "superres-assets-us-east-1"
PREFIX = "superres-kit/v0.1.0"
MANIFEST_KEY = f"{PREFIX}/networks/manifest.json"
NETWORK = "realesr-animevideov3"
#: The face detector, staged with GFPGAN when the stack's FaceEnhancement is true.
DETECTOR = "YuNet"
#: A second network: only its manifest entry and bytes matter to the stager.
OTHER = "RealESRGAN_x4plus"
OTHER_FILE = random.Random(2).randbytes(200_000)


class Context:
    """The parts of the Lambda context crhelper and the stager use; time really passes."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.aws_request_id = "req-0001"
        self.function_name = "stager"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The release build's networks/ folder: the real conversion, and its manifest."""
    out = tmp_path_factory.mktemp("regional")
    store = ModelStore(SHARED / "models")
    package.build_networks(out, {name: store.path(get_spec(name)) for name in (NETWORK, DETECTOR)})
    manifest = json.loads((out / "networks" / "manifest.json").read_text())
    manifest["networks"][OTHER] = {
        "files": {"network.bin": {"size": len(OTHER_FILE), "sha256": hashlib.sha256(OTHER_FILE).hexdigest()}}
    }
    objects = {
        f"{PREFIX}/{path.relative_to(out).as_posix()}": path.read_bytes()
        for path in (out / "networks").rglob("*")
        if path.is_file()
    }
    objects[MANIFEST_KEY] = json.dumps(manifest).encode()
    objects[f"{PREFIX}/networks/{OTHER}.openvino/network.bin"] = OTHER_FILE
    return {"manifest": manifest, "objects": objects}


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def s3(moto_url: str, release: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The asset bucket, as published, fresh for each test."""
    for name, value in {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    for key, body in release["objects"].items():
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
    yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


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


def event(kind: str, response_url: str, networks: list[str], old: list[str] | None = None, **extra) -> dict:
    body = {
        "RequestType": kind,
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:stager",
        "ResponseURL": response_url,
        "StackId": STACK_ID,
        "RequestId": f"request-{kind.lower()}",
        "LogicalResourceId": "ModelFiles",
        "ResourceType": "Custom::EfsModelFiles",
        "ResourceProperties": {
            "ServiceToken": "x",
            "Bucket": BUCKET,
            "ManifestKey": MANIFEST_KEY,
            "Networks": networks,
        },
        **extra,
    }
    if old is not None:
        body["OldResourceProperties"] = {
            "ServiceToken": "x",
            "Bucket": BUCKET,
            "ManifestKey": MANIFEST_KEY,
            "Networks": old,
        }
    return body


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob(".*"))


def staged_files(release: dict[str, Any], name: str) -> dict[str, str]:
    return {
        f"{name}.openvino/{f}": facts["sha256"] for f, facts in release["manifest"]["networks"][name]["files"].items()
    }


# ---------------------------------------------------------------- tests


def test_create_stages_the_release_networks_verified(
    cloudformation: ResponseServer, efs: Path, s3: Any, release: dict[str, Any]
) -> None:
    stager.handler(event("Create", cloudformation.url, [NETWORK, OTHER]), Context(60))
    _, answer = cloudformation.next()
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert answer["path"] == "/presigned/response?sig=abc"
    assert answer["RequestId"] == "request-create" and answer["LogicalResourceId"] == "ModelFiles"
    assert answer["PhysicalResourceId"].startswith("efs-models-")
    expected = {**staged_files(release, NETWORK), **staged_files(release, OTHER)}
    assert sorted(answer["Data"]["Files"].split(",")) == sorted(expected)
    for path, digest in expected.items():
        assert hashlib.sha256((efs / path).read_bytes()).hexdigest() == digest
    assert leftovers(efs) == []
    assert cloudformation.empty(), "exactly one response per request"


def test_the_staged_network_is_what_the_cpu_service_loads(cloudformation: ResponseServer, efs: Path, s3: Any) -> None:
    """The staged folder is a model directory the service's store and runtime load as it is."""
    stager.handler(event("Create", cloudformation.url, [NETWORK]), Context(60))
    assert cloudformation.next()[1]["Status"] == "SUCCESS"
    spec = get_spec(NETWORK)
    store = ModelStore(efs)
    assert store.network(spec) == efs / f"{NETWORK}.openvino"
    upscaler = Upscaler.from_file(store.network(spec), spec)
    assert upscaler.runner.info.runtime == "openvino"
    crop = np.ascontiguousarray(load_photo("astronaut.png")[:40, :48])
    assert upscaler.upscale(crop).shape == (160, 192, 3)


def test_staged_face_detector_is_what_the_face_restorer_loads(
    cloudformation: ResponseServer, efs: Path, s3: Any
) -> None:
    """FaceEnhancement on: the detector's IR lands beside the upscaler and finds the astronaut."""
    stager.handler(event("Create", cloudformation.url, [NETWORK, DETECTOR]), Context(60))
    assert cloudformation.next()[1]["Status"] == "SUCCESS"
    store = ModelStore(efs)
    assert store.network(get_spec(DETECTOR)) == efs / f"{DETECTOR}.openvino"
    (face,) = FaceDetector.from_store(store).detect(load_photo("astronaut.png"))
    assert face.score > 0.8


def test_update_stages_the_new_network_and_removes_the_old_one(
    cloudformation: ResponseServer, efs: Path, s3: Any
) -> None:
    stager.handler(event("Create", cloudformation.url, [OTHER]), Context(60))
    _, created = cloudformation.next()
    assert created["Status"] == "SUCCESS"
    stager.handler(
        event("Update", cloudformation.url, [NETWORK], old=[OTHER], PhysicalResourceId=created["PhysicalResourceId"]),
        Context(60),
    )
    _, updated = cloudformation.next()
    assert updated["Status"] == "SUCCESS", updated["Reason"]
    assert (efs / f"{NETWORK}.openvino").is_dir()
    assert not (efs / f"{OTHER}.openvino").exists()


def test_update_keeps_a_verified_file_without_downloading(cloudformation: ResponseServer, efs: Path, s3: Any) -> None:
    (efs / f"{OTHER}.openvino").mkdir(parents=True)
    (efs / f"{OTHER}.openvino" / "network.bin").write_bytes(OTHER_FILE)
    # The object is gone from the bucket: success proves the verified file was kept, not fetched.
    s3.delete_object(Bucket=BUCKET, Key=f"{PREFIX}/networks/{OTHER}.openvino/network.bin")
    stager.handler(
        event("Update", cloudformation.url, [OTHER], old=[OTHER], PhysicalResourceId="efs-models-1"), Context(60)
    )
    _, answer = cloudformation.next()
    assert answer["Status"] == "SUCCESS", answer["Reason"]


def test_delete_leaves_files_and_never_fails(cloudformation: ResponseServer, efs: Path) -> None:
    (efs / f"{OTHER}.openvino").mkdir(parents=True)
    (efs / f"{OTHER}.openvino" / "network.bin").write_bytes(OTHER_FILE)
    stager.handler(event("Delete", cloudformation.url, [OTHER], PhysicalResourceId="efs-models-abc"), Context(60))
    _, answer = cloudformation.next()
    assert answer["Status"] == "SUCCESS"
    assert answer["PhysicalResourceId"] == "efs-models-abc"
    assert (efs / f"{OTHER}.openvino" / "network.bin").read_bytes() == OTHER_FILE


def test_delete_after_failed_create_with_nothing_on_disk(cloudformation: ResponseServer, efs: Path) -> None:
    # Rollback of a failed Create: no directory, garbage properties; Delete still succeeds.
    stager.handler(
        event("Delete", cloudformation.url, [{"Name": "x"}], PhysicalResourceId="superres-test_ModelFiles_ABC"),  # type: ignore[list-item]  # garbage on purpose
        Context(60),
    )
    _, answer = cloudformation.next()
    assert answer["Status"] == "SUCCESS"
    assert not efs.exists()


def test_a_file_whose_digest_is_wrong_is_refused_and_leaves_nothing(
    cloudformation: ResponseServer, efs: Path, s3: Any, release: dict[str, Any]
) -> None:
    """Bytes in the bucket that are not the ones the manifest names never get a name on EFS."""
    key = f"{PREFIX}/networks/{NETWORK}.openvino/network.bin"
    tampered = bytearray(release["objects"][key])
    tampered[1000] ^= 0xFF
    s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(tampered))
    stager.handler(event("Create", cloudformation.url, [NETWORK]), Context(60))
    _, answer = cloudformation.next()
    assert answer["Status"] == "FAILED"
    digest = release["manifest"]["networks"][NETWORK]["files"]["network.bin"]["sha256"]
    assert "sha256" in answer["Reason"] and digest in answer["Reason"]
    # CloudFormation needs a physical id even for a failed Create (its rollback Deletes it).
    assert answer["PhysicalResourceId"]
    assert not (efs / f"{NETWORK}.openvino" / "network.bin").exists()
    assert leftovers(efs) == []


def test_a_network_the_release_lacks_fails_with_reason(cloudformation: ResponseServer, efs: Path, s3: Any) -> None:
    stager.handler(event("Create", cloudformation.url, ["RealESRGAN_x4plus_anime_6B"]), Context(60))
    _, answer = cloudformation.next()
    assert answer["Status"] == "FAILED"
    assert "RealESRGAN_x4plus_anime_6B is not in this release" in answer["Reason"]
    assert "--models" in answer["Reason"]


@pytest.mark.parametrize(
    ("properties", "reason"),
    [
        ({"Networks": []}, "Networks"),
        ({"Networks": ["no-such-net"]}, "unknown model"),
        ({"ManifestKey": ""}, "ManifestKey"),
    ],
)
def test_bad_properties_fail_with_reason(
    cloudformation: ResponseServer, efs: Path, s3: Any, properties: dict[str, Any], reason: str
) -> None:
    bad = event("Create", cloudformation.url, [NETWORK])
    bad["ResourceProperties"].update(properties)
    stager.handler(bad, Context(60))
    _, answer = cloudformation.next()
    assert answer["Status"] == "FAILED"
    assert reason in answer["Reason"]


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


def releases_only(s3: Any, body: bytes, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The manifest names ``body`` as OTHER's one file, and its GET goes to ``url``."""
    manifest = {"networks": {OTHER: {"files": {"network.bin": {"size": len(body), "sha256": "0" * 64}}}}}
    s3.put_object(Bucket=BUCKET, Key=MANIFEST_KEY, Body=json.dumps(manifest).encode())
    monkeypatch.setattr(stager, "_presigned_url", lambda _bucket, _key: url)


def test_near_timeout_reports_failed_before_the_deadline(
    cloudformation: ResponseServer, efs: Path, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A download too slow for the remaining time stops itself and reports why, in time."""
    # The downloader reports progress per MiB: 3 MiB dripped over about 3 s report at
    # about 1 s and 2 s. The stager must stop at 4 - 2 = 2 s, well before crhelper's own
    # timer (at 3.5 s) and the deadline (4 s).
    monkeypatch.setattr(stager, "SAFETY_MARGIN_SECONDS", 2.0)
    body = random.Random(3).randbytes(3 * 1024 * 1024)
    drip = Drip(body, chunk=100_000, pause=0.1)
    releases_only(s3, body, drip.url, monkeypatch)
    try:
        context = Context(4.0)
        started = time.monotonic()
        stager.handler(event("Create", cloudformation.url, [OTHER]), context)
        arrived, answer = cloudformation.next()
    finally:
        drip.close()
    assert answer["Status"] == "FAILED"
    assert "would time out" in answer["Reason"], answer["Reason"]
    assert arrived < context.deadline - 0.5, f"answered {arrived - context.deadline:.2f} s after the deadline"
    assert arrived - started < 3.5
    assert leftovers(efs) == [] and not (efs / f"{OTHER}.openvino" / "network.bin").exists()
    assert cloudformation.empty()


def test_stalled_download_is_answered_by_the_timer_once(
    cloudformation: ResponseServer, efs: Path, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No byte ever arrives: crhelper's timer sends FAILED before the Lambda would be killed."""
    monkeypatch.setattr(stager, "SAFETY_MARGIN_SECONDS", 0.0)
    drip = Drip(OTHER_FILE, chunk=0, pause=30)  # headers, then silence
    releases_only(s3, OTHER_FILE, drip.url, monkeypatch)
    try:
        context = Context(1.5)
        stager.handler(event("Create", cloudformation.url, [OTHER]), context)
        arrived, answer = cloudformation.next()
    finally:
        drip.close()
    assert answer["Status"] == "FAILED"
    assert answer["Reason"] == "Execution timed out"
    assert arrived < context.deadline
    # The handler's own failure later was not sent a second time.
    time.sleep(0.2)
    assert cloudformation.empty()
