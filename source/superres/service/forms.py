"""POST /resolution's request forms, each read into the same fields for ``request.parse_fields``.

- JSON (``application/json``; also no Content-Type, as before there were other forms);
- the image itself as the body (``image/*``, ``application/octet-stream``);
- ``multipart/form-data``: the image as the file part ``image`` (or url/img as text
  parts), every option as a text part.

The query string adds options to any form (the raw body's only place for them); an option
given twice, in both places or twice in one, is a 400. Any other Content-Type is a 415.
The body has been read within ``max_request_bytes`` before any of this parses it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from ..errors import BadRequestError, UnsupportedMediaTypeError
from .contract import parse_json_object, schema, text_fields
from .request import ParsedRequest, parse_fields
from .settings import ServiceSettings

#: A query string longer than this is refused (400); API Gateway's own cap on the request
#: line is about 10 kB, and options need a few dozen bytes.
MAX_QUERY_BYTES = 2048
#: The form part that holds the image file.
IMAGE_PART = "image"
RAW_TYPES = ("image/", "application/octet-stream")
FORM_TYPE = "multipart/form-data"


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json(kind: str) -> bool:
    return kind in ("", "application/json") or kind.endswith("+json")


async def read_request(body: bytes, headers: Headers, query: bytes, settings: ServiceSettings) -> ParsedRequest:
    """The request of whichever form ``headers`` name, with ``query`` (the raw query string)."""
    options = query_fields(query)
    kind = media_type(headers.get("content-type"))
    if is_json(kind):
        return parse_fields(merged(parse_json_object(body), options), None, settings)
    if kind.startswith(RAW_TYPES):
        if not body:
            raise BadRequestError("the body is empty: send the image file as the body")
        return parse_fields(options, body, settings)
    if kind == FORM_TYPE:
        fields, image = await form_fields(body, headers, settings)
        return parse_fields(merged(fields, options), image, settings)
    raise UnsupportedMediaTypeError(
        f"Content-Type {kind[:100]!r} is not a form of this API: send application/json, "
        "the image itself (image/*), or multipart/form-data with an image part"
    )


def query_fields(query: bytes) -> dict[str, Any]:
    if len(query) > MAX_QUERY_BYTES:
        raise BadRequestError(f"the query string is {len(query):,} bytes; the limit is {MAX_QUERY_BYTES:,} bytes")
    try:
        pairs = parse_qsl(query.decode("ascii"), keep_blank_values=True, strict_parsing=False, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise BadRequestError("the query string is not valid (percent-encoded UTF-8 expected)") from None
    return text_fields(pairs, "query string")


def merged(body: dict[str, Any], query: dict[str, Any]) -> dict[str, Any]:
    both = sorted(set(body) & set(query))
    if both:
        raise BadRequestError(f"{', '.join(both)[:200]}: given both in the query string and in the body")
    return {**body, **query}


async def form_fields(body: bytes, headers: Headers, settings: ServiceSettings) -> tuple[dict[str, Any], bytes | None]:
    """A multipart form's text parts as fields, and its image part's bytes (None without one)."""

    async def whole() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(
        headers,
        whole(),
        max_files=1,
        # Every field of the contract once; more parts are no request of this API.
        max_fields=len(schema("ResolutionRequest")["properties"]),
        max_part_size=settings.max_request_bytes,
    )
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise BadRequestError(f"the multipart form is not valid: {error.message}") from None
    try:
        texts, image = [], None
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if name != IMAGE_PART:
                    raise BadRequestError(f"only the {IMAGE_PART!r} part may be a file, not {name[:64]!r}")
                image = await value.read()
            elif name == IMAGE_PART:
                raise BadRequestError(f"the {IMAGE_PART!r} part must be a file (a filename in its Content-Disposition)")
            else:
                texts.append((name, value))
        return text_fields(texts, "form"), image
    finally:
        await form.close()
