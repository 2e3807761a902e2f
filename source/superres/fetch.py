"""Fetch the image a request names by ``url``, without becoming an SSRF proxy.

Threat model: whoever calls ``POST /resolution`` chooses the url, and the
server fetches it from inside our network. Unchecked, that reaches what only
the server can reach: the cloud metadata service (169.254.169.254, with its
instance credentials), loopback admin ports, VPC-internal hosts. So:

* only ``http``, ``https`` and allow-listed ``s3://bucket/key``; no
  credentials in the url, no other scheme;
* the host is resolved once, at connect time, inside the HTTP client's
  network backend; every address it resolves to must be globally routable,
  and the socket then connects to the very address that was checked. A
  separate "resolve, check, then let the client resolve again" would leave
  a DNS-rebinding window (the second answer can be 127.0.0.1);
* every redirect hop goes through the same checks (a public host may
  redirect to the metadata service);
* environment proxies are ignored: a proxy would do the resolving and defeat
  the check;
* size and time are bounded: Content-Length over the cap is refused before
  any body byte is read, a streamed body stops at the cap, and a wall-clock
  deadline covers the whole fetch, redirects included, so a server trickling
  one byte at a time cannot hold a worker.

Whether the bytes are an image is not checked here: the caller probes them
(``codec.probe``).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from .errors import ImageTooLargeError, UrlFetchError, UrlNotAllowedError

__all__ = ["FetchPolicy", "fetch_url"]

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_MAX_URL_LENGTH = 8192
# Images are compressed already; asking for identity keeps a gzip bomb from
# inflating past the byte cap, and the cap counts what travels on the wire.
_HEADERS = {"Accept": "image/*", "Accept-Encoding": "identity", "User-Agent": "superres-fetch/1"}


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for one fetch; ``allow_loopback`` exists for tests only."""

    max_bytes: int
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    #: Wall-clock cap on the whole fetch, name resolution and redirects included.
    total_timeout: float = 20.0
    max_redirects: int = 3
    #: Lets 127.0.0.0/8 and ::1 through (tests serve from 127.0.0.1). Every
    #: other non-public range stays refused even then.
    allow_loopback: bool = False
    allowed_s3_buckets: frozenset[str] = frozenset()
    #: Builds the S3 client; default ``boto3.client("s3")`` with the timeouts above.
    s3_client_factory: Callable[[], Any] | None = None


def fetch_url(url: str, policy: FetchPolicy) -> bytes:
    """The bytes at ``url`` (http, https or s3), within ``policy``.

    Raises ``UrlNotAllowedError`` (400) for urls the service refuses,
    ``ImageTooLargeError`` (413) past ``policy.max_bytes`` and
    ``UrlFetchError`` (502) when an allowed fetch fails.
    """
    if not isinstance(url, str) or not url:
        raise UrlNotAllowedError("url must be a non-empty string")
    if len(url) > _MAX_URL_LENGTH:
        raise UrlNotAllowedError(f"url is longer than {_MAX_URL_LENGTH} characters")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise UrlNotAllowedError("url contains whitespace or control characters")
    if url[:5].lower() == "s3://":
        return _fetch_s3(url, policy)
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise UrlNotAllowedError("url is not a valid url") from None
    return _fetch_http(_check_http_url(target), policy)


# ---------------------------------------------------------------- addresses

