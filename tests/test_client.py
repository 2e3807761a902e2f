"""The client and ``superres client`` against the real local server over real HTTP.

The server runs realesr-animevideov3 (real weights) on a small crop, so each
request takes a fraction of a second on CPU. A test-local ASGI middleware in
front of the app records every request as it arrived on the wire, so the
tests can check the authentication headers independently of the client: the
SigV4 signature is recomputed from the recorded method, URL, headers and body.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from click.testing import CliRunner
from starlette.types import ASGIApp

from servers import file_server, serving
from service_helpers import settings
from superres import codec
from superres.cli import main
from superres.client import MissingCredentialsError, ResolutionAPIError, ResolutionClient
from superres.service.local import local_app

CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
REGION = "us-east-1"
API_KEY = "test-usage-plan-key"
#: Requests under this stage need API_KEY, like an API Gateway method with apiKeyRequired.
KEYED = "/keyed/resolution"


@dataclass(frozen=True)
class Recorded:
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key == name.lower()]
        assert len(values) <= 1, f"{name} arrived {len(values)} times"
        return values[0] if values else None


class Recorder:
    """ASGI middleware: records each HTTP request (raw headers, whole body), then passes it on.

    Under ``/keyed/`` it answers like API Gateway without a valid key: 403
    ``{"message": "Forbidden"}``, no code.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests: list[Recorded] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        host = dict(headers)["host"]
        path = scope.get("raw_path") or scope["path"].encode()
        query = b"?" + scope["query_string"] if scope["query_string"] else b""
        recorded = Recorded(scope["method"], f"{scope['scheme']}://{host}{(path + query).decode()}", headers, body)
        self.requests.append(recorded)

        if scope["path"].startswith("/keyed/") and recorded.header("x-api-key") != API_KEY:
            answer = json.dumps({"message": "Forbidden"}).encode()
            await send(
                {"type": "http.response.start", "status": 403, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": answer})
            return

        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


@pytest.fixture(scope="module")
def recorder() -> Recorder:
    return Recorder(local_app(settings()))


@pytest.fixture(scope="module")
def base_url(recorder: Recorder) -> Iterator[str]:
    with serving(recorder) as url:
        yield url


@pytest.fixture(scope="module")
def photo_png(astronaut) -> bytes:
    return codec.encode(np.ascontiguousarray(astronaut[100:164, 150:230]), "png")  # 80 x 64


@pytest.fixture
def no_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An empty credential chain: no AWS_* variables, no files, no instance metadata."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # else a probe of 169.254.169.254


def last_request(recorder: Recorder) -> Recorded:
    return recorder.requests[-1]


def verify_sigv4(recorded: Recorded, credentials: Credentials = CREDENTIALS, body: bytes | None = None) -> bool:
    """Recompute the signature from what arrived and compare it with the one that arrived."""
    match = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/execute-api/aws4_request, "
        r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})",
        recorded.header("authorization") or "",
    )
    assert match, recorded.header("authorization")
    amz_date = recorded.header("x-amz-date")
    assert amz_date and amz_date.startswith(match["date"])
    assert match["key"] == credentials.access_key
    signed = match["signed"].split(";")
    # A verifier such as API Gateway checks the headers the signature lists: what the
    # client signed must be there; what its HTTP library added unsigned does not count.
    assert {"content-type", "host", "x-amz-date"} <= set(signed)
    assert "authorization" not in signed
    rebuilt = AWSRequest(
        method=recorded.method,
        url=recorded.url,
        headers={name: recorded.header(name) for name in signed},
        data=recorded.body if body is None else body,
    )
    rebuilt.context["timestamp"] = amz_date
    signer = SigV4Auth(credentials, "execute-api", match["region"])
    expected = signer.signature(signer.string_to_sign(rebuilt, signer.canonical_request(rebuilt)), rebuilt)
    return expected == match["signature"]


# --- the client against the local server --------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 4])
def test_upscale_bytes(base_url: str, photo_png: bytes, scale: int) -> None:
    with ResolutionClient(base_url + "/resolution") as client:
        result = client.upscale(photo_png, scale=scale)
    pixels, info = codec.decode(result.image)
    assert (info.format, info.width, info.height) == ("png", 80 * scale, 64 * scale)
    assert pixels.shape == (64 * scale, 80 * scale, 3)
    assert (result.format, result.width, result.height) == ("png", 80 * scale, 64 * scale)
    assert result.metadata["model"] == "realesr-animevideov3"
    assert result.metadata["scale"] == scale
    assert "result" not in result.metadata


def test_upscale_url_through_a_file_server(base_url: str, recorder: Recorder, photo_png: bytes) -> None:
    with file_server({"/photo.png": (200, photo_png)}) as images, ResolutionClient(base_url + "/resolution") as client:
        result = client.upscale(url=images + "/photo.png", format="jpeg", quality=80)
    _, info = codec.decode(result.image)
    assert (info.format, info.width, info.height) == ("jpeg", 160, 128)
    sent = json.loads(last_request(recorder).body)
    assert sent == {"url": images + "/photo.png", "scale": 2, "face": False, "format": "jpeg", "quality": 80}


def test_a_bad_request_raises_the_servers_error(base_url: str, photo_png: bytes) -> None:
    with ResolutionClient(base_url + "/resolution") as client:
        with pytest.raises(ResolutionAPIError) as caught:
            client.upscale(photo_png, scale=9)
        assert (caught.value.status, caught.value.code) == (400, "bad_request")
        assert "scale" in caught.value.message
        with pytest.raises(ResolutionAPIError) as caught:
            client.upscale(b"not an image")
        assert (caught.value.status, caught.value.code) == (415, "unsupported_image")
        with pytest.raises(ValueError, match="bytes or as url"):
            client.upscale()


