"""From a request to a job every backend can run, with every limit checked up front.

Every form of request (JSON, a raw image body, a multipart form; ``service.forms`` reads
the last two) arrives here as one dict of fields, validated against the contract, and
becomes the same ``ParsedRequest``, then the same ``Job``. Nothing here imports torch or
numpy: the GPU variant's invoke-endpoint Lambda runs exactly this validation before it
spends any GPU time.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequestError, ImageTooLargeError
from ..fetch import FetchPolicy, fetch_url
from ..manifest import MODELS, ModelSpec, get_spec
from ..probe import ImageInfo, probe
from ..sizes import output_size
from ..store import ModelStore
from ..tiling import TileConfig, plan
from .contract import parse_json_object, validate_request
from .settings import ServiceSettings

_DATA_URL = re.compile(r"^data:image/[a-z0-9.+-]+;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")
FACE_CROP_PIXELS = 512 * 512
#: bmp in answers png: the same pixels at a fraction of the bytes; heic (which nothing here
#: writes) answers jpeg, what its photos are everywhere else.
_DEFAULT_OUTPUT = {"jpeg": "jpeg", "png": "png", "webp": "webp", "avif": "avif", "bmp": "png", "heic": "jpeg"}
DEFAULT_SCALE = 2.0
#: Seconds per output pixel that the time budget adds to the network's: a Lanczos resize
#: (Pillow, float per channel, 7 ns per pixel and channel for three channels), and encoding
#: each format (a 1024x1024 photo, measured 2026-11-30 on the 2-core development machine).
RESIZE_SECONDS_PER_PIXEL = 21e-9
ENCODE_SECONDS_PER_PIXEL = {"jpeg": 0.02e-6, "png": 0.22e-6, "webp": 0.15e-6, "avif": 0.43e-6}


@dataclass(frozen=True)
class Job:
    """A validated request with its input bytes in hand."""

    image: bytes
    info: ImageInfo
    #: Output size / input size (from ``scale``, or from the width or height asked for).
    scale: float
    #: The model asked for; None: the deployment's own (``model_for``), which a forwarding host
    #: leaves to the host that computes.
    model: str | None
    face: bool
    format: str
    quality: int
    strip_metadata: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """The output's (width, height)."""
        return output_size(self.info.width, self.info.height, self.scale)

    @property
    def output_pixels(self) -> int:
        width, height = self.size
        return width * height


#: The caller's ``context`` travels in answers, job records and SNS messages: keep it small.
MAX_CONTEXT_BYTES = 4096


@dataclass(frozen=True)
class ParsedRequest:
    url: str | None
    img: str | None
    #: The image as it was sent (a raw body or a form's file part), else None.
    image: bytes | None
    #: At most one of scale, width and height; none of them means scale 2.
    scale: float | None
    width: int | None
    height: int | None
    #: The model asked for (checked as installed); None: the deployment's own for the scale.
    model: str | None
    face: bool
    format: str | None
    quality: int
    strip_metadata: bool = False
    output: str = "inline"
    context: dict[str, Any] | None = None


def parse_request(body: bytes, settings: ServiceSettings) -> ParsedRequest:
    """A JSON request body (POST /resolution's JSON form, and POST /jobs)."""
    check_request_size(len(body), settings)
    return parse_fields(parse_json_object(body), None, settings)


def check_request_size(size: int, settings: ServiceSettings) -> None:
    if size > settings.max_request_bytes:
        raise ImageTooLargeError(f"the request is {size:,} bytes; the limit is {settings.max_request_bytes:,} bytes")


def parse_fields(fields: dict[str, Any], image: bytes | None, settings: ServiceSettings) -> ParsedRequest:
    """The request of any form: its fields (typed as the contract's), and the image when it came
    as it is rather than as url or img."""
    payload = validate_request(fields, image_sent=image is not None)
    sizes = [name for name in ("scale", "width", "height") if name in payload]
    if len(sizes) > 1:
        raise BadRequestError(f"give at most one of scale, width and height, not {' and '.join(sizes)}")
    parsed = ParsedRequest(
        url=payload.get("url"),
        img=None if "url" in payload else payload.get("img"),  # url wins, as the guide says
        image=image,
        scale=float(payload["scale"]) if "scale" in payload else None,
        width=payload.get("width"),
        height=payload.get("height"),
        model=payload.get("model"),
        face=payload.get("face", False),
        format=payload.get("format"),
        quality=payload.get("quality", 95),
        strip_metadata=payload.get("strip_metadata", False),
        output=payload.get("output", "inline"),
        context=payload.get("context"),
    )
    if parsed.scale is not None:
        check_scale(parsed.scale, settings)
    if parsed.model is not None:
        check_installed(parsed.model, settings)
    if parsed.face and not settings.face_enabled:
        raise BadRequestError("face enhancement is not enabled on this deployment")
    if parsed.output == "s3" and not settings.output_bucket:
        raise BadRequestError('output "s3" is not available: this deployment has no output bucket')
    if parsed.context is not None and len(json.dumps(parsed.context)) > MAX_CONTEXT_BYTES:
        raise BadRequestError(f"context is over {MAX_CONTEXT_BYTES:,} bytes as JSON")
    return parsed


def check_scale(scale: float, settings: ServiceSettings, asked: str = "scale") -> None:
    # NaN (which JSON parsers let through) fails both comparisons.
    if not 1 <= scale <= settings.max_scale:
        raise BadRequestError(f"{asked}: the scale must be between 1 and {settings.max_scale:g} on this deployment")


