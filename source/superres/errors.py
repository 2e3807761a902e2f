"""Errors of the core library, each carrying the HTTP status and code the hosts answer with.

Hosts turn any ``SuperResError`` into ``{"message": ..., "code": ...}`` with
``status``; everything else is an internal error and never shows its details.
"""

from __future__ import annotations


class SuperResError(Exception):
    status: int = 500
    code: str = "internal_error"
    #: Seconds to wait before asking again, where waiting helps (a 429 or 503 answers 1 unless set).
    retry_after: int | None = None

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        # Per-instance values: an error relayed from another service keeps its own.
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class BadRequestError(SuperResError):
    status = 400
    code = "bad_request"


class UnsupportedImageError(SuperResError):
    """Not an image, or a format the service does not take."""

    status = 415
    code = "unsupported_image"


class UnsupportedMediaTypeError(UnsupportedImageError):
    """A request body of a Content-Type that is none of the API's request forms."""

    code = "unsupported_media_type"


class ImageTooLargeError(SuperResError):
    status = 413
    code = "too_large"


class ModelNotFoundError(SuperResError):
    """The deployment lacks a weight file; the message says how to get it."""

    status = 503
    code = "model_unavailable"


class ModelDownloadError(SuperResError):
    status = 502
    code = "model_download_failed"


class ModelMismatchError(SuperResError):
    """A weight file holds another network than its manifest entry says."""

    status = 503
    code = "model_unavailable"


class ModelWarmingUpError(SuperResError):
    """The network is still being compiled for this machine (the Neuron runtime compiles at
    container start): the same request succeeds once it is ready."""

    status = 503
    code = "model_warming_up"
    retry_after = 30


class ModelCompileError(SuperResError):
    """Compiling the network for this machine failed: no request will succeed until the
    container is replaced (its log says why)."""

    status = 500
    code = "model_compile_failed"


class InferenceError(SuperResError):
    """The network failed on a tile; no partial image is ever returned."""

    status = 502
    code = "inference_failed"


class OverloadedError(SuperResError):
    """Too many requests in progress, or the model endpoint is throttling."""

    status = 429
    code = "overloaded"


class TimeBudgetError(SuperResError):
    """The computation ran past the deployment's time budget."""

    status = 504
    code = "time_budget_exceeded"


class UpstreamError(SuperResError):
    """The model endpoint failed or could not be reached."""

    status = 502
    code = "model_failed"


class UrlNotAllowedError(BadRequestError):
    """A ``url`` the service refuses to fetch: scheme, credentials, a
    non-public address (server-side request forgery) or an S3 bucket that is
    not allow-listed."""

    code = "url_not_allowed"


class UrlFetchError(SuperResError):
    """Fetching an allowed ``url`` failed: timeout, connection error, an
    answer other than 2xx, too many redirects, S3 errors."""

    status = 502
    code = "url_fetch_failed"
