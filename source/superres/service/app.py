"""The one ASGI app behind every host: local server, both Lambdas (via Mangum), SageMaker container.

Routes: ``POST /resolution`` and ``POST /{stage}/resolution`` (the API, in every request form
of ``forms``), ``GET /models`` (the models a request may name), ``POST /jobs``
and ``GET /jobs/{id}`` (asynchronous jobs, also under ``/{stage}``; ``GET
/jobs/{id}/result`` where this process keeps the results), ``POST /invocations`` and
``GET /ping`` (the SageMaker hosting contract), ``GET
/openapi.yaml`` (the contract), ``GET /`` and ``GET /web/...`` (a page to try the
API, from the package's ``web`` folder). Every error is ``{"message", "code"}`` with its
status; an unexpected exception is a 500 that shows nothing of itself.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import ImageTooLargeError, OverloadedError, SuperResError
from .backends import Backend, plain_number
from .contract import CONTRACT_FILE, contract_text
from .forms import read_request
from .jobs import jobs_for
from .jobs.domain import JobNotFoundError, JobRecord, JobsUnavailableError
from .outputs import RESULT_HEADERS, S3Results, deliver, image_answer
from .request import build_job, installed_models
from .settings import ServiceSettings

logger = logging.getLogger("superres.service")

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}

#: The page (index.html, app.js, style.css), shipped as package data. Checked per request, not
#: at start: a host packaged without it still serves the API (and a 500 on the page).
WEB_DIR = Path(__file__).with_name("web")
#: Everything from this origin, but the page may call a deployed endpoint elsewhere.
_PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data: blob: http: https:; connect-src 'self' http: https:; "
        "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
}


class Admission:
    """Requests in progress (computing or waiting); past capacity the answer is 429 at once."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.active = 0

    def __enter__(self) -> None:
        # Entered on the event loop only, so check-and-increment cannot race.
        if self.active >= self.capacity:
            raise OverloadedError(f"the server is busy ({self.capacity} requests in progress); retry shortly")
        self.active += 1

    def __exit__(self, *_: object) -> None:
        self.active -= 1


def error_response(
    status: int, message: str, code: str, request_id: str | None = None, retry_after: int | None = None
) -> JSONResponse:
    waiting = retry_after or (1 if status in (429, 503) else None)
    headers = {"Retry-After": str(waiting)} if waiting else {}
    if request_id:
        headers["x-request-id"] = request_id
    # Messages may quote what the client sent; a lone surrogate must not break the JSON.
    safe = message.encode("utf-8", "replace").decode("utf-8")
    return JSONResponse({"message": safe, "code": code}, status_code=status, headers=headers)