def installed_models(settings: ServiceSettings) -> dict[str, ModelSpec]:
    """The models a request may name, in the manifest's order: ``settings.models``, else the
    deployment's own (model_x4, model_x2) and every upscaler found in its model store."""
    if settings.models is not None:
        chosen = settings.models
    else:
        store = ModelStore(settings.model_dir)
        found = {
            name
            for name, spec in MODELS.items()
            if spec.scale > 1
            and spec.runtime == "spandrel"
            and (store.find(spec) is not None or store.conversion(spec).is_dir())
        }
        chosen = frozenset({settings.model_x4, *filter(None, [settings.model_x2]), *found})
    return {name: spec for name, spec in MODELS.items() if name in chosen}


def check_installed(model: str, settings: ServiceSettings) -> None:
    installed = installed_models(settings)
    if model not in installed:
        shown = model if len(model) <= 64 else model[:64] + "..."
        raise BadRequestError(
            f"model {shown!r} is not installed on this deployment; installed: {', '.join(installed) or 'none'}"
        )


def model_for(job: Job, settings: ServiceSettings) -> str:
    """The model that computes ``job``: the one it asked for, else the deployment's own for its
    scale (the x2 model up to scale 2, where there is one)."""
    if job.model:
        return job.model
    return settings.model_x2 if job.scale <= 2 and settings.model_x2 else settings.model_x4


def fetch_policy(settings: ServiceSettings) -> FetchPolicy:
    return FetchPolicy(
        max_bytes=settings.max_request_bytes,
        read_timeout=settings.fetch_timeout_seconds,
        total_timeout=2 * settings.fetch_timeout_seconds,
        allow_loopback=settings.allow_loopback_urls,
        allowed_s3_buckets=frozenset(settings.allowed_s3_buckets),
    )


def decode_base64(text: str) -> bytes:
    # Line-wrapped base64 (as the base64 tool writes it) is still base64.
    payload = _WHITESPACE.sub("", _DATA_URL.sub("", text, count=1))
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError("img is not valid base64") from None


def build_job(request: ParsedRequest, settings: ServiceSettings) -> Job:
    """Fetch or decode the input and check every size limit before any pixel is decoded."""
    if request.image is not None:
        image = request.image
    elif request.url:
        image = fetch_url(request.url, fetch_policy(settings))
    else:
        image = decode_base64(request.img or "")
    limit = settings.max_face_input_pixels if request.face else settings.max_input_pixels
    info = probe(image, limit)
    scale = effective_scale(request, info, settings)
    job = Job(
        image=image,
        info=info,
        scale=scale,
        model=request.model,
        face=request.face,
        format=request.format or _DEFAULT_OUTPUT[info.format],
        quality=request.quality,
        strip_metadata=request.strip_metadata,
    )
    if job.output_pixels > settings.max_output_pixels:
        width, height = job.size
        raise ImageTooLargeError(
            f"the result would be {width}x{height} = {job.output_pixels:,} pixels; "
            f"the limit is {settings.max_output_pixels:,} pixels"
        )
    check_time_budget(job, settings)
    return job


def effective_scale(request: ParsedRequest, info: ImageInfo, settings: ServiceSettings) -> float:
    """The scale asked for, or the one that gives the width or height asked for (checked too)."""
    if request.width is not None:
        scale, asked = request.width / info.width, f"width {request.width} of a {info.width} px wide image"
    elif request.height is not None:
        scale, asked = request.height / info.height, f"height {request.height} of a {info.height} px high image"
    else:
        return request.scale or DEFAULT_SCALE
    check_scale(scale, settings, asked)
    return scale


def predicted_seconds(job: Job, settings: ServiceSettings) -> float:
    """Network FLOPs of the job (tile windows included) over the deployment's throughput, and
    the resize and encoding after it."""
    spec = get_spec(model_for(job, settings))
    tiles = plan(job.info.height, job.info.width, TileConfig(tile=settings.tile, pad=settings.pad))
    computed = sum((t.rows.window_end - t.rows.window_start) * (t.cols.window_end - t.cols.window_start) for t in tiles)
    mflop = computed * spec.mflop_per_pixel
    if job.face:
        # At least one face (a 512x512 GFPGAN pass); more are stopped by the deadline.
        mflop += FACE_CROP_PIXELS * get_spec(settings.face_model).mflop_per_pixel
    native = job.info.pixels * spec.scale * spec.scale
    resize = 0.0 if job.scale == spec.scale else max(native, job.output_pixels) * RESIZE_SECONDS_PER_PIXEL
    encode = job.output_pixels * ENCODE_SECONDS_PER_PIXEL.get(job.format, 0.0)
    return mflop / settings.throughput_mflops + resize + encode


def check_time_budget(job: Job, settings: ServiceSettings) -> None:
    budget = settings.time_budget_seconds
    if not budget:
        return
    seconds = predicted_seconds(job, settings)
    if seconds > budget:
        largest = math.isqrt(int(job.info.pixels * budget / seconds))
        raise ImageTooLargeError(
            f"a {job.info.width}x{job.info.height} image would take about {seconds:.0f} s here; "
            f"the time budget is {budget:.0f} s (about {largest}x{largest} pixels at most)"
        )
