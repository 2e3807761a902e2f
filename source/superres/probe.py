"""What an image is, from its header alone: format by magic bytes, size, EXIF orientation.

Pillow only, no pixel decoding: limits hold before any pixel exists, and hosts
that only validate (the invoke-endpoint Lambda) need neither OpenCV nor numpy.
AVIF is Pillow's own (libavif); HEIC/HEIF comes from pi-heif's Pillow plugin (libheif).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import cast

import pi_heif
from PIL import Image, UnidentifiedImageError

from .errors import ImageTooLargeError, UnsupportedImageError

# HEIF files whose pixels are AV1 are AVIF, which Pillow opens itself (tried first, by name).
pi_heif.register_heif_opener()

#: Pillow format name -> the name the API uses.
INPUT_FORMATS = {"JPEG": "jpeg", "PNG": "png", "BMP": "bmp", "WEBP": "webp", "AVIF": "avif", "HEIF": "heic"}
_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class ImageInfo:
    """What the header says, dimensions after EXIF orientation."""

    format: str
    width: int
    height: int
    orientation: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def probe(data: bytes, max_pixels: int | None = None) -> ImageInfo:
    """Identify the format by content and check the size, without decoding pixels."""
    limit = f"the limit is {max_pixels:,} pixels" if max_pixels else "no image may be that large"
    try:
        with Image.open(io.BytesIO(data), formats=tuple(INPUT_FORMATS)) as image:
            width, height = image.size
            orientation = _orientation(image.info.get("exif"))
            # Image.open(formats=...) opens only those formats, so ``format`` is one of them.
            fmt = INPUT_FORMATS[cast(str, image.format)]
    except Image.DecompressionBombError:
        # Pillow's own guard fires first for the most absurd headers.
        # Pillow raises it only while its limit is set, so MAX_IMAGE_PIXELS is an int here.
        bomb = 2 * cast(int, Image.MAX_IMAGE_PIXELS)
        raise ImageTooLargeError(f"input image has more than {bomb:,} pixels; {limit}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise UnsupportedImageError(
            f"not a supported image: expected one of {', '.join(INPUT_FORMATS.values())}"
        ) from None
    if orientation in (5, 6, 7, 8):  # these orientations swap width and height
        width, height = height, width
    info = ImageInfo(fmt, width, height, orientation)
    if max_pixels is not None and info.pixels > max_pixels:
        raise ImageTooLargeError(f"input image is {width}x{height} = {info.pixels:,} pixels; {limit}")
    return info


def _orientation(raw_exif: bytes | None) -> int:
    """Orientation tag from EXIF bytes already read with the header.

    Not ``Image.getexif()``: for PNG it decodes the whole image to look for a
    late eXIf chunk, which would defeat the size check.
    """
    if not raw_exif:
        return 1
    try:
        exif = Image.Exif()
        exif.load(raw_exif)
        orientation = int(exif.get(_ORIENTATION_TAG, 1))
    except (ValueError, TypeError, SyntaxError, OSError, struct.error):
        return 1  # a malformed tag is ignored, as viewers do
    return orientation if 1 <= orientation <= 8 else 1
