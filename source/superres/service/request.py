"""From a request body to a job every backend can run, with every limit checked up front.

Nothing here imports torch: the GPU variant's invoke-endpoint Lambda runs
exactly this validation before it spends any GPU time.
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
from ..manifest import get_spec
from ..probe import ImageInfo, probe
from ..tiling import TileConfig, plan
from .contract import parse_json_request
from .settings import ServiceSettings

_DATA_URL = re.compile(r"^data:image/[a-z0-9.+-]+;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")
FACE_CROP_PIXELS = 512 * 512
#: bmp in answers png: the same pixels at a fraction of the bytes.
_DEFAULT_OUTPUT = {"jpeg": "jpeg", "png": "png", "webp": "webp", "bmp": "png"}


@dataclass(frozen=True)
class Job:
    """A validated request with its input bytes in hand."""

    image: bytes
    info: ImageInfo
    scale: int
    face: bool
    format: str
    quality: int

    @property
    def output_pixels(self) -> int:
        return self.info.pixels * self.scale * self.scale


#: The caller's ``context`` travels in answers, job records and SNS messages: keep it small.
MAX_CONTEXT_BYTES = 4096


@dataclass(frozen=True)
class ParsedRequest:
    url: str | None
    img: str | None
    scale: int
    face: bool
    format: str | None
    quality: int
    output: str = "inline"
    context: dict[str, Any] | None = None


def parse_request(body: bytes, settings: ServiceSettings) -> ParsedRequest:
    if len(body) > settings.max_request_bytes:
        raise ImageTooLargeError(
            f"the request is {len(body):,} bytes; the limit is {settings.max_request_bytes:,} bytes"
        )
    payload = parse_json_request(body)
    parsed = ParsedRequest(
        url=payload.get("url"),
        img=None if "url" in payload else payload.get("img"),  # url wins, as the guide says
        scale=payload.get("scale", 2),
        face=payload.get("face", False),
        format=payload.get("format"),
        quality=payload.get("quality", 95),
        output=payload.get("output", "inline"),
        context=payload.get("context"),
    )
    if parsed.face and not settings.face_enabled:
        raise BadRequestError("face enhancement is not enabled on this deployment")
    if parsed.output == "s3" and not settings.output_bucket:
        raise BadRequestError('output "s3" is not available: this deployment has no output bucket')
    if parsed.context is not None and len(json.dumps(parsed.context)) > MAX_CONTEXT_BYTES:
        raise BadRequestError(f"context is over {MAX_CONTEXT_BYTES:,} bytes as JSON")
    return parsed


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
    image = fetch_url(request.url, fetch_policy(settings)) if request.url else decode_base64(request.img or "")
    limit = settings.max_face_input_pixels if request.face else settings.max_input_pixels
    info = probe(image, limit)
    job = Job(
        image=image,
        info=info,
        scale=request.scale,
        face=request.face,
        format=request.format or _DEFAULT_OUTPUT[info.format],
        quality=request.quality,
    )
    if job.output_pixels > settings.max_output_pixels:
        raise ImageTooLargeError(
            f"the result would be {info.width * job.scale}x{info.height * job.scale} = "
            f"{job.output_pixels:,} pixels; the limit is {settings.max_output_pixels:,} pixels"
        )
    check_time_budget(job, settings)
    return job


def model_for_scale(scale: int, settings: ServiceSettings) -> str:
    return settings.model_x2 if scale == 2 and settings.model_x2 else settings.model_x4


def predicted_seconds(job: Job, settings: ServiceSettings) -> float:
    """Network FLOPs of the job (tile windows included) over the deployment's throughput."""
    spec = get_spec(model_for_scale(job.scale, settings))
    tiles = plan(job.info.height, job.info.width, TileConfig(tile=settings.tile, pad=settings.pad))
    computed = sum((t.rows.window_end - t.rows.window_start) * (t.cols.window_end - t.cols.window_start) for t in tiles)
    mflop = computed * spec.mflop_per_pixel
    if job.face:
        # At least one face (a 512x512 GFPGAN pass); more are stopped by the deadline.
        mflop += FACE_CROP_PIXELS * get_spec(settings.face_model).mflop_per_pixel
    return mflop / settings.throughput_mflops


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
