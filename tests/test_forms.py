"""The API as clients use image APIs (issue 18), over real HTTP and through the Lambda handler:
every request form with every input format, raw image answers, any scale or a width/height,
a model per request, AVIF and HEIC, and the ICC profile and EXIF carried into the output.

The server runs realesr-animevideov3 (real weights) on crops of the shared photos.
"""

from __future__ import annotations

import base64
import io
import json
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms

from conftest import load_photo, photo_names
from heic import encode_heic
from lambda_events import LambdaContext, api_gateway_event
from servers import serving
from service_helpers import assert_error, b64, load_lambda, settings
from superres import codec
from superres.engine import lanczos_resize
from superres.service.contract import schema
from superres.service.local import local_app

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def crop(name: str = "astronaut.png", height: int = 48, width: int = 64) -> np.ndarray:
    pixels = load_photo(name)
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return np.ascontiguousarray(pixels[:height, :width, :3])


def encoded(pixels: np.ndarray, fmt: str, **options: Any) -> bytes:
    """``pixels`` as a file of ``fmt`` (heic through libheif), with Pillow's save options."""
    if fmt == "heic":
        return encode_heic(pixels, icc=options.get("icc_profile"), exif=options.get("exif"))
    out = io.BytesIO()
    Image.fromarray(pixels).save(
        out, {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "avif": "AVIF", "bmp": "BMP"}[fmt], **options
    )
    return out.getvalue()


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serving(local_app(settings(max_request_bytes=2_000_000))) as url:
        yield url


# --- request forms ------------------------------------------------------------------------------


def send(base_url: str, form: str, image: bytes, options: dict[str, Any], **headers: str) -> httpx.Response:
    """``image`` with ``options`` as JSON, as the raw body (options in the query string) or as a
    multipart form (options as text parts)."""
    url = base_url + "/resolution"
    if form == "json":
        return httpx.post(url, json={"img": b64(image), **options}, headers=headers, timeout=60)
    text = {name: json.dumps(value) if isinstance(value, bool) else str(value) for name, value in options.items()}
    if form == "raw":
        return httpx.post(
            url, params=text, content=image, headers={"content-type": "image/x-any", **headers}, timeout=60
        )
    return httpx.post(
        url, data=text, files={"image": ("photo", image, "application/octet-stream")}, headers=headers, timeout=60
    )


def result_of(response: httpx.Response) -> tuple[dict[str, Any], bytes]:
    assert response.status_code == 200, response.text
    answer = response.json()
    jsonschema.validate(answer, schema("ResolutionResult"))
    return answer, base64.b64decode(answer["result"])


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "avif", "heic", "bmp"])
@pytest.mark.parametrize("form", ["json", "raw", "multipart"])
def test_every_form_takes_every_input_format(base_url: str, form: str, fmt: str) -> None:
    answer, image = result_of(send(base_url, form, encoded(crop("coffee.png"), fmt), {"scale": 2, "face": False}))
    expected = {"bmp": "png", "heic": "jpeg"}.get(fmt, fmt)
    info = codec.probe(image)
    assert (info.format, info.width, info.height) == (expected, 128, 96)
    assert (answer["format"], answer["width"], answer["height"], answer["scale"]) == (expected, 128, 96, 2)


@pytest.mark.parametrize("form", ["json", "raw", "multipart"])
def test_every_form_gives_the_same_image(base_url: str, form: str) -> None:
    png = encoded(crop(), "png")
    _, reference = result_of(send(base_url, "json", png, {"scale": 3, "format": "png"}))
    _, image = result_of(send(base_url, form, png, {"scale": 3, "format": "png"}))
    assert image == reference


@pytest.mark.parametrize("name", photo_names())
@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "avif"])
def test_raw_answers_in_every_output_format(base_url: str, name: str, fmt: str) -> None:
    source = encoded(crop(name), "png")
    response = send(base_url, "raw", source, {"format": fmt, "quality": 80}, accept="image/*")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == f"image/{fmt}"
    info = codec.probe(response.content)
    assert (info.format, info.width, info.height) == (fmt, 128, 96)
    fields = {name: response.headers[f"x-result-{name}"] for name in ("width", "height", "scale", "model", "faces")}
    assert fields == {"width": "128", "height": "96", "scale": "2", "model": "realesr-animevideov3", "faces": "0"}
    assert float(response.headers["x-result-seconds"]) > 0


