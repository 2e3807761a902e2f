"""Image bytes in and out.

``probe`` (Pillow, header only) checks format and size before any pixel is decoded.
Pillow decodes and encodes the pixels; 16-bit PNG goes through pypng instead, because
Pillow has no 16-bit RGB(A) mode and would drop the low byte. Neither needs OpenCV,
which keeps the core small enough for a Lambda zip. Pixels travel as ``H x W x C``
arrays, RGB(A) order, C in 1/3/4, uint8 or uint16. ``read_metadata`` takes the ICC
profile and EXIF of an input (header only) for ``encode`` to write into the output.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
import png
from PIL import ExifTags, Image

from .errors import BadRequestError, UnsupportedImageError
from .probe import INPUT_FORMATS, ImageInfo, probe

__all__ = ["INPUT_FORMATS", "OUTPUT_FORMATS", "ImageInfo", "Metadata", "decode", "encode", "probe", "read_metadata"]

OUTPUT_FORMATS = ("jpeg", "png", "webp", "avif", "bmp")
_PILLOW_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "avif": "AVIF", "bmp": "BMP"}
#: Formats whose files hold an ICC profile and EXIF (Pillow writes both for each).
_METADATA_FORMATS = {"jpeg", "png", "webp", "avif"}
#: libavif's speed 8 of 0-10: a 1024x1024 photo in 0.43 s and 6% more bytes, against 1.03 s at
#: its default 6 (measured 2026-11-30): an API answer cannot spend seconds on encoding.
_AVIF_SPEED = 8
#: Pillow modes kept as they are; every other mode converts to RGBA when it has
#: transparency, else to RGB (palette, CMYK, YCbCr) or L (bilevel).
_KEPT_MODES = {"L", "RGB", "RGBA"}
#: Byte 24 of a PNG (IHDR's bit depth), after the signature and the IHDR chunk's header.
_PNG_BIT_DEPTH_OFFSET = 24
#: zlib level 4: a 1024x1024 x4 result of a photo in 73 ms and 1.38 MB, against 255 ms and
#: 1.33 MB at level 6 (measured 2026-11-30), which cost 8% of a request.
_PNG_COMPRESSION = 4


def decode(data: bytes, *, max_pixels: int | None = None) -> tuple[np.ndarray, ImageInfo]:
    """Pixels (orientation applied) and header info; limits checked before decoding."""
    info = probe(data, max_pixels)
    try:
        if info.format == "png":
            _verify_png(data)
        pixels = _decode_png16(data) if _is_png16(info, data) else _decode_pillow(data)
    except (OSError, ValueError, SyntaxError, png.Error) as error:
        raise UnsupportedImageError(f"the {info.format} data is corrupt or truncated") from error
    return _apply_orientation(pixels, info.orientation), info


@dataclass(frozen=True)
class Metadata:
    """What an output carries over from its input: the ICC profile and EXIF (TIFF bytes as
    Pillow reads them), without the orientation (the pixels are already upright) and
    without the thumbnail (it shows the image before it was enlarged)."""

    icc_profile: bytes | None = None
    exif: bytes | None = None


#: EXIF tags that no longer describe the output.
_STALE_EXIF_TAGS = (ExifTags.Base.Orientation, ExifTags.Base.JpegIFOffset, ExifTags.Base.JpegIFByteCount)


def read_metadata(data: bytes) -> Metadata:
    """The ICC profile and EXIF of ``data`` (an image ``probe`` accepted), from its header.

    EXIF that Pillow cannot parse is dropped rather than copied blind. A PNG's eXIf chunk
    after the pixel data is not read (that would decode the image): writers put it before.
    """
    with Image.open(io.BytesIO(data), formats=tuple(INPUT_FORMATS)) as image:
        icc = image.info.get("icc_profile") or None
        raw_exif = image.info.get("exif") or None
    return Metadata(icc_profile=icc, exif=_clean_exif(raw_exif) if raw_exif else None)


def _clean_exif(raw: bytes) -> bytes | None:
    exif = Image.Exif()
    try:
        exif.load(raw)
        for tag in _STALE_EXIF_TAGS:
            exif.pop(tag, None)
        # tobytes writes IFD0 with its Exif, GPS and interoperability IFDs, never IFD1 (the thumbnail).
        cleaned = exif.tobytes()
    except (ValueError, TypeError, SyntaxError, OSError, KeyError, struct.error):
        return None
    return cleaned if len(exif) else None


def _verify_png(data: bytes) -> None:
    """Every chunk's CRC and the closing IEND: a cut upload whose pixel data happened to arrive
    whole is still refused (Pillow's decoder alone would accept it)."""
    with Image.open(io.BytesIO(data), formats=("PNG",)) as image:
        image.verify()


def _is_png16(info: ImageInfo, data: bytes) -> bool:
    return info.format == "png" and len(data) > _PNG_BIT_DEPTH_OFFSET and data[_PNG_BIT_DEPTH_OFFSET] == 16


def _decode_png16(data: bytes) -> np.ndarray:
    width, height, rows, meta = png.Reader(bytes=data).asDirect()
    channels = int(meta["planes"])
    pixels = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, channels)
    if channels == 2:  # gray + alpha: the engine takes 1, 3 or 4 channels
        pixels = pixels[:, :, [0, 0, 0, 1]]
    return pixels


