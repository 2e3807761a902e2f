"""superres.fetch against real servers on 127.0.0.1: an HTTP server and moto's S3.

Nothing here sends traffic beyond loopback: every non-loopback url in these
tests must be refused before a connection is made, and the messages asserted
prove the refusal came from the address check, not from a failed connect.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from servers import self_signed_certificate
from superres.errors import (
    BadRequestError,
    ImageTooLargeError,
    SuperResError,
    UrlFetchError,
    UrlNotAllowedError,
)
from superres.fetch import FetchPolicy, fetch_url
from superres.fetch.addresses import AWS_ENDPOINT_SUFFIXES, is_aws_endpoint, refusal

IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8  # any bytes: probing is the caller's job
MAX = 64 * 1024


# ------------------------------------------------------------------ server


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # stalled handlers must not block teardown

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits: Counter[str] = Counter()
        self.headers_seen: list[dict[str, str]] = []
        self.stop = threading.Event()

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def total_hits(self) -> int:
        return sum(self.hits.values())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked bodies and keep-alive
    server: _Server

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        self.server.hits[path] += 1
        self.server.headers_seen.append({k.lower(): v for k, v in self.headers.items()})
        stop = self.server.stop
        try:
            if path == "/image":
                self._send(200, IMAGE, {"Content-Type": "image/png"})
            elif path.startswith("/redirect/"):
                left = int(path.rsplit("/", 1)[1])
                location = "/image" if left <= 1 else f"/redirect/{left - 1}"  # n redirects in all
                self._send(302, b"", {"Location": location})
            elif path == "/redirect-to":
                self._send(302, b"", {"Location": parse_qs(parts.query)["url"][0]})
            elif path == "/no-location":
                self._send(302, b"")
            elif path.startswith("/status/"):
                self._send(int(path.rsplit("/", 1)[1]), b"nope")
            elif path == "/gzip":
                self._send(200, b"\x1f\x8b\x08\x00", {"Content-Encoding": "gzip"})
            elif path == "/slow":
                # Honest about a modest size, then one byte every 0.3 s: each
                # read completes well inside the read timeout.
                self._head(200, {"Content-Length": str(MAX // 2)})
                for _ in range(MAX // 2):
                    if stop.wait(0.3):
                        return
                    self.wfile.write(b"x")
                    self.wfile.flush()
            elif path == "/stall-head":
                stop.wait(10)  # no status line at all
            elif path == "/stall-body":
                self._head(200, {"Content-Length": "100"})
                self.wfile.write(b"x" * 10)
                self.wfile.flush()
                stop.wait(10)
            elif path == "/big-honest":
                # Declares too much, then sends nothing: a client that read
                # the body instead of refusing up front would hit a timeout.
                self._head(200, {"Content-Length": str(50 * MAX)})
                stop.wait(10)
            elif path == "/big-chunked":
                self._head(200, {"Transfer-Encoding": "chunked"})
                chunk = b"y" * 4096
                for _ in range(10_000):  # 40 MB if nobody stops reading
                    if stop.is_set():
                        return
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            else:
                self._send(404, b"unknown path")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should

    def _head(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self._head(status, {**(headers or {}), "Content-Length": str(len(body))})
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.stop.set()
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def _loopback(**overrides) -> FetchPolicy:
    options = {"max_bytes": MAX, "connect_timeout": 1.0, "read_timeout": 2.0, "total_timeout": 5.0}
    return FetchPolicy(**{**options, **overrides}, allow_loopback=True)


DEFAULT = FetchPolicy(max_bytes=MAX, connect_timeout=1.0, read_timeout=1.0, total_timeout=3.0)


# ------------------------------------------------------------ allowed paths


def test_fetches_image(server):
    assert fetch_url(f"http://127.0.0.1:{server.port}/image", _loopback()) == IMAGE
    assert fetch_url(f"http://localhost:{server.port}/image", _loopback()) == IMAGE
    sent = server.headers_seen[0]
    assert sent["accept-encoding"] == "identity"  # the byte cap counts wire bytes


def test_body_of_exactly_max_bytes_passes_one_less_fails(server):
    url = f"http://127.0.0.1:{server.port}/image"
    assert fetch_url(url, _loopback(max_bytes=len(IMAGE))) == IMAGE
    with pytest.raises(ImageTooLargeError):
        fetch_url(url, _loopback(max_bytes=len(IMAGE) - 1))


def test_follows_redirects_up_to_the_limit(server):
    assert fetch_url(f"http://127.0.0.1:{server.port}/redirect/3", _loopback(max_redirects=3)) == IMAGE
    assert server.hits["/image"] == 1


def test_too_many_redirects_is_a_fetch_error(server):
    with pytest.raises(UrlFetchError) as caught:
        fetch_url(f"http://127.0.0.1:{server.port}/redirect/5", _loopback(max_redirects=3))
    assert caught.value.status == 502 and caught.value.code == "url_fetch_failed"
    assert "more than 3" in caught.value.message
    assert server.total_hits == 4  # the first request and 3 followed redirects, then stop
    with pytest.raises(UrlFetchError):
        fetch_url(f"http://127.0.0.1:{server.port}/redirect/1", _loopback(max_redirects=0))


def test_redirect_without_location(server):
    with pytest.raises(UrlFetchError, match="without a Location"):
        fetch_url(f"http://127.0.0.1:{server.port}/no-location", _loopback())


def test_environment_proxies_are_ignored(server, monkeypatch):
    # A proxy resolves the host itself, past the address check; with
    # trust_env on, these would send the request to a dead port.
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    assert fetch_url(f"http://127.0.0.1:{server.port}/image", _loopback()) == IMAGE
    assert server.hits["/image"] == 1


# ------------------------------------------------------------ refused urls

REFUSED_LOOPBACK = [
    "http://127.0.0.1:{port}/image",
    "http://localhost:{port}/image",
    "http://[::1]:{port}/image",
    "http://0.0.0.0:{port}/image",
    "http://[::ffff:127.0.0.1]:{port}/image",
    "http://2130706433:{port}/image",  # decimal
    "http://0x7f000001:{port}/image",  # hex
    "http://017700000001:{port}/image",  # octal
    "http://127.1:{port}/image",  # short form
    "http://0x7f.1:{port}/image",
    "http://[::]:{port}/image",
]


@pytest.mark.parametrize("template", REFUSED_LOOPBACK)
def test_default_policy_refuses_loopback_spellings_before_connecting(server, template):
    with pytest.raises(UrlNotAllowedError) as caught:
        fetch_url(template.format(port=server.port), DEFAULT)
    assert caught.value.status == 400 and caught.value.code == "url_not_allowed"
    assert isinstance(caught.value, BadRequestError)
    assert "only public addresses" in caught.value.message
    assert server.total_hits == 0


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.0.0.1/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://100.64.0.1/", "shared (CGNAT)"),
        ("http://[fe80::1]/", "link-local"),
        ("http://224.0.0.1/", "multicast"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "private"),  # AWS IMDS over IPv6
        ("http://[::ffff:169.254.169.254]/", "link-local"),
        ("http://[64:ff9b::a9fe:a9fe]/", "link-local (embedded in IPv6)"),  # NAT64
        ("http://[2002:a00:1::1]/", "private (embedded in IPv6)"),  # 6to4
        ("https://10.0.0.1/", "private"),
    ],
)
def test_default_policy_refuses_non_public_addresses(url, reason):
    # The message names the category found by the check: had anything been
    # connected to, the error would be a (slower) UrlFetchError instead.
    started = time.monotonic()
    with pytest.raises(UrlNotAllowedError) as caught:
        fetch_url(url, DEFAULT)
    assert time.monotonic() - started < 0.5
    assert f"is a {reason}" in caught.value.message and "only public addresses" in caught.value.message


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/x.png",
        "gopher://127.0.0.1:70/_x",
        "data:image/png;base64,iVBORw0KGgo=",
        "dict://127.0.0.1:11211/stat",
        "example.com/x.png",
        "//example.com/x.png",
        "http://user:pass@example.com/x.png",
        "http://user@example.com/x.png",
        "http:///x.png",
        "http://",
        "http://exa mple.com/x.png",
        "http://example.com/x.png\r\nX-Injected: 1",
        "",
        "s3://",
        "s3://bucket-only",
        "s3:///key-only",
    ],
)
def test_refuses_bad_schemes_credentials_and_malformed_urls(url):
    with pytest.raises(UrlNotAllowedError):
        fetch_url(url, DEFAULT)


def test_allow_loopback_still_refuses_everything_else():
    for address in ("10.0.0.1", "169.254.169.254", "0.0.0.0", "100.64.0.1", "fe80::1", "fc00::1"):
        assert refusal(ipaddress.ip_address(address), allow_loopback=True) is not None, address
    for address in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"):
        assert refusal(ipaddress.ip_address(address), allow_loopback=True) is None, address


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.1.2.3", "172.31.255.255", "192.168.0.1", "169.254.169.254",
        "100.64.0.1", "100.127.255.254", "0.0.0.0", "0.1.2.3", "224.0.0.1",
        "239.255.255.250", "255.255.255.255", "240.0.0.1", "192.0.0.8", "192.0.2.1",
        "198.18.0.1", "203.0.113.9", "::1", "::", "fe80::1", "fc00::1", "fd00:ec2::254",
        "ff02::1", "fec0::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::7f00:1",
        "2002:7f00:1::1", "2002:a9fe:a9fe::1", "64:ff9b::7f00:1", "64:ff9b::a00:1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:db8::1",
    ],
)  # fmt: skip
def test_non_public_addresses_are_refused(address):
    assert refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "::ffff:8.8.8.8",
     "2002:808:808::1", "64:ff9b::808:808"],
)  # fmt: skip
def test_public_addresses_pass(address):
    assert refusal(ipaddress.ip_address(address)) is None


# ------------------------------------------------------------ redirect hops


def test_redirect_to_metadata_is_refused_per_hop(server):
    target = "http://169.254.169.254/latest/meta-data/"
    with pytest.raises(UrlNotAllowedError, match="link-local"):
        fetch_url(f"http://localhost:{server.port}/redirect-to?url={target}", _loopback())
    assert server.hits["/redirect-to"] == 1


def test_redirect_to_unspecified_address_is_refused_before_connecting(server):
    # Linux routes a connect to 0.0.0.0 to this very server; the hit count
    # shows the second hop never connected.
    target = f"http://0.0.0.0:{server.port}/image"
    with pytest.raises(UrlNotAllowedError, match="unspecified"):
        fetch_url(f"http://127.0.0.1:{server.port}/redirect-to?url={target}", _loopback())
    assert server.hits == Counter({"/redirect-to": 1})


@pytest.mark.parametrize(
    "target",
    ["file:///etc/passwd", "gopher://127.0.0.1:70/_x", "http://u:p@127.0.0.1/image", "s3://bucket/key"],
)
def test_redirect_to_bad_scheme_or_credentials_is_refused(server, target):
    with pytest.raises(UrlNotAllowedError):
        fetch_url(f"http://127.0.0.1:{server.port}/redirect-to?url={target}", _loopback())
    assert server.hits["/image"] == 0


# ------------------------------------------------------------ AWS service endpoints

#: S3, STS and other AWS endpoints in every spelling: their addresses are public, so only
#: the name check stands between a caller and what the stack's network identity may read.
AWS_ENDPOINT_URLS = [
    "https://bucket.s3.amazonaws.com/key.png",  # virtual-hosted, global
    "https://s3.amazonaws.com/bucket/key.png",  # path-style
    "https://bucket.s3.us-west-2.amazonaws.com/key.png",  # regional
    "https://bucket.s3-us-west-2.amazonaws.com/key.png",  # legacy dash-regional
    "https://s3.eu-west-1.amazonaws.com/bucket/key.png",  # regional path-style
    "https://bucket.s3.dualstack.us-east-1.amazonaws.com/key.png",  # dualstack
    "https://bucket.s3-fips.us-east-1.amazonaws.com/key.png",  # FIPS
    "https://bucket.s3-fips.dualstack.us-gov-west-1.amazonaws.com/key.png",  # FIPS dualstack, GovCloud
    "https://s3.us-east-1.api.aws/bucket/key.png",  # the newer dualstack names
    "https://bucket.s3-website-us-east-1.amazonaws.com/key.png",  # website endpoint
    "https://bucket.s3.accesspoint-123456789012.s3-accesspoint.us-east-1.amazonaws.com/key.png",
    "https://bucket.vpce-0a1b2c3d-4e5f.s3.us-east-1.vpce.amazonaws.com/key.png",  # interface endpoint
    "https://bucket.s3.cn-north-1.amazonaws.com.cn/key.png",  # China
    "https://s3.cn-northwest-1.amazonaws.com.cn/bucket/key.png",  # China path-style
    "https://s3.cn-north-1.api.amazonwebservices.com.cn/bucket/key.png",  # China dualstack
    "https://sts.amazonaws.com/?Action=GetCallerIdentity",  # STS global
    "https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity",  # STS regional
    "https://sts.cn-north-1.amazonaws.com.cn/",  # STS China
    "https://abcdef1234.execute-api.us-east-1.amazonaws.com/prod/resolution",
    "https://secretsmanager.us-east-1.amazonaws.com/",
    "http://bucket.s3.amazonaws.com/key.png",  # plain http
    "https://BUCKET.S3.AmazonAWS.COM/key.png",  # any case
    "https://bucket.s3.amazonaws.com./key.png",  # the final dot
    "https://bucket.s3.amazonaws.com:443/key.png",  # an explicit port
    "https://s3.amazonaws.com%2e/bucket/key.png",  # a percent-escaped dot
]


@pytest.mark.parametrize("url", AWS_ENDPOINT_URLS)
def test_aws_service_endpoints_are_refused_by_name(url):
    with pytest.raises(UrlNotAllowedError) as caught:
        fetch_url(url, FetchPolicy(max_bytes=MAX))
    message = str(caught.value)
    assert "AWS service endpoint" in message and "s3://bucket/key" in message and "AllowedS3Buckets" in message
    assert caught.value.status == 400


def test_redirect_to_an_aws_endpoint_is_refused(server):
    with pytest.raises(UrlNotAllowedError, match="AWS service endpoint"):
        fetch_url(
            f"http://127.0.0.1:{server.port}/redirect-to?url=https://bucket.s3.amazonaws.com/key.png", _loopback()
        )


@pytest.mark.parametrize(
    "host", ["example.com", "amazonaws.com.evil.example", "notamazonaws.com", "s3.amazonaws.co", "cdn.api.aws.example"]
)
def test_other_names_are_not_aws_endpoints(host):
    assert not is_aws_endpoint(host)


def test_the_suffixes_are_every_partitions_own():
    """botocore's partitions.json names each partition's endpoint suffixes (the same data the SDKs use)."""
    import botocore

    partitions = json.loads((Path(botocore.__file__).parent / "data" / "partitions.json").read_text())
    suffixes = {
        suffix
        for partition in partitions["partitions"]
        for suffix in (partition["outputs"]["dnsSuffix"], partition["outputs"]["dualStackDnsSuffix"])
    }
    assert suffixes == set(AWS_ENDPOINT_SUFFIXES)


# ------------------------------------------------------------ DNS rebinding


@pytest.fixture
def fake_dns(monkeypatch):
    """A resolver for names ending in .rebind.test; each name answers from a
    list of answers, one per query, the last repeating. Other names resolve
    normally (the connect to a checked IP still goes through getaddrinfo)."""
    real = socket.getaddrinfo
    answers: dict[str, list[list[str]]] = {}
    queries: Counter[str] = Counter()

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        if isinstance(host, str) and host.endswith(".rebind.test"):
            queries[host] += 1
            if host.startswith("slow."):
                time.sleep(2)  # a resolver that hangs
            sequence = answers[host]
            chosen = sequence[min(queries[host], len(sequence)) - 1]
            return [
                (
                    socket.AF_INET6 if ":" in ip else socket.AF_INET,
                    socket.SOCK_STREAM,
                    socket.IPPROTO_TCP,
                    "",
                    (ip, port, 0, 0) if ":" in ip else (ip, port),
                )
                for ip in chosen
            ]
        return real(host, port, family, type, proto, flags)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers, queries


def test_connects_to_the_address_it_checked(server, fake_dns):
    # First answer allowed (loopback, allow_loopback on), every later answer
    # 0.0.0.0, which is refused. An implementation that checks one answer and
    # lets the socket layer resolve again connects to the second one: the
    # resolver then sees two queries (or the fetch is refused).
    answers, queries = fake_dns
    answers["img.rebind.test"] = [["127.0.0.1"], ["0.0.0.0"]]
    assert fetch_url(f"http://img.rebind.test:{server.port}/image", _loopback()) == IMAGE
    assert queries["img.rebind.test"] == 1
    assert server.hits["/image"] == 1


def test_name_with_any_non_public_answer_is_refused(server, fake_dns):
    # Allowed first, forbidden second: checking only the first answer (or
    # trying them in order) would connect to 127.0.0.1 and hit the server.
    answers, _ = fake_dns
    answers["mixed.rebind.test"] = [["127.0.0.1", "10.0.0.1"]]
    answers["mapped.rebind.test"] = [["127.0.0.1", "::ffff:169.254.169.254"]]
    for host in ("mixed", "mapped"):
        with pytest.raises(UrlNotAllowedError, match=r"resolves to a (private|link-local) address"):
            fetch_url(f"http://{host}.rebind.test:{server.port}/image", _loopback())
    assert server.total_hits == 0


def test_every_redirect_hop_is_resolved_and_checked(server, fake_dns):
    answers, queries = fake_dns
    answers["hop.rebind.test"] = [["169.254.169.254"]]
    target = f"http://hop.rebind.test:{server.port}/image"
    with pytest.raises(UrlNotAllowedError, match="link-local"):
        fetch_url(f"http://127.0.0.1:{server.port}/redirect-to?url={target}", _loopback())
    assert queries["hop.rebind.test"] == 1


def test_unresolvable_name_is_a_fetch_error(fake_dns):
    answers, _ = fake_dns
    answers["empty.rebind.test"] = [[]]
    with pytest.raises(UrlFetchError, match="could not resolve"):
        fetch_url("http://empty.rebind.test/x.png", DEFAULT)


def test_slow_resolver_is_bounded_by_the_connect_timeout(fake_dns):
    answers, _ = fake_dns
    answers["slow.rebind.test"] = [["127.0.0.1"]]
    started = time.monotonic()
    with pytest.raises(UrlFetchError, match=r"timed out after 0\.4 s"):
        fetch_url("http://slow.rebind.test/x.png", _loopback(connect_timeout=0.4))
    assert time.monotonic() - started < 1.0


# ---------------------------------------------------------------------- tls


@pytest.fixture
def tls_server(tmp_path):
    """The test server behind TLS with a self-signed certificate for localhost,
    recording the SNI names clients send."""
    import ssl

    pytest.importorskip("cryptography")
    cert_path, key_path = self_signed_certificate(tmp_path, "localhost")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    sni: list[str | None] = []
    context.sni_callback = lambda _sock, server_name, _ctx: sni.append(server_name)

    srv = _Server()
    srv.socket = context.wrap_socket(srv.socket, server_side=True)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield srv, sni
    finally:
        srv.stop.set()
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def test_tls_uses_the_url_host_for_sni_and_verifies_the_certificate(tls_server):
    # The socket is opened to the checked IP, yet the handshake names the
    # url's host; the self-signed certificate is (rightly) not trusted.
    srv, sni = tls_server
    with pytest.raises(UrlFetchError) as caught:
        fetch_url(f"https://localhost:{srv.port}/image", _loopback())
    assert caught.value.message == "the url's TLS certificate could not be verified"
    assert sni == ["localhost"]
    assert srv.total_hits == 0


# ------------------------------------------------------------ size and time


def test_honest_oversized_content_length_is_refused_before_reading(server):
    started = time.monotonic()
    with pytest.raises(ImageTooLargeError) as caught:
        fetch_url(f"http://127.0.0.1:{server.port}/big-honest", _loopback(read_timeout=3.0))
    assert time.monotonic() - started < 1.0  # no body read was attempted
    assert f"{MAX:,} bytes" in caught.value.message
    assert caught.value.status == 413


def test_oversized_chunked_body_stops_at_the_cap(server):
    with pytest.raises(ImageTooLargeError) as caught:
        fetch_url(f"http://127.0.0.1:{server.port}/big-chunked", _loopback())
    assert f"limit of {MAX:,} bytes" in caught.value.message


def test_trickling_body_trips_the_total_timeout(server):
    policy = _loopback(read_timeout=1.0, total_timeout=1.5)
    started = time.monotonic()
    with pytest.raises(UrlFetchError) as caught:
        fetch_url(f"http://127.0.0.1:{server.port}/slow", policy)
    elapsed = time.monotonic() - started
    assert 1.4 < elapsed < 2.0
    assert caught.value.message == "fetching the url took longer than the total limit of 1.5 s"


def test_total_timeout_spans_redirect_hops(server):
    # The deadline is per fetch, not per hop: a redirect does not restart it.
    policy = _loopback(read_timeout=1.0, total_timeout=1.2)
    started = time.monotonic()
    with pytest.raises(UrlFetchError, match=r"total limit of 1\.2 s"):
        fetch_url(f"http://127.0.0.1:{server.port}/redirect-to?url=/slow", policy)
    assert time.monotonic() - started < 1.7


def test_a_single_stalled_read_is_cut_at_the_total_deadline(server):
    # read_timeout alone would wait 5 s; the deadline bounds every wait.
    policy = _loopback(read_timeout=5.0, total_timeout=0.8)
    started = time.monotonic()
    with pytest.raises(UrlFetchError, match=r"total limit of 0\.8 s"):
        fetch_url(f"http://127.0.0.1:{server.port}/stall-head", policy)
    assert time.monotonic() - started < 1.3


@pytest.mark.parametrize("path", ["/stall-head", "/stall-body"])
def test_stalled_response_trips_the_read_timeout(server, path):
    policy = _loopback(read_timeout=0.5, total_timeout=5.0)
    started = time.monotonic()
    with pytest.raises(UrlFetchError) as caught:
        fetch_url(f"http://127.0.0.1:{server.port}{path}", policy)
    assert time.monotonic() - started < 1.5
    assert caught.value.message == "the url sent no data for 0.5 s"


def test_connection_refused_is_a_fetch_error():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UrlFetchError, match="could not connect to the url"):
        fetch_url(f"http://127.0.0.1:{port}/image", _loopback())


@pytest.mark.parametrize("status", [404, 500])
def test_error_statuses_are_fetch_errors(server, status):
    with pytest.raises(UrlFetchError) as caught:
        fetch_url(f"http://127.0.0.1:{server.port}/status/{status}", _loopback())
    assert caught.value.message == f"the url answered HTTP {status}"
    assert caught.value.status == 502


def test_compressed_content_encoding_is_refused(server):
    with pytest.raises(UrlFetchError, match="Content-Encoding 'gzip'"):
        fetch_url(f"http://127.0.0.1:{server.port}/gzip", _loopback())


def test_messages_do_not_leak_tracebacks(server):
    with pytest.raises(SuperResError) as caught:
        fetch_url(f"http://127.0.0.1:{server.port}/stall-head", _loopback(read_timeout=0.3))
    assert "Traceback" not in caught.value.message and "httpcore" not in caught.value.message


def test_importing_fetch_loads_neither_torch_nor_boto3():
    code = "import sys, superres.fetch; print(sorted({'torch', 'boto3', 'botocore'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------- s3


@pytest.fixture(scope="module")
def s3():
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config

    motoserver = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    motoserver.start()
    host, port = motoserver.get_host_and_port()

    def client():
        return boto3.client(
            "s3",
            endpoint_url=f"http://{host}:{port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1}),
        )

    admin = client()
    for bucket in ("images", "secrets"):
        admin.create_bucket(Bucket=bucket)
    admin.put_object(Bucket="images", Key="in/photo.png", Body=IMAGE)
    admin.put_object(Bucket="images", Key="in/huge.png", Body=b"z" * (MAX + 1))
    admin.put_object(Bucket="secrets", Key="key.png", Body=IMAGE)
    try:
        yield client
    finally:
        motoserver.stop()


def _s3_policy(client_factory) -> FetchPolicy:
    return FetchPolicy(max_bytes=MAX, allowed_s3_buckets=frozenset({"images"}), s3_client_factory=client_factory)


def test_s3_allowed_bucket(s3):
    assert fetch_url("s3://images/in/photo.png", _s3_policy(s3)) == IMAGE


def test_s3_other_bucket_is_not_allowed(s3):
    with pytest.raises(UrlNotAllowedError, match="bucket secrets is not allow-listed"):
        fetch_url("s3://secrets/key.png", _s3_policy(s3))


def test_s3_missing_key(s3):
    with pytest.raises(UrlFetchError) as caught:
        fetch_url("s3://images/in/missing.png", _s3_policy(s3))
    assert caught.value.message == "s3://images/in/missing.png does not exist"
    assert caught.value.status == 502


def test_s3_oversized_object(s3):
    with pytest.raises(ImageTooLargeError, match=f"limit is {MAX:,} bytes"):
        fetch_url("s3://images/in/huge.png", _s3_policy(s3))


def test_s3_dot_segments_are_refused(s3):
    with pytest.raises(UrlNotAllowedError):
        fetch_url("s3://images/../secrets/key.png", _s3_policy(s3))


def test_s3_allow_listed_bucket_that_does_not_exist(s3):
    policy = FetchPolicy(max_bytes=MAX, allowed_s3_buckets=frozenset({"gone"}), s3_client_factory=s3)
    with pytest.raises(UrlFetchError, match="bucket gone does not exist"):
        fetch_url("s3://gone/x.png", policy)
