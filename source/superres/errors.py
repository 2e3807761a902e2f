"""Errors of the core library, each carrying the HTTP status and code the hosts answer with.

Hosts turn any ``SuperResError`` into ``{"message": ..., "code": ...}`` with
``status``; everything else is an internal error and never shows its details.
"""

from __future__ import annotations


class SuperResError(Exception):
    status: int = 500
    code: str = "internal_error"

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


class InferenceError(SuperResError):
    """The network failed on a tile; no partial image is ever returned."""

    status = 502
    code = "inference_failed"
