"""Which addresses a fetch may connect to, and the resolution that finds them."""

from __future__ import annotations

import ipaddress
import socket
import threading
from typing import Any
from urllib.parse import unquote

import httpcore

from ..errors import UrlFetchError, UrlNotAllowedError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

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


#: The DNS suffixes of AWS service endpoints in every partition (botocore's partitions.json,
#: dnsSuffix and dualStackDnsSuffix; a test keeps the two equal). Their addresses are public,
#: yet a request from inside the stack reaches them with its VPC, VPC endpoint and network
#: identity, which bucket and endpoint policies may trust: S3 in every spelling (virtual-hosted,
#: path-style, dualstack, FIPS, regional, website), STS, execute-api and the rest.
AWS_ENDPOINT_SUFFIXES = (
    "amazonaws.com",
    "api.aws",
    "amazonaws.com.cn",
    "api.amazonwebservices.com.cn",
    "amazonaws.eu",
    "api.amazonwebservices.eu",
    "c2s.ic.gov",
    "api.aws.ic.gov",
    "sc2s.sgov.gov",
    "api.aws.scloud",
    "cloud.adc-e.uk",
    "api.cloud-aws.adc-e.uk",
    "csp.hci.ic.gov",
    "api.aws.hci.ic.gov",
)


def is_aws_endpoint(host: str) -> bool:
    """Whether ``host`` is an AWS service endpoint name (any case, with or without the final dot)."""
    # Percent-escapes decoded first: "s3.amazonaws.com%2e" must not slip past as another name.
    name = unquote(host).rstrip(".").lower()
    return any(name == suffix or name.endswith("." + suffix) for suffix in AWS_ENDPOINT_SUFFIXES)


def refusal(ip: IPAddress, allow_loopback: bool = False) -> str | None:
    """Why ``ip`` must not be connected to, or None when it is public."""
    if isinstance(ip, ipaddress.IPv6Address):
        # ::ffff:a.b.c.d reaches a.b.c.d: judge it as that address.
        if ip.ipv4_mapped is not None:
            return refusal(ip.ipv4_mapped, allow_loopback)
        # NAT64 (64:ff9b::a.b.c.d) and 6to4 (2002:AABB:CCDD::) carry a v4
        # address a gateway forwards to: judge that one, never loopback-exempt.
        if ip in _NAT64:
            reason = refusal(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
            return None if reason is None else f"{reason} (embedded in IPv6)"
        if ip.sixtofour is not None:
            reason = refusal(ip.sixtofour)
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


def resolve(host: str, port: int, timeout: float) -> list[IPAddress]:
    """All addresses of ``host``, within ``timeout``.

    getaddrinfo has no timeout of its own; it runs on a daemon thread so a
    slow resolver cannot outlast the fetch deadline.
    """
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except Exception as exc:  # noqa: BLE001 -- gaierror, UnicodeError (overlong labels) or any other: a failure on this thread must reach the caller
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="superres-resolve", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise httpcore.ConnectTimeout(f"resolving {host} timed out")
    if "error" in outcome:
        raise UrlFetchError(f"could not resolve host {host!r}")
    addresses: list[IPAddress] = []
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


def literal_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None
