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
* AWS service endpoints (``*.amazonaws.com``, ``*.api.aws``, ``*.amazonaws.com.cn``
  and the other partitions' names) are refused by name over http(s): their
  addresses are public, but a request from inside the stack carries its VPC
  and VPC endpoint, which bucket policies may trust. S3 objects come as
  ``s3://`` from allow-listed buckets only;
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

Modules: ``policy`` (the limits), ``addresses`` (what may be connected to),
``transport`` (the guarded connection and the deadline), ``http`` and ``s3``.
"""

from __future__ import annotations

import httpx

from ..errors import UrlNotAllowedError
from .http import check_http_url, fetch_http
from .policy import FetchPolicy
from .s3 import fetch_s3

__all__ = ["FetchPolicy", "fetch_url"]

_MAX_URL_LENGTH = 8192


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
        return fetch_s3(url, policy)
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise UrlNotAllowedError("url is not a valid url") from None
    return fetch_http(check_http_url(target), policy)
