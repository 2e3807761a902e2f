"""The httpx transport that connects only to checked addresses, within one deadline."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpcore
import httpx

from ..errors import UrlNotAllowedError
from .addresses import literal_ip, refusal, resolve

_T = TypeVar("_T")


class Deadline:
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

    def __init__(self, inner: httpcore.NetworkStream, deadline: Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def _call(self, exc_type: type[Exception], timeout: float | None, fn: Callable[[float], _T]) -> _T:
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


class GuardedBackend(httpcore.NetworkBackend):
    """Resolves, checks every address, then connects to a checked address.

    This is the only place the host name becomes an address, so what was
    checked is what gets connected to: no DNS-rebinding window.
    """

    def __init__(self, allow_loopback: bool, deadline: Deadline) -> None:
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
            addresses = resolve(host, port, budget)
        except httpcore.ConnectTimeout:
            self._deadline.expired |= by_deadline
            raise
        # Refuse when ANY answer is non-public, before connecting to any:
        # a name answering both public and private addresses is an attack.
        for ip in addresses:
            reason = refusal(ip, self._allow_loopback)
            if reason is not None:
                raise UrlNotAllowedError(
                    f"host {host!r} resolves to a {reason} address; only public addresses may be fetched"
                    if literal_ip(host) is None
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


# httpcore exceptions -> httpx's of the same name, most specific first (what httpx's own
# HTTPTransport does, which cannot be given a network backend in 0.28).
_EXCEPTIONS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = tuple(
    (getattr(httpcore, name), getattr(httpx, name))
    for name in (
        "ConnectTimeout",
        "ReadTimeout",
        "WriteTimeout",
        "PoolTimeout",
        "TimeoutException",
        "ConnectError",
        "ReadError",
        "WriteError",
        "NetworkError",
        "RemoteProtocolError",
        "LocalProtocolError",
        "ProtocolError",
        "UnsupportedProtocol",
    )
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


class GuardedTransport(httpx.BaseTransport):
    """httpx transport over an httpcore pool that connects through ``GuardedBackend``.

    httpx 0.28's ``HTTPTransport`` takes no network backend, so this is its
    proxy-less ``handle_request``, streaming the body through.
    """

    def __init__(self, backend: GuardedBackend) -> None:
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