@pytest.mark.parametrize(
    ("accept", "raw"),
    [
        ("image/png", True),
        ("image/*, application/json", True),
        ("application/json, image/*", False),
        ("image/webp;q=0.5, application/json;q=0.9", False),
        ("image/webp;q=0, */*", False),
        ("*/*", False),
        ("", False),
    ],
)
def test_accept_chooses_the_answer_form(base_url: str, accept: str, raw: bool) -> None:
    response = send(base_url, "json", encoded(crop(), "png"), {}, accept=accept)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("image/png" if raw else "application/json")


def test_options_in_the_query_string_join_any_form(base_url: str) -> None:
    png = encoded(crop(), "png")
    joined = httpx.post(base_url + "/resolution?format=webp&scale=1.5", json={"img": b64(png)}, timeout=60)
    answer, image = result_of(joined)
    assert (answer["format"], answer["width"], answer["height"]) == ("webp", 96, 72)
    assert codec.probe(image).format == "webp"
    both = httpx.post(base_url + "/resolution?scale=3", json={"img": b64(png), "scale": 2}, timeout=60)
    assert_error(both, 400, "scale: given both in the query string and in the body")
    twice = httpx.post(base_url + "/resolution?scale=2&scale=3", content=png, headers={"content-type": "image/png"})
    assert_error(twice, 400, "scale is given more than once")


# --- scale, width, height -----------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, "2", 2.0, "2.0"])
def test_scale_is_lenient_like_the_original_kit(base_url: str, scale: object) -> None:
    png = encoded(crop(), "png")
    _, reference = result_of(send(base_url, "json", png, {"scale": 2}))
    answer, image = result_of(send(base_url, "json", png, {"scale": scale}))
    assert image == reference and answer["scale"] == 2


def test_scale_4_is_the_networks_output_untouched(base_url: str, compact) -> None:
    """Same runtime in both: the served x4 is what the engine's native scale gives, no resize."""
    pixels = crop()
    _, image = result_of(send(base_url, "raw", encoded(pixels, "png"), {"scale": 4}))
    served, _ = codec.decode(image)
    assert served.shape == (192, 256, 3)
    _, halved = result_of(send(base_url, "raw", encoded(pixels, "png"), {"scale": 2}))
    # x2 is exactly the x4 output resized with Lanczos: x4 itself had no resize on it.
    np.testing.assert_array_equal(codec.decode(halved)[0], lanczos_resize(served, (128, 96)))


@pytest.mark.parametrize(
    ("options", "size"),
    [
        ({"scale": 1}, (64, 48)),
        ({"scale": 1.5}, (96, 72)),
        ({"scale": "3"}, (192, 144)),
        ({"scale": 8}, (512, 384)),
        ({"scale": 2.33}, (149, 112)),
        ({"width": 100}, (100, 75)),
        ({"height": 200}, (267, 200)),
    ],
    ids=str,
)
def test_any_scale_or_a_width_or_height_is_native_then_lanczos(
    base_url: str, options: dict[str, Any], size: tuple[int, int]
) -> None:
    png = encoded(crop(), "png")
    _, native = result_of(send(base_url, "json", png, {"scale": 4, "format": "png"}))
    answer, image = result_of(send(base_url, "multipart", png, {**options, "format": "png"}))
    pixels, info = codec.decode(image)
    assert (info.width, info.height) == size == (answer["width"], answer["height"])
    np.testing.assert_array_equal(pixels, lanczos_resize(codec.decode(native)[0], size))


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"scale": 9}, "between 1 and 8"),
        ({"scale": "0.5"}, "between 1 and 8"),
        ({"scale": 17}, "scale"),
        ({"scale": "2x"}, "scale"),
        ({"scale": True}, "scale"),
        ({"width": 32}, "width 32 of a 64 px wide image: the scale must be between 1 and 8"),
        ({"height": 400}, "between 1 and 8"),
        ({"scale": 2, "width": 100}, "at most one of scale, width and height"),
        ({"width": 0}, "width"),
    ],
    ids=str,
)
def test_scales_out_of_range_are_400(base_url: str, options: dict[str, Any], fragment: str) -> None:
    assert_error(send(base_url, "json", encoded(crop(), "png"), options), 400, fragment)


