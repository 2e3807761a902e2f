"""The limits of one fetch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


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
