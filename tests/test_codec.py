"""Decoding and encoding real image bytes: formats, orientation, bit depth, broken and hostile files."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import png
import pytest
from PIL import Image, ImageOps

from conftest import SHARED, load_photo
from superres import codec
from superres.errors import BadRequestError, ImageTooLargeError, UnsupportedImageError


def _pil_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height but whose pixel data is a few bytes: a bomb's header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ["jpeg", "png", "bmp", "webp"])
def test_each_input_format_decodes_to_rgb(astronaut, fmt: str) -> None:
    crop = astronaut[:48, :64]
    data = codec.encode(crop, fmt, quality=100)
    pixels, info = codec.decode(data)
    assert (info.format, info.width, info.height) == (fmt, 64, 48)
    assert pixels.shape == (48, 64, 3) and pixels.dtype == np.uint8
    # colour order survives the round trip (lossy formats only approximately)
    assert np.abs(pixels.astype(int) - crop.astype(int)).mean() < 3


def test_the_shared_photos_decode_with_their_channels() -> None:
    assert load_photo("logo.png").shape[2] == 4
    assert load_photo("camera.png").shape[2] == 1
    assert load_photo("rocket.jpg").shape[2] == 3


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(astronaut, orientation: int) -> None:
    image = Image.fromarray(astronaut[:40, :64])
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _pil_bytes(image, "PNG", exif=exif)
    pixels, info = codec.decode(data)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    np.testing.assert_array_equal(pixels, expected)
    assert (info.height, info.width) == expected.shape[:2]


def test_16_bit_rgba_png_round_trips() -> None:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 65536, (20, 30, 4), dtype=np.uint16)
    decoded, info = codec.decode(codec.encode(pixels, "png"))
    assert info.format == "png"
    np.testing.assert_array_equal(decoded, pixels)


_OPENCV_ORDER = {1: None, 3: (cv2.COLOR_RGB2BGR, cv2.COLOR_BGR2RGB), 4: (cv2.COLOR_RGBA2BGRA, cv2.COLOR_BGRA2RGBA)}


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16_bit_png_agrees_with_libpng_both_ways(channels: int) -> None:
    """OpenCV's libpng is the independent codec: it reads ours, we read its, every bit kept."""
    pixels = np.random.default_rng(channels).integers(0, 65536, (23, 31, channels), dtype=np.uint16)
    order = _OPENCV_ORDER[channels]
    ours = cv2.imdecode(np.frombuffer(codec.encode(pixels, "png"), np.uint8), cv2.IMREAD_UNCHANGED)
    assert ours is not None
    ours = ours[:, :, None] if order is None else cv2.cvtColor(ours, order[1])
    np.testing.assert_array_equal(ours, pixels)
    ok, theirs = cv2.imencode(".png", pixels if order is None else cv2.cvtColor(pixels, order[0]))
    assert ok
    np.testing.assert_array_equal(codec.decode(theirs.tobytes())[0], pixels)


def test_16_bit_gray_alpha_png_decodes_as_rgba() -> None:
    gray_alpha = np.random.default_rng(2).integers(0, 65536, (9, 11, 2), dtype=np.uint16)
    buffer = io.BytesIO()
    png.Writer(11, 9, greyscale=True, alpha=True, bitdepth=16).write_array(buffer, gray_alpha.reshape(-1))
    pixels, _ = codec.decode(buffer.getvalue())
    np.testing.assert_array_equal(pixels, gray_alpha[:, :, [0, 0, 0, 1]])


def test_webp_at_quality_100_is_lossless(astronaut) -> None:
    crop = astronaut[:40, :56]
    np.testing.assert_array_equal(codec.decode(codec.encode(crop, "webp", quality=100))[0], crop)


def test_palette_png_with_transparency_keeps_alpha(astronaut) -> None:
    image = Image.fromarray(astronaut[:32, :32]).convert("P")
    pixels, _ = codec.decode(_pil_bytes(image, "PNG", transparency=0))
    assert pixels.shape[2] == 4


def test_alpha_is_flattened_onto_white_for_jpeg() -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)  # fully transparent black
    decoded, _ = codec.decode(codec.encode(rgba, "jpeg", quality=100))
    assert decoded.shape == (8, 8, 3) and decoded.min() >= 250


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_truncated_files_are_refused(astronaut, fmt: str) -> None:
    data = codec.encode(astronaut[:64, :64], fmt)
    with pytest.raises(UnsupportedImageError):
        codec.decode(data[: len(data) // 2])


@pytest.mark.parametrize(
    "data",
    [b"", b"hello", b"%PDF-1.7\n", b"GIF89a" + bytes(64), b"\x89PNG\r\n\x1a\n" + bytes(40), b"<svg></svg>"],
    ids=["empty", "text", "pdf", "gif", "png-magic-only", "svg"],
)
def test_non_images_are_refused(data: bytes) -> None:
    with pytest.raises(UnsupportedImageError):
        codec.decode(data)


def test_gif_is_not_a_supported_input(astronaut) -> None:
    with pytest.raises(UnsupportedImageError):
        codec.decode(_pil_bytes(Image.fromarray(astronaut[:16, :16]), "GIF"))


def test_pixel_limit_holds_before_decoding() -> None:
    bomb = _png_header_only(10_000, 8_000)  # 80 Mpx claimed in 100 bytes
    with pytest.raises(ImageTooLargeError, match="10000x8000 = 80,000,000 pixels; the limit is 4,000,000 pixels"):
        codec.decode(bomb, max_pixels=4_000_000)


def test_absurd_dimensions_are_too_large_even_without_a_limit() -> None:
    with pytest.raises(ImageTooLargeError):
        codec.decode(_png_header_only(200_000, 200_000))


def test_encode_refuses_bad_options(astronaut) -> None:
    with pytest.raises(BadRequestError):
        codec.encode(astronaut[:4, :4], "tiff")
    with pytest.raises(BadRequestError):
        codec.encode(astronaut[:4, :4], "jpeg", quality=0)


def test_16_bit_to_8_bit_formats_keeps_the_high_byte() -> None:
    pixels = np.full((4, 4, 3), 0xAB00, np.uint16)
    decoded, _ = codec.decode(codec.encode(pixels, "bmp"))
    assert decoded.dtype == np.uint8 and (decoded == 0xAB).all()


def test_shared_images_are_where_the_tests_expect_them() -> None:
    assert (SHARED / "images" / "astronaut.png").is_file()
    image = cv2.imread(str(SHARED / "images" / "astronaut.png"))
    assert image is not None and image.shape == (512, 512, 3)