_V4_SPECIAL = [
    (ipaddress.IPv4Network(net), label)
    for net, label in (
        # Explicit, because ``is_global`` varies across Python patch releases
        # (3.11.7 calls 192.0.0.8 and 224.0.0.1 global).
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared (CGNAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved"),
        ("192.0.2.0/24", "reserved"),
        ("192.88.99.0/24", "reserved"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "reserved"),
        ("198.51.100.0/24", "reserved"),
        ("203.0.113.0/24", "reserved"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # includes 255.255.255.255
    )
]
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _refusal(ip: _IPAddress, allow_loopback: bool = False) -> str | None:
    """Why ``ip`` must not be connected to, or None when it is public."""
    if isinstance(ip, ipaddress.IPv6Address):
        # ::ffff:a.b.c.d reaches a.b.c.d: judge it as that address.
        if ip.ipv4_mapped is not None:
            return _refusal(ip.ipv4_mapped, allow_loopback)
        # NAT64 (64:ff9b::a.b.c.d) and 6to4 (2002:AABB:CCDD::) carry a v4
        # address a gateway forwards to: judge that one, never loopback-exempt.
        if ip in _NAT64:
            reason = _refusal(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
            return None if reason is None else f"{reason} (embedded in IPv6)"
        if ip.sixtofour is not None:
            reason = _refusal(ip.sixtofour)
            if reason is not None:
                return f"{reason} (embedded in IPv6)"
    if ip.is_loopback:
        return None if allow_loopback else "loopback"
    if isinstance(ip, ipaddress.IPv4Address):
        for network, label in _V4_SPECIAL:
            if ip in network:
                return label
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if ip.is_reserved or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local):
        return "reserved"
    if not ip.is_global:  # Teredo, documentation, benchmarking and the rest
        return "not globally routable"
    return None


def _resolve(host: str, port: int, timeout: float) -> list[_IPAddress]:
    """All addresses of ``host``, within ``timeout``.

    getaddrinfo has no timeout of its own; it runs on a daemon thread so a
    slow resolver cannot outlast the fetch deadline.
    """
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except Exception as exc:  # gaierror, UnicodeError (overlong labels) ...
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="superres-resolve", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise httpcore.ConnectTimeout(f"resolving {host} timed out")
    if "error" in outcome:
        raise UrlFetchError(f"could not resolve host {host!r}")
    addresses: list[_IPAddress] = []
    for _family, _type, _proto, _canonname, sockaddr in outcome["infos"]:
        try:
            ip = ipaddress.ip_address(sockaddr[0])
        except ValueError:
            # Not an address we can judge: refuse rather than guess.
            raise UrlNotAllowedError(f"host {host!r} resolves to an unrecognised address") from None
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise UrlFetchError(f"could not resolve host {host!r}")
    return addresses


# ------------------------------------------------------------ http transport


class _Deadline:
    """The wall-clock end of one fetch, shared by every connection of it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False

    def clamp(self, timeout: float | None, exc_type: type[Exception]) -> tuple[float, bool]:
        """``timeout`` cut to the time left, and whether the deadline is the tighter bound."""
        left = self.end - time.monotonic()
        if left <= 0:
            self.expired = True
            raise exc_type("the total time limit was reached")
        if timeout is None or left < timeout:
            return left, True
        return timeout, False


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every wait ends by the fetch deadline.

    httpcore applies the read timeout per ``read``; a server sending a byte
    just before each timeout would never trip it. Clamping each wait to the
    time left makes the total bound hold.
    """

    def __init__(self, inner: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def _call(self, exc_type: type[Exception], timeout: float | None, fn: Callable[[float], Any]) -> Any:
        timeout, by_deadline = self._deadline.clamp(timeout, exc_type)
        try:
            return fn(timeout)
        except httpcore.TimeoutException:
            if by_deadline:
                self._deadline.expired = True
            raise

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._call(httpcore.ReadTimeout, timeout, lambda t: self._inner.read(max_bytes, t))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._call(httpcore.WriteTimeout, timeout, lambda t: self._inner.write(buffer, t))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        # server_hostname is the url's host (httpcore passes the origin's),
        # so SNI and certificate checks use the name even though the socket
        # was opened to a bare IP.
        stream = self._call(
            httpcore.ConnectTimeout,
            timeout,
            lambda t: self._inner.start_tls(ssl_context, server_hostname, t),
        )
        return _DeadlineStream(stream, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.NetworkBackend):
    """Resolves, checks every address, then connects to a checked address.

    This is the only place the host name becomes an address, so what was
    checked is what gets connected to: no DNS-rebinding window.
    """

    def __init__(self, allow_loopback: bool, deadline: _Deadline) -> None:
        self._allow_loopback = allow_loopback
        self._deadline = deadline
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        budget, by_deadline = self._deadline.clamp(timeout, httpcore.ConnectTimeout)
        try:
            addresses = _resolve(host, port, budget)
        except httpcore.ConnectTimeout:
            self._deadline.expired |= by_deadline
            raise
        # Refuse when ANY answer is non-public, before connecting to any:
        # a name answering both public and private addresses is an attack.
        for ip in addresses:
            reason = _refusal(ip, self._allow_loopback)
            if reason is not None:
                raise UrlNotAllowedError(
                    f"host {host!r} resolves to a {reason} address; only public addresses may be fetched"
                    if _literal_ip(host) is None
                    else f"host {host!r} is a {reason} address; only public addresses may be fetched"
                )
        failure: Exception | None = None
        for ip in addresses:
            budget, by_deadline = self._deadline.clamp(timeout, httpcore.ConnectTimeout)
            try:
                stream = self._sockets.connect_tcp(
                    str(ip), port, timeout=budget, local_address=local_address, socket_options=socket_options
                )
            except httpcore.ConnectTimeout as exc:
                self._deadline.expired |= by_deadline
                failure = exc
            except httpcore.ConnectError as exc:
                failure = exc
            else:
                return _DeadlineStream(stream, self._deadline)
        assert failure is not None
        raise failure

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
        raise UrlNotAllowedError("unix sockets are not allowed")  # never configured; belt and braces

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def _literal_ip(host: str) -> _IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


# httpcore exceptions -> httpx, most specific first (what httpx's own
# HTTPTransport does, which cannot be given a network backend in 0.28).
_EXCEPTIONS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
)


class _mapped_errors:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            return
        for core_type, httpx_type in _EXCEPTIONS:
            if isinstance(exc, core_type):
                raise httpx_type(str(exc)) from exc
        # anything else (our own errors) passes through unchanged


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, core_stream: Any) -> None:
        self._core_stream = core_stream

    def __iter__(self) -> Iterator[bytes]:
        with _mapped_errors():
            yield from self._core_stream

    def close(self) -> None:
        with _mapped_errors():
            self._core_stream.close()


class _GuardedTransport(httpx.BaseTransport):
    """httpx transport over an httpcore pool that connects through ``_GuardedBackend``.

    httpx 0.28's ``HTTPTransport`` takes no network backend, so this is its
    proxy-less ``handle_request``, streaming the body through.
    """

    def __init__(self, backend: _GuardedBackend) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=4,
            http1=True,
            http2=False,
            retries=0,
            network_backend=backend,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _mapped_errors():
            core_response = self._pool.handle_request(core_request)
        return httpx.Response(
            status_code=core_response.status,
            headers=core_response.headers,
            stream=_ResponseStream(core_response.stream),
            extensions=core_response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


# -------------------------------------------------------------------- http


def _check_http_url(url: httpx.URL) -> httpx.URL:
    """Scheme, credentials and host of a url (the first one or a redirect target)."""
    if url.scheme not in ("http", "https"):
        shown = url.scheme or "none"
        raise UrlNotAllowedError(f"url scheme {shown!r} is not allowed; use http, https or s3")
    if url.userinfo:
        raise UrlNotAllowedError("credentials in the url are not allowed")
    if not url.host:
        raise UrlNotAllowedError("url has no host")
    return url


def _fetch_http(target: httpx.URL, policy: FetchPolicy) -> bytes:
    deadline = _Deadline(policy.total_timeout)
    backend = _GuardedBackend(policy.allow_loopback, deadline)
    timeout = httpx.Timeout(
        connect=policy.connect_timeout,
        read=policy.read_timeout,
        write=policy.read_timeout,
        pool=policy.connect_timeout,
    )
    try:
        # trust_env=False: no HTTP(S)_PROXY/ALL_PROXY mounts (a proxy would
        # resolve the host itself, past our check), no .netrc credentials.
        with httpx.Client(
            transport=_GuardedTransport(backend),
            trust_env=False,
            follow_redirects=False,
            timeout=timeout,
            headers=_HEADERS,
        ) as client:
            return _follow(client, target, policy)
    except httpx.TimeoutException as exc:
        raise UrlFetchError(_timeout_message(exc, deadline, policy)) from exc
    except httpx.HTTPError as exc:
        raise UrlFetchError(_failure_message(exc)) from exc


def _follow(client: httpx.Client, target: httpx.URL, policy: FetchPolicy) -> bytes:
    # Manual redirects: each hop's url is checked here, its addresses in the
    # backend, exactly as the first one.
    for _hop in range(policy.max_redirects + 1):
        with client.stream("GET", target) as response:
            status = response.status_code
            if status in _REDIRECT_STATUSES:
                location = response.headers.get("location")
                if not location:
                    raise UrlFetchError(f"the url answered HTTP {status} without a Location header")
                try:
                    target = response.url.join(location)
                except (httpx.InvalidURL, TypeError, ValueError):
                    raise UrlFetchError("the url redirected to an invalid location") from None
                _check_http_url(target)
                continue
            if not 200 <= status < 300:
                raise UrlFetchError(f"the url answered HTTP {status}")
            return _read_capped(response, policy.max_bytes)
    raise UrlFetchError(f"the url redirected more than {policy.max_redirects} times")


def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise UrlFetchError(f"the url answered with Content-Encoding {encoding!r}; only identity is accepted")
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        # Refused before reading a single body byte.
        raise ImageTooLargeError(f"the url's content is {int(declared):,} bytes; the limit is {max_bytes:,} bytes")
    chunks: list[bytes] = []
    received = 0
    for chunk in response.iter_raw():
        received += len(chunk)
        if received > max_bytes:
            raise ImageTooLargeError(f"the url's content is larger than the limit of {max_bytes:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _timeout_message(exc: httpx.TimeoutException, deadline: _Deadline, policy: FetchPolicy) -> str:
    if deadline.expired:
        return f"fetching the url took longer than the total limit of {policy.total_timeout:g} s"
    if isinstance(exc, httpx.ConnectTimeout):
        return f"connecting to the url timed out after {policy.connect_timeout:g} s"
    if isinstance(exc, httpx.ReadTimeout):
        return f"the url sent no data for {policy.read_timeout:g} s"
    return f"the url timed out after {policy.read_timeout:g} s"


def _failure_message(exc: httpx.HTTPError) -> str:
    causes: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and len(causes) < 10:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    if any(isinstance(c, ssl.SSLCertVerificationError) for c in causes):
        return "the url's TLS certificate could not be verified"
    if any(isinstance(c, ssl.SSLError) for c in causes):
        return "the TLS handshake with the url failed"
    if isinstance(exc, httpx.ConnectError):
        if any(isinstance(c, ConnectionRefusedError) for c in causes):
            return "could not connect to the url: connection refused"
        return "could not connect to the url"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the url sent an invalid or incomplete HTTP response"
    if isinstance(exc, (httpx.ReadError, httpx.WriteError)):
        return "the connection to the url broke"
    return "fetching the url failed"


# ---------------------------------------------------------------------- s3


def _fetch_s3(url: str, policy: FetchPolicy) -> bytes:
    # s3://bucket/key, the key taken literally (as the AWS CLI does, no
    # percent-decoding): everything after the first slash.
    bucket, _, key = url[5:].partition("/")
    if not bucket or not key:
        raise UrlNotAllowedError("an s3 url must look like s3://bucket/key")
    if bucket not in policy.allowed_s3_buckets:
        raise UrlNotAllowedError(f"bucket {bucket} is not allow-listed")
    if any(part in (".", "..") for part in key.split("/")):
        # Dot segments could be normalised into another path (or, path-style,
        # another bucket) somewhere between here and S3.
        raise UrlNotAllowedError("an s3 key must not contain '.' or '..' segments")

    from botocore.exceptions import BotoCoreError, ClientError  # lazy: boto3 only for s3

    deadline = time.monotonic() + policy.total_timeout
    where = f"s3://{bucket}/{key}"
    try:
        client = (policy.s3_client_factory or _default_s3_client_factory(policy))()
        answer = client.get_object(Bucket=bucket, Key=key)
        body = answer["Body"]
        try:
            length = answer.get("ContentLength")
            if length is not None and length > policy.max_bytes:
                raise ImageTooLargeError(f"{where} is {length:,} bytes; the limit is {policy.max_bytes:,} bytes")
            chunks: list[bytes] = []
            received = 0
            for chunk in body.iter_chunks(64 * 1024):
                received += len(chunk)
                if received > policy.max_bytes:
                    raise ImageTooLargeError(f"{where} is larger than the limit of {policy.max_bytes:,} bytes")
                if time.monotonic() > deadline:
                    raise UrlFetchError(
                        f"fetching {where} took longer than the total limit of {policy.total_timeout:g} s"
                    )
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            body.close()
    except ClientError as exc:
        raise UrlFetchError(_s3_message(exc, bucket, where)) from exc
    except BotoCoreError as exc:
        raise UrlFetchError(_s3_transport_message(exc, where, policy)) from exc


def _default_s3_client_factory(policy: FetchPolicy) -> Callable[[], Any]:
    def build() -> Any:
        import boto3
        from botocore.config import Config

        config = Config(
            connect_timeout=policy.connect_timeout,
            read_timeout=policy.read_timeout,
            retries={"max_attempts": 2},
        )
        return boto3.client("s3", config=config)

    return build


def _s3_message(exc: Any, bucket: str, where: str) -> str:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    if code in ("NoSuchKey", "NotFound", "404"):
        return f"{where} does not exist"
    if code == "NoSuchBucket":
        return f"bucket {bucket} does not exist"
    if code in ("AccessDenied", "403", "Forbidden"):
        return f"access to {where} was denied"
    return f"S3 refused to return {where} ({code or 'unknown error'})"


def _s3_transport_message(exc: Exception, where: str, policy: FetchPolicy) -> str:
    from botocore.exceptions import (
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    if isinstance(exc, ConnectTimeoutError):
        return f"connecting to S3 timed out after {policy.connect_timeout:g} s"
    if isinstance(exc, ReadTimeoutError):
        return f"S3 sent no data for {policy.read_timeout:g} s"
    if isinstance(exc, EndpointConnectionError):
        return "could not connect to S3"
    if isinstance(exc, NoCredentialsError):
        return "the service has no AWS credentials to read s3 urls"
    return f"reading {where} failed"