def _decode_pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data), formats=tuple(INPUT_FORMATS)) as opened:
        image: Image.Image = opened
        if image.mode not in _KEPT_MODES:
            transparent = "A" in image.getbands() or "transparency" in image.info
            image = image.convert("RGBA" if transparent else "L" if image.mode == "1" else "RGB")
        pixels = np.asarray(image)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def _apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF orientation 1-8 as array views (Pillow's exif_transpose table)."""
    transforms = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(transforms[orientation](pixels))


def encode(pixels: np.ndarray, fmt: str, *, quality: int = 95, metadata: Metadata | None = None) -> bytes:
    """Encode RGB(A)/gray pixels; formats without alpha or 16 bits get what they can hold.

    WebP at quality 100 is lossless, as in libwebp's own tools. ``metadata`` goes into the
    formats that hold it (not BMP); an ICC profile of another colour space than the output's
    (a CMYK profile of a CMYK JPEG, now RGB) is left out, as it would misdescribe the pixels.
    """
    if fmt not in OUTPUT_FORMATS:
        raise BadRequestError(f"format must be one of {', '.join(OUTPUT_FORMATS)}")
    if not 1 <= quality <= 100:
        raise BadRequestError("quality must be between 1 and 100")
    kept = _fitting(metadata, pixels.shape[2]) if metadata and fmt in _METADATA_FORMATS else Metadata()
    if fmt == "png" and pixels.dtype == np.uint16:
        return _with_png_metadata(_encode_png16(pixels), kept)
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    if fmt in ("jpeg", "bmp") and pixels.shape[2] == 4:
        pixels = _flatten_alpha(pixels)
    formats: dict[str, dict[str, int | bool]] = {
        "jpeg": {"quality": quality},
        "webp": {"quality": quality, "lossless": quality == 100},
        "avif": {"quality": quality, "speed": _AVIF_SPEED},
        "png": {"compress_level": _PNG_COMPRESSION},
        "bmp": {},
    }
    carried = {"icc_profile": kept.icc_profile, "exif": kept.exif}
    options = {**formats[fmt], **{name: value for name, value in carried.items() if value}}
    buffer = io.BytesIO()
    Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(buffer, _PILLOW_FORMATS[fmt], **options)
    return buffer.getvalue()


def _encode_png16(pixels: np.ndarray) -> bytes:
    height, width, channels = pixels.shape
    writer = png.Writer(
        width,
        height,
        greyscale=channels == 1,
        alpha=channels == 4,
        bitdepth=16,
        compression=_PNG_COMPRESSION,
    )
    buffer = io.BytesIO()
    writer.write_array(buffer, np.ascontiguousarray(pixels).reshape(-1))
    return buffer.getvalue()


def _fitting(metadata: Metadata, channels: int) -> Metadata:
    """``metadata`` without an ICC profile whose colour space is not the output's."""
    icc = metadata.icc_profile
    space = icc[16:20] if icc and len(icc) >= 20 else b""
    fits = space == (b"GRAY" if channels == 1 else b"RGB ")
    return Metadata(icc_profile=icc if fits else None, exif=metadata.exif)


def _with_png_metadata(data: bytes, metadata: Metadata) -> bytes:
    """pypng's PNG with an iCCP and an eXIf chunk after its header (pypng writes neither)."""
    extra = []
    if metadata.icc_profile:
        # iCCP: a profile name, its terminator, compression method 0 (zlib), the profile.
        extra.append((b"iCCP", b"ICC profile\0\0" + zlib.compress(metadata.icc_profile)))
    if metadata.exif:
        extra.append((b"eXIf", metadata.exif.removeprefix(b"Exif\0\0")))
    if not extra:
        return data
    chunks = list(png.Reader(bytes=data).chunks())
    buffer = io.BytesIO()
    png.write_chunks(buffer, [chunks[0], *extra, *chunks[1:]])
    return buffer.getvalue()


def _flatten_alpha(rgba: np.ndarray) -> np.ndarray:
    """Composite over white: what a viewer shows for a transparent area."""
    top = np.iinfo(rgba.dtype).max
    alpha = rgba[:, :, 3:4].astype(np.float32) / top
    rgb = rgba[:, :, :3].astype(np.float32) * alpha + top * (1.0 - alpha)
    return np.round(rgb).astype(rgba.dtype)
