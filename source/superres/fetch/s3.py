"""Fetch ``s3://bucket/key`` from allow-listed buckets (boto3, imported only when used)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..errors import ImageTooLargeError, UrlFetchError, UrlNotAllowedError
from .policy import FetchPolicy


def fetch_s3(url: str, policy: FetchPolicy) -> bytes:
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
