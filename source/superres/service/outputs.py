"""Where a result goes: inline (base64 in the answer, within the payload limit), or into the
output bucket and answered with a presigned GET URL; and, for a local server without a
bucket, kept in this process for ``GET /jobs/{id}/result``.

Backends answer an ``Upscaled`` (the image as bytes); ``deliver`` turns it into the contract's
answer. Nothing here imports torch.
"""

from __future__ import annotations

import base64
import datetime
import math
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import ImageTooLargeError, SuperResError
from .backends import Upscaled
from .settings import ServiceSettings

#: JSON around the base64 result: keys, metadata, quotes.
_ENVELOPE_BYTES = 512
CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "avif": "image/avif"}
_EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "avif": "avif"}
#: Headers of a raw image answer besides the answer's fields.
_HEADER_BYTES = 1024


class OutputStoreError(SuperResError):
    """The output bucket refused or could not be reached."""

    status = 502
    code = "output_failed"


def base64_size(size: int) -> int:
    return 4 * math.ceil(size / 3)


def check_response_size(encoded_bytes: int, settings: ServiceSettings, *, raw: bool = False) -> None:
    """An answer of an ``encoded_bytes`` image: JSON with its base64, or ``raw`` the image
    itself (base64 all the same inside a Lambda's answer to API Gateway)."""
    if raw:
        sent = base64_size(encoded_bytes) if settings.binary_as_base64 else encoded_bytes
        answer, form = sent + _HEADER_BYTES, "as an image answer"
    else:
        answer, form = base64_size(encoded_bytes) + _ENVELOPE_BYTES, "as a JSON answer"
    if answer > settings.max_response_bytes:
        hint = (
            'ask for "output": "s3" (a presigned URL, no size limit), or for ' if settings.output_bucket else "ask for "
        )
        raise ImageTooLargeError(
            f"the result is {encoded_bytes:,} bytes ({answer:,} {form}); the limit is "
            f"{settings.max_response_bytes:,} bytes: {hint}format webp, avif or jpeg, a lower quality, "
            "a smaller scale or a smaller image"
        )


def utc_iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def aws_client(service: str, **config: Any) -> Any:
    """A boto3 client with bounded timeouts and retries (endpoint from the usual
    AWS_ENDPOINT_URL* variables, so tests point it at moto)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        config=Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 3}, **config),
    )


@dataclass(frozen=True)
class StoredResult:
    #: What the client fetches: a presigned URL, or a path of this server.
    url: str
    #: Where the image is (s3://bucket/key, or that path): job records and notifications name it.
    location: str
    #: When ``url`` stops working, for URLs that expire.
    expires_at: str | None = None

    def fields(self) -> dict[str, str]:
        """The contract's fields about a stored result."""
        return {"result_url": self.url, **({"expires_at": self.expires_at} if self.expires_at else {})}


class ResultStore(Protocol):
    def store(self, name: str, data: bytes, fmt: str) -> StoredResult: ...


class S3Results:
    """Results in the output bucket (encryption, TLS-only access and expiry are the bucket's)."""

    def __init__(self, settings: ServiceSettings, client: Any | None = None) -> None:
        assert settings.output_bucket
        self.bucket = settings.output_bucket
        self.prefix = settings.output_prefix
        self.seconds = settings.output_url_seconds
        # SigV4 presigning: required for SSE-KMS objects and in the China regions.
        self.client = client or aws_client("s3", signature_version="s3v4")

    def key(self, name: str, fmt: str) -> str:
        return f"{self.prefix}{name}.{_EXTENSIONS[fmt]}"

    def store(self, name: str, data: bytes, fmt: str) -> StoredResult:
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.key(name, fmt)
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=CONTENT_TYPES[fmt])
            expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=self.seconds)
            url = self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.seconds
            )
        except (BotoCoreError, ClientError) as error:
            raise OutputStoreError(
                f"the result could not be stored in the output bucket ({type(error).__name__})"
            ) from None
        return StoredResult(url=url, location=f"s3://{self.bucket}/{key}", expires_at=utc_iso(expires))


class LocalResults:
    """Job results of a local server without an output bucket: the last ``capacity`` ones,
    in memory, served by ``GET /jobs/{id}/result`` of this server."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._lock = threading.Lock()

    def store(self, name: str, data: bytes, fmt: str) -> StoredResult:
        with self._lock:
            self._items[name] = (data, CONTENT_TYPES[fmt])
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        path = f"/jobs/{name}/result"
        return StoredResult(url=path, location=path)

    def get(self, name: str) -> tuple[bytes, str] | None:
        with self._lock:
            return self._items.get(name)


def image_answer(result: Upscaled, settings: ServiceSettings) -> tuple[bytes, str, dict[str, str]]:
    """A raw image answer (``Accept: image/*``): the image, its media type, and the answer's
    fields as headers."""
    check_response_size(len(result.image), settings, raw=True)
    fields = result.fields()
    headers = {f"x-result-{name}": str(fields[name]) for name in RESULT_HEADERS}
    return result.image, CONTENT_TYPES[result.format], headers


#: The answer's fields a raw image answer carries as X-Result-<name> headers.
RESULT_HEADERS = ("width", "height", "scale", "model", "faces", "seconds")


def deliver(
    result: Upscaled, output: str, settings: ServiceSettings, results: ResultStore | None, name: str | None = None
) -> tuple[dict[str, Any], str | None]:
    """The contract's answer for the backend's result, and where a stored result is (which
    only jobs record)."""
    if output == "inline":
        check_response_size(len(result.image), settings)
        return {"result": base64.b64encode(result.image).decode("ascii"), **result.fields()}, None
    assert results is not None  # parse_request refused "s3" without a bucket
    # A fresh uuid4 per result: keys never collide, however many requests arrive at once.
    stored = results.store(name or uuid.uuid4().hex, result.image, result.format)
    return {**stored.fields(), **result.fields()}, stored.location