def test_the_output_pixel_limit_holds_for_any_scale() -> None:
    with serving(local_app(settings(max_output_pixels=200 * 150))) as url:
        png = encoded(crop(), "png")
        assert_error(send(url, "json", png, {"width": 201}), 413, "201x151")
        result_of(send(url, "json", png, {"width": 200}))


def test_the_time_budget_counts_the_resize_and_the_format(base_url: str) -> None:
    from superres.service.request import build_job, parse_fields

    deployment = settings(throughput_mflops=1e12)
    png = encoded(crop(), "png")
    jobs = {
        name: build_job(parse_fields(fields, png, deployment), deployment)
        for name, fields in {
            "x4 png": {"scale": 4, "format": "png"},
            "x3 png": {"scale": 3, "format": "png"},
            "x4 avif": {"scale": 4, "format": "avif"},
        }.items()
    }
    from superres.service.request import predicted_seconds

    seconds = {name: predicted_seconds(job, deployment) for name, job in jobs.items()}
    # x3 resizes the x4 output (more work than x4 alone); AVIF costs more to encode than PNG.
    assert seconds["x3 png"] > seconds["x4 png"] * 0.56 + 256 * 192 * 21e-9
    assert seconds["x4 avif"] > seconds["x4 png"]


# --- models -------------------------------------------------------------------------------------


def test_models_lists_the_installed_ones_and_a_request_picks_one(base_url: str) -> None:
    listed = httpx.get(base_url + "/models")
    assert listed.status_code == 200
    body = listed.json()
    jsonschema.validate(body, schema("ModelList"))
    by_name = {model["name"]: model for model in body["models"]}
    assert by_name["realesr-animevideov3"]["default"] is True and by_name["realesr-animevideov3"]["scale"] == 4
    assert "RealESRGAN_x4plus_anime_6B" in by_name and body["max_scale"] == 8
    assert "GFPGANv1.4" not in by_name  # not an upscaler
    assert httpx.get(base_url + "/prod/models").json() == body
    answer, image = result_of(send(base_url, "raw", encoded(crop(), "png"), {"model": "RealESRGAN_x4plus_anime_6B"}))
    assert answer["model"] == "RealESRGAN_x4plus_anime_6B"
    _, default = result_of(send(base_url, "raw", encoded(crop(), "png"), {}))
    assert image != default


@pytest.mark.parametrize("model", ["RealESRGAN_x2plus", "no-such-model", "../../etc/passwd"])
def test_a_model_not_installed_is_400_listing_the_installed(base_url: str, model: str) -> None:
    response = send(base_url, "json", encoded(crop(), "png"), {"model": model})
    assert_error(response, 400, "is not installed on this deployment; installed: ", "realesr-animevideov3")


def test_the_operator_can_narrow_the_models() -> None:
    with serving(local_app(settings(models=frozenset({"realesr-animevideov3"})))) as url:
        assert [model["name"] for model in httpx.get(url + "/models").json()["models"]] == ["realesr-animevideov3"]
        response = send(url, "json", encoded(crop(), "png"), {"model": "RealESRGAN_x4plus"})
        assert_error(response, 400, "installed: realesr-animevideov3")


# --- metadata -----------------------------------------------------------------------------------