# --- authentication on the wire ------------------------------------------------------------------


def test_the_api_key_arrives(base_url: str, recorder: Recorder, photo_png: bytes) -> None:
    with ResolutionClient(base_url + KEYED, api_key=API_KEY) as client:
        assert client.upscale(photo_png).width == 160
    assert last_request(recorder).header("x-api-key") == API_KEY
    assert last_request(recorder).header("authorization") is None


def test_a_gateway_error_has_no_code(base_url: str, recorder: Recorder, photo_png: bytes) -> None:
    with ResolutionClient(base_url + KEYED, api_key="wrong") as client, pytest.raises(ResolutionAPIError) as caught:
        client.upscale(photo_png)
    assert (caught.value.status, caught.value.code, caught.value.message) == (403, None, "Forbidden")
    assert str(caught.value) == "HTTP 403: Forbidden"
    assert last_request(recorder).header("x-api-key") == "wrong"


def test_the_sigv4_signature_arrives_valid(base_url: str, recorder: Recorder, photo_png: bytes) -> None:
    endpoint = base_url + "/prod/resolution"  # the stage path, as API Gateway invoke URLs have
    with ResolutionClient(endpoint, sigv4_region=REGION, credentials=CREDENTIALS) as client:
        result = client.upscale(photo_png, scale=4)
    assert (result.width, result.height) == (320, 256)
    recorded = last_request(recorder)
    assert recorded.url == endpoint
    authorization = recorded.header("authorization") or ""
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert f"/{REGION}/execute-api/aws4_request" in authorization
    assert verify_sigv4(recorded)
    # The signature covers the body: one byte more, and it no longer matches.
    assert not verify_sigv4(recorded, body=recorded.body + b" ")
    assert not verify_sigv4(recorded, body=recorded.body.replace(b'"scale": 4', b'"scale": 2'))
    # ... and the secret: another key does not reproduce it.
    assert not verify_sigv4(recorded, Credentials(CREDENTIALS.access_key, "another-secret"))


def test_sigv4_with_an_api_key_and_a_session_token(base_url: str, recorder: Recorder, photo_png: bytes) -> None:
    credentials = Credentials(CREDENTIALS.access_key, CREDENTIALS.secret_key, token="session-token")
    with ResolutionClient(base_url + KEYED, api_key=API_KEY, sigv4_region=REGION, credentials=credentials) as client:
        client.upscale(photo_png)
    recorded = last_request(recorder)
    assert recorded.header("x-amz-security-token") == "session-token"
    listed = re.search(r"SignedHeaders=([^,]+)", recorded.header("authorization") or "")
    assert listed, recorded.header("authorization")
    signed = listed[1].split(";")
    assert {"x-api-key", "x-amz-security-token"} <= set(signed)
    assert verify_sigv4(recorded, credentials)


def test_sigv4_credentials_come_from_the_aws_chain(
    base_url: str, recorder: Recorder, photo_png: bytes, no_aws_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", CREDENTIALS.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CREDENTIALS.secret_key)
    with ResolutionClient(base_url + "/resolution", sigv4_region=REGION) as client:
        client.upscale(photo_png)
    assert verify_sigv4(last_request(recorder))


def test_missing_credentials_is_a_clear_error(base_url: str, no_aws_credentials: None) -> None:
    with pytest.raises(MissingCredentialsError, match="SigV4 signing needs AWS credentials"):
        ResolutionClient(base_url + "/resolution", sigv4_region=REGION)


# --- superres client -----------------------------------------------------------------------------


def test_cli_writes_the_result(
    base_url: str, recorder: Recorder, photo_png: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "photo.png").write_bytes(photo_png)
    monkeypatch.chdir(tmp_path)
    run = CliRunner(env={"SUPERRES_API_KEY": API_KEY}).invoke(
        main, ["client", base_url + KEYED, "photo.png", "--scale", "4", "--format", "webp"]
    )
    assert run.exit_code == 0, run.output
    assert run.stdout.strip() == "photo_x4.webp (320x256)"
    _, info = codec.decode((tmp_path / "photo_x4.webp").read_bytes())
    assert (info.format, info.width, info.height) == ("webp", 320, 256)
    assert last_request(recorder).header("x-api-key") == API_KEY  # from the environment


def test_cli_sends_a_url_and_writes_to_output(
    base_url: str, recorder: Recorder, photo_png: bytes, tmp_path: Path
) -> None:
    output = tmp_path / "big.png"
    with file_server({"/images/photo.png": (200, photo_png)}) as images:
        run = CliRunner().invoke(
            main, ["client", base_url + "/resolution", images + "/images/photo.png", "-o", str(output)]
        )
    assert run.exit_code == 0, run.output
    assert run.stdout.strip() == f"{output} (160x128)"
    assert codec.probe(output.read_bytes()).width == 160
    assert json.loads(last_request(recorder).body)["url"] == images + "/images/photo.png"


def test_cli_api_error_exits_1(base_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "notes.png").write_bytes(b"not an image")
    monkeypatch.chdir(tmp_path)
    run = CliRunner().invoke(main, ["client", base_url + "/resolution", "notes.png"])
    assert run.exit_code == 1
    assert run.stderr.startswith("HTTP 415 unsupported_image: not a supported image"), run.stderr
    assert run.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.png"]


def test_cli_sigv4_without_credentials_exits_1(base_url: str, tmp_path: Path, no_aws_credentials: None) -> None:
    (tmp_path / "photo.png").write_bytes(b"unused")
    run = CliRunner().invoke(main, ["client", base_url + "/resolution", str(tmp_path / "photo.png"), "--sigv4", REGION])
    assert run.exit_code == 1
    assert "SigV4 signing needs AWS credentials" in run.stderr
