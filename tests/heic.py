"""HEIC files for the tests, encoded by the machine's libheif (Debian's libheif1, built with its
x265 encoder): the service's decoder (pi-heif) has no encoder, and no HEIC is fetched.

Only the few libheif C calls an encode needs, through ctypes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import tempfile
from functools import cache
from pathlib import Path

import numpy as np

# libheif's enums (heif.h, stable since 1.0).
_COLORSPACE_RGB = 1
_CHROMA_INTERLEAVED_RGB = 10
_CHANNEL_INTERLEAVED = 10
_COMPRESSION_HEVC = 1


class _Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("subcode", ctypes.c_int), ("message", ctypes.c_char_p)]


@cache
def _libheif() -> ctypes.CDLL:
    name = ctypes.util.find_library("heif")
    assert name, "libheif is not installed (Debian: libheif1)"
    lib = ctypes.CDLL(name)
    for function in (
        "heif_image_create",
        "heif_image_add_plane",
        "heif_context_get_encoder_for_format",
        "heif_encoder_set_lossy_quality",
        "heif_context_encode_image",
        "heif_context_add_exif_metadata",
        "heif_image_set_raw_color_profile",
        "heif_context_write_to_file",
    ):
        getattr(lib, function).restype = _Error
    lib.heif_context_alloc.restype = ctypes.c_void_p
    lib.heif_image_get_plane.restype = ctypes.POINTER(ctypes.c_uint8)
    lib.heif_image_get_plane.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    lib.heif_context_free.argtypes = [ctypes.c_void_p]
    lib.heif_image_release.argtypes = [ctypes.c_void_p]
    lib.heif_encoder_release.argtypes = [ctypes.c_void_p]
    lib.heif_image_handle_release.argtypes = [ctypes.c_void_p]
    return lib


def _check(error: _Error) -> None:
    assert error.code == 0, f"libheif: {error.message.decode() if error.message else error.code}"


def encode_heic(rgb: np.ndarray, *, icc: bytes | None = None, exif: bytes | None = None, quality: int = 90) -> bytes:
    """``rgb`` (H x W x 3 uint8) as a HEIC file, with an ICC profile and EXIF (TIFF bytes) if given."""
    lib = _libheif()
    height, width, _ = rgb.shape
    context = ctypes.c_void_p(lib.heif_context_alloc())
    image, encoder, handle = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
    try:
        _check(lib.heif_image_create(width, height, _COLORSPACE_RGB, _CHROMA_INTERLEAVED_RGB, ctypes.byref(image)))
        _check(lib.heif_image_add_plane(image, _CHANNEL_INTERLEAVED, width, height, 8))
        stride = ctypes.c_int()
        plane = lib.heif_image_get_plane(image, _CHANNEL_INTERLEAVED, ctypes.byref(stride))
        rows = np.ctypeslib.as_array(plane, shape=(height, stride.value))
        rows[:, : width * 3] = rgb.reshape(height, width * 3)
        if icc:
            _check(lib.heif_image_set_raw_color_profile(image, b"prof", icc, ctypes.c_size_t(len(icc))))
        _check(lib.heif_context_get_encoder_for_format(context, _COMPRESSION_HEVC, ctypes.byref(encoder)))
        _check(lib.heif_encoder_set_lossy_quality(encoder, quality))
        _check(lib.heif_context_encode_image(context, image, encoder, None, ctypes.byref(handle)))
        if exif:
            _check(lib.heif_context_add_exif_metadata(context, handle, exif, len(exif)))
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "image.heic"
            _check(lib.heif_context_write_to_file(context, str(path).encode()))
            return path.read_bytes()
    finally:
        for pointer, release in (
            (handle, lib.heif_image_handle_release),
            (encoder, lib.heif_encoder_release),
            (image, lib.heif_image_release),
        ):
            if pointer.value:
                release(pointer)
        lib.heif_context_free(context)