def create_app(settings: ServiceSettings, backend: Backend) -> Starlette:
    admission = Admission(settings.workers + settings.queue_size)
    results = S3Results(settings) if settings.output_bucket else None
    jobs = jobs_for(settings, backend)

    async def resolution(request: Request, request_id: str) -> Response:
        arrived = time.monotonic()
        deadline = arrived + settings.time_budget_seconds if settings.time_budget_seconds else None
        body = await _read_body(request, settings.max_request_bytes)
        parsed = await read_request(body, request.headers, request.scope.get("query_string", b""), settings)
        raw = parsed.output == "inline" and wants_image(request.headers.get("accept"))
        with admission:
            job = await run_in_threadpool(build_job, parsed, settings)
            result = await backend.run(job, deadline)
        logger.info(
            "request %s: %dx%d %s x%g %s -> %s %s in %.2f s",
            request_id,
            job.info.width,
            job.info.height,
            job.info.format,
            job.scale,
            job.model,
            job.format,
            "raw" if raw else parsed.output,
            time.monotonic() - arrived,
        )
        if raw:
            image, media_type, headers = image_answer(result, settings)
            return Response(image, media_type=media_type, headers={**headers, "x-request-id": request_id})
        answer, _ = await run_in_threadpool(deliver, result, parsed.output, settings, results)
        if parsed.context is not None:
            answer["context"] = parsed.context
        return JSONResponse(answer, headers={"x-request-id": request_id})

    async def models(_: Request, request_id: str) -> Response:
        defaults = {settings.model_x4, settings.model_x2}
        listed = [
            {"name": name, "scale": spec.scale, "purpose": spec.purpose, "default": name in defaults}
            for name, spec in installed_models(settings).items()
        ]
        return JSONResponse(
            {"models": listed, "max_scale": plain_number(settings.max_scale)}, headers={"x-request-id": request_id}
        )

    def job_answer(request: Request, record: JobRecord, status: int, request_id: str) -> Response:
        shown = record.public()
        url = shown.get("result", {}).get("result_url", "")
        if url.startswith("/"):  # kept by this process: a URL of this server
            shown["result"] = {**shown["result"], "result_url": str(request.base_url).rstrip("/") + url}
        return JSONResponse(shown, status_code=status, headers={"x-request-id": request_id})

    async def create_job(request: Request, request_id: str) -> Response:
        if jobs is None:
            raise JobsUnavailableError("asynchronous jobs are not enabled on this deployment")
        body = await _read_body(request, settings.max_request_bytes)
        event = request.scope.get("aws.event") or {}
        identity = (event.get("requestContext") or {}).get("identity") or {}
        # Keys are the caller's own: two API keys (or IAM users) never share a job.
        caller = f"{identity.get('apiKeyId') or ''}|{identity.get('userArn') or ''}"
        record, created = await jobs.submit(body, request.headers.get("idempotency-key"), caller)
        logger.info("request %s: job %s %s", request_id, record.id, "created" if created else "retried")
        # Behind API Gateway the path the client used carries the stage.
        path = (event.get("requestContext") or {}).get("path") or request.url.path
        response = job_answer(request, record, 202, request_id)
        response.headers["location"] = path.rstrip("/") + "/" + record.id
        return response

    async def get_job(request: Request, request_id: str) -> Response:
        if jobs is None:
            raise JobsUnavailableError("asynchronous jobs are not enabled on this deployment")
        return job_answer(request, jobs.get(request.path_params["id"]), 200, request_id)

    async def job_result(request: Request, request_id: str) -> Response:
        kept = jobs.results.get(request.path_params["id"]) if jobs and jobs.results else None
        if kept is None:
            raise JobNotFoundError("no result kept here for this job")
        return Response(kept[0], media_type=kept[1], headers={"x-request-id": request_id})

    async def ping(_: Request) -> Response:
        return JSONResponse({"status": "ok", "variant": settings.variant})

    async def openapi(_: Request) -> Response:
        return PlainTextResponse(contract_text(), media_type="application/yaml")

    async def page(_: Request) -> Response:
        return FileResponse(WEB_DIR / "index.html", headers=_PAGE_HEADERS)

    async def not_routed(_: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        response = error_response(
            error.status_code, str(error.detail), _HTTP_CODES.get(error.status_code, "http_error")
        )
        response.headers.update(error.headers or {})  # e.g. Allow on a 405
        return response

    api, listing = _json_errors(resolution), _json_errors(models)
    create, status, kept = _json_errors(create_job), _json_errors(get_job), _json_errors(job_result)
    cors = (
        [
            Middleware(
                CORSMiddleware,
                allow_origins=[settings.cors_origin],
                allow_methods=["GET", "POST"],
                allow_headers=[
                    "content-type",
                    "authorization",
                    "x-amz-date",
                    "x-amz-security-token",
                    "x-api-key",
                    "idempotency-key",
                ],
                # What a page reads of an answer besides the body: the id to quote, a job's
                # address, a raw image answer's fields.
                expose_headers=["x-request-id", "location", *(f"x-result-{name}" for name in RESULT_HEADERS)],
            )
        ]
        if settings.cors_origin
        else []
    )
    return Starlette(
        middleware=cors,
        routes=[
            Route("/resolution", api, methods=["POST"]),
            Route("/{stage}/resolution", api, methods=["POST"]),
            Route("/models", listing, methods=["GET"]),
            Route("/{stage}/models", listing, methods=["GET"]),
            Route("/jobs", create, methods=["POST"]),
            Route("/{stage}/jobs", create, methods=["POST"]),
            Route("/jobs/{id}", status, methods=["GET"]),
            Route("/jobs/{id}/result", kept, methods=["GET"]),
            Route("/{stage}/jobs/{id}", status, methods=["GET"]),
            Route("/invocations", api, methods=["POST"]),
            Route("/ping", ping, methods=["GET"]),
            Route(f"/{CONTRACT_FILE}", openapi, methods=["GET"]),
            Route("/", page, methods=["GET"]),
            Mount("/web", StaticFiles(directory=WEB_DIR, check_dir=False), name="web"),
        ],
        exception_handlers={HTTPException: not_routed},
    )


def _json_errors(endpoint: Callable[[Request, str], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Every failure as the one error shape; internal ones logged, never shown."""

    async def handle(request: Request) -> Response:
        request_id = request.headers.get("x-amzn-requestid") or request.headers.get("x-request-id") or uuid.uuid4().hex
        try:
            return await endpoint(request, request_id)
        except SuperResError as error:
            logger.info("request %s: %d %s: %s", request_id, error.status, error.code, error.message)
            return error_response(error.status, error.message, error.code, request_id, error.retry_after)
        except Exception:
            logger.exception("request %s: internal error", request_id)
            return error_response(500, "internal error", "internal_error", request_id)

    return handle


def wants_image(accept: str | None) -> bool:
    """Whether ``accept`` prefers an image type to JSON (by its q-values, then its order)."""
    ranked = []
    for position, entry in enumerate((accept or "").split(",")[:32]):
        kind, *params = (part.strip().lower() for part in entry.split(";"))
        quality = next((param[2:] for param in params if param.startswith("q=")), "1")
        try:
            weight = float(quality)
        except ValueError:
            continue  # a malformed entry is skipped, as browsers do
        if 0 <= weight <= 1:
            ranked.append((-weight, position, kind))
    for weight, _, kind in sorted(ranked):
        if weight == 0:
            break
        if kind.startswith("image/"):
            return True
        if kind in ("application/json", "application/*", "*/*"):
            return False
    return False


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it is known to exceed ``limit`` (before it is all read)."""
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise ImageTooLargeError(f"the request is {int(declared):,} bytes; the limit is {limit:,} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ImageTooLargeError(f"the request is over {limit:,} bytes; the limit is {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