def exif_with_thumbnail() -> bytes:
    """EXIF (TIFF bytes) as cameras write it: IFD0 with Make and Orientation 6, an Exif IFD with
    the date, a GPS IFD, and IFD1 holding a JPEG thumbnail."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Canon"
    exif[ExifTags.Base.Orientation] = 6
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = "2026:11:30 12:00:00"
    exif.get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitudeRef] = "N"
    tiff = exif.tobytes()[len(b"Exif\0\0") :]
    thumbnail = encoded(crop(height=8, width=8), "jpeg")
    # Point IFD0's next-IFD offset (after its entries) at an IFD1 appended to the end.
    count = struct.unpack_from(">H", tiff, 8)[0] if tiff[:2] == b"MM" else struct.unpack_from("<H", tiff, 8)[0]
    order = ">" if tiff[:2] == b"MM" else "<"
    next_at = 8 + 2 + 12 * count
    ifd1_at = len(tiff)
    entries = [(0x0201, 4, 1, ifd1_at + 2 + 2 * 12 + 4), (0x0202, 4, 1, len(thumbnail))]
    ifd1 = struct.pack(order + "H", 2) + b"".join(struct.pack(order + "HHII", *entry) for entry in entries)
    ifd1 += struct.pack(order + "I", 0)
    patched = tiff[:next_at] + struct.pack(order + "I", ifd1_at) + tiff[next_at + 4 :]
    return b"Exif\0\0" + patched + ifd1 + thumbnail


def assert_carried(image: bytes) -> None:
    with Image.open(io.BytesIO(image)) as opened:
        assert opened.info.get("icc_profile") == SRGB
        exif = opened.getexif()
    assert exif[ExifTags.Base.Make] == "Canon"
    assert ExifTags.Base.Orientation not in exif
    assert exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] == "2026:11:30 12:00:00"
    assert exif.get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitudeRef] == "N"
    assert exif.get_ifd(ExifTags.IFD.IFD1) == {}


def test_the_thumbnail_is_in_the_test_input() -> None:
    """The input of the metadata tests holds what the service must drop."""
    jpeg = encoded(crop(), "jpeg", icc_profile=SRGB, exif=exif_with_thumbnail())
    with Image.open(io.BytesIO(jpeg)) as opened:
        exif = opened.getexif()
    assert exif[ExifTags.Base.Orientation] == 6
    assert ExifTags.Base.JpegIFOffset in exif.get_ifd(ExifTags.IFD.IFD1)


@pytest.mark.parametrize("out", ["jpeg", "png", "webp", "avif"])
@pytest.mark.parametrize("source", ["jpeg", "png", "webp", "avif", "heic"])
def test_icc_profile_and_exif_are_carried_into_every_format(base_url: str, source: str, out: str) -> None:
    exif = exif_with_thumbnail()
    image = encoded(crop(), source, icc_profile=SRGB, exif=exif[len(b"Exif\0\0") :] if source == "heic" else exif)
    response = send(base_url, "raw", image, {"format": out}, accept="image/*")
    assert response.status_code == 200, response.text
    assert_carried(response.content)
    # Orientation 6 was applied (HEIC applies its own transform instead, so it stays as stored).
    info = codec.probe(response.content)
    assert (info.width, info.height) == ((128, 96) if source == "heic" else (96, 128))


def test_sixteen_bit_png_keeps_its_profile(base_url: str) -> None:
    pixels = crop().astype(np.uint16) * 257
    with_profile = codec.encode(pixels, "png", metadata=codec.Metadata(icc_profile=SRGB, exif=exif_with_thumbnail()))
    _, image = result_of(send(base_url, "json", with_profile, {}))
    assert codec.decode(image)[0].dtype == np.uint16
    with Image.open(io.BytesIO(image)) as opened:
        assert opened.info.get("icc_profile") == SRGB


@pytest.mark.parametrize("form", ["json", "raw", "multipart"])
def test_strip_metadata_drops_both(base_url: str, form: str) -> None:
    image = encoded(crop(), "jpeg", icc_profile=SRGB, exif=exif_with_thumbnail())
    _, stripped = result_of(send(base_url, form, image, {"strip_metadata": True}))
    with Image.open(io.BytesIO(stripped)) as opened:
        assert "icc_profile" not in opened.info and not opened.getexif()


def test_a_cmyk_profile_is_not_put_on_rgb_pixels(base_url: str) -> None:
    cmyk = Image.fromarray(crop()).convert("CMYK")
    profile = bytearray(SRGB)
    profile[16:20] = b"CMYK"  # what a CMYK JPEG's profile says of its colour space
    out = io.BytesIO()
    cmyk.save(out, "JPEG", icc_profile=bytes(profile))
    _, image = result_of(send(base_url, "raw", out.getvalue(), {"format": "png"}))
    with Image.open(io.BytesIO(image)) as opened:
        assert opened.mode == "RGB" and "icc_profile" not in opened.info


# --- limits of the raw answer -------------------------------------------------------------------


@pytest.mark.parametrize(("as_base64", "limit"), [(False, 20_000), (True, 26_000)])
def test_a_raw_answer_counts_base64_only_where_the_host_is_a_lambda(as_base64: bool, limit: int) -> None:
    png = encoded(crop(), "png")
    with serving(local_app(settings(binary_as_base64=as_base64, max_response_bytes=limit))) as url:
        response = send(url, "raw", png, {"scale": 4, "format": "png"}, accept="image/png")
        assert_error(response, 413, "as an image answer", f"the limit is {limit:,} bytes")
        fits = send(url, "raw", png, {"scale": 1, "format": "png"}, accept="image/png")
        assert fits.status_code == 200 and fits.headers["content-type"] == "image/png"


# --- the Lambda handler with API Gateway's binary events ----------------------------------------


@pytest.fixture(scope="module")
def lambda_handler():
    return load_lambda("lambda_sr.handler")


def multipart_body(image: bytes, fields: dict[str, str], boundary: str = "xYzZY") -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.heic"\r\n'
        "Content-Type: image/heic\r\n\r\n".encode()
        + image
        + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def test_lambda_handler_takes_a_raw_heic_body_and_answers_raw_avif(lambda_handler) -> None:
    event = api_gateway_event(
        encoded(crop(), "heic"),
        headers={"Content-Type": "image/heic", "Accept": "image/avif"},
        query={"scale": "2.5", "format": "avif"},
    )
    answer = lambda_handler(event, LambdaContext())
    assert answer["statusCode"] == 200, answer["body"][:300]
    assert answer["isBase64Encoded"] is True and answer["headers"]["content-type"] == "image/avif"
    info = codec.probe(base64.b64decode(answer["body"]))
    assert (info.format, info.width, info.height) == ("avif", 160, 120)
    assert answer["headers"]["x-result-scale"] == "2.5"


def test_lambda_handler_takes_a_multipart_form(lambda_handler) -> None:
    body = multipart_body(encoded(crop(), "heic"), {"width": "80", "format": "webp", "strip_metadata": "true"})
    event = api_gateway_event(body, headers={"Content-Type": "multipart/form-data; boundary=xYzZY"})
    answer = lambda_handler(event, LambdaContext())
    assert answer["statusCode"] == 200, answer["body"][:300]
    result = json.loads(answer["body"])
    assert (result["format"], result["width"], result["height"]) == ("webp", 80, 60)


def test_lambda_handler_lists_models_and_refuses_an_unknown_content_type(lambda_handler) -> None:
    listed = lambda_handler(api_gateway_event(None, method="GET", path="/models"), LambdaContext())
    assert listed["statusCode"] == 200
    assert "realesr-animevideov3" in [model["name"] for model in json.loads(listed["body"])["models"]]
    refused = lambda_handler(api_gateway_event("<a/>", headers={"Content-Type": "application/xml"}), LambdaContext())
    assert refused["statusCode"] == 415 and json.loads(refused["body"])["code"] == "unsupported_media_type"
    long_query = lambda_handler(
        api_gateway_event(encoded(crop(), "png"), headers={"Content-Type": "image/png"}, query={"format": "x" * 5000}),
        LambdaContext(),
    )
    assert long_query["statusCode"] == 400 and "query string" in json.loads(long_query["body"])["message"]
