"""Fetch over http(s): redirects checked hop by hop, the body read up to the byte cap."""

from __future__ import annotations

import ssl

import httpx

from ..errors import ImageTooLargeError, UrlFetchError, UrlNotAllowedError
from .addresses import is_aws_endpoint
from .policy import FetchPolicy
from .transport import Deadline, GuardedBackend, GuardedTransport

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Images are compressed already; asking for identity keeps a gzip bomb from
# inflating past the byte cap, and the cap counts what travels on the wire.
_HEADERS = {"Accept": "image/*", "Accept-Encoding": "identity", "User-Agent": "superres-fetch/1"}


def check_http_url(url: httpx.URL) -> httpx.URL:
    """Scheme, credentials and host of a url (the first one or a redirect target)."""
    if url.scheme not in ("http", "https"):
        shown = url.scheme or "none"
        raise UrlNotAllowedError(f"url scheme {shown!r} is not allowed; use http, https or s3")
    if url.userinfo:
        raise UrlNotAllowedError("credentials in the url are not allowed")
    if not url.host:
        raise UrlNotAllowedError("url has no host")
    if is_aws_endpoint(url.host):
        raise UrlNotAllowedError(
            f"url host {url.host!r} is an AWS service endpoint, which the service does not fetch over "
            "http(s); give an S3 object as s3://bucket/key, from a bucket the operator allow-listed "
            "(AllowedS3Buckets)"
        )
    return url


def fetch_http(target: httpx.URL, policy: FetchPolicy) -> bytes:
    deadline = Deadline(policy.total_timeout)
    backend = GuardedBackend(policy.allow_loopback, deadline)
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
            transport=GuardedTransport(backend),
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
                check_http_url(target)
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


def _timeout_message(exc: httpx.TimeoutException, deadline: Deadline, policy: FetchPolicy) -> str:
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
