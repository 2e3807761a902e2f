"""POST /resolution through real HTTP (uvicorn on 127.0.0.1) and through the Lambda handler.

Every status of the contract's error list is produced here by a real request.
The service runs realesr-animevideov3 (real weights) so requests finish in
well under a second on CPU.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jsonschema
import numpy as np
import pytest
import yaml
from starlette.applications import Starlette

from conftest import SHARED, load_photo, with_round_alpha, write_random_gfpgan
from lambda_events import LambdaContext, api_gateway_event
from servers import file_server, serving
from service_helpers import HeldBackend, assert_error, b64, load_lambda, post, settings
from superres import codec
from superres.service.app import create_app
from superres.service.backends import Backend
from superres.service.contract import schema
from superres.service.local import LocalBackend, local_app
from superres.service.settings import ServiceSettings


@pytest.fixture(scope="module")
def photo_png(astronaut) -> bytes:
    return codec.encode(np.ascontiguousarray(astronaut[100:164, 150:230]), "png")


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serving(local_app(settings(max_request_bytes=2_000_000))) as url:
        yield url


def decode_result(response: httpx.Response) -> tuple[np.ndarray, codec.ImageInfo]:
    assert response.status_code == 200, response.text
    body = response.json()
    jsonschema.validate(body, schema("ResolutionResult"))
    return codec.decode(base64.b64decode(body["result"]))


# --- 200 ---------------------------------------------------------------------------------------


def test_png_in_png_out_at_scale_4(base_url: str, photo_png: bytes) -> None:
    _, info = decode_result(post(base_url, {"img": b64(photo_png), "scale": 4}))
    assert (info.format, info.width, info.height) == ("png", 320, 256)


def test_default_scale_is_2_and_the_stage_path_works(base_url: str, photo_png: bytes) -> None:
    response = post(base_url, {"img": b64(photo_png)}, path="/prod/resolution")
    _, info = decode_result(response)
    assert (info.width, info.height) == (160, 128)
    assert response.json()["scale"] == 2 and response.headers["x-request-id"]


def test_jpeg_in_jpeg_out_with_a_data_url_prefix(base_url: str, astronaut) -> None:
    jpeg = codec.encode(np.ascontiguousarray(astronaut[:48, :48]), "jpeg")
    _, info = decode_result(post(base_url, {"img": "data:image/jpeg;base64," + b64(jpeg), "scale": 2}))
    assert info.format == "jpeg"


def test_alpha_survives_and_format_can_be_chosen(base_url: str, astronaut) -> None:
    rgba = with_round_alpha(astronaut[100:140, 150:200])
    pixels, info = decode_result(post(base_url, {"img": b64(codec.encode(rgba, "png")), "format": "webp"}))
    assert info.format == "webp" and pixels.shape == (80, 100, 4)
    assert pixels[0, 0, 3] < 10 and pixels[40, 50, 3] > 245  # transparent corner, opaque centre


def test_url_wins_over_img(base_url: str, photo_png: bytes) -> None:
    with file_server({"/photo.png": (200, photo_png)}) as images:
        response = post(base_url, {"url": images + "/photo.png", "img": "not even base64!"})
    _, info = decode_result(response)
    assert (info.width, info.height) == (160, 128)


def test_sagemaker_routes(base_url: str, photo_png: bytes) -> None:
    assert httpx.get(base_url + "/ping").json()["status"] == "ok"
    decode_result(post(base_url, {"img": b64(photo_png)}, path="/invocations"))


def test_the_contract_is_served(base_url: str, photo_png: bytes) -> None:
    served = httpx.get(base_url + "/openapi.yaml")
    assert served.status_code == 200 and served.headers["content-type"].startswith("application/yaml")
    document = yaml.safe_load(served.text)
    assert document["paths"]["/resolution"]["post"]["operationId"] == "resolution"
    # The served schemas are the ones this server answers by.
    schemas = document["components"]["schemas"]
    answer = post(base_url, {"img": b64(photo_png)})
    assert answer.status_code == 200, answer.text
    jsonschema.validate(answer.json(), schemas["ResolutionResult"])
    jsonschema.validate(post(base_url, {"img": 42}).json(), schemas["Error"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"img": 42}, schemas["ResolutionRequest"])


def test_face_restoration_on_a_deployment_with_a_face_model(tmp_path, astronaut) -> None:
    for name in ("realesr-animevideov3.ncnn-fp16.pth", "face_detection_yunet_2026may.onnx"):
        (tmp_path / name).symlink_to(SHARED / "models" / name)
    write_random_gfpgan(tmp_path / "GFPGANv1.4.pth")
    face = codec.encode(np.ascontiguousarray(astronaut[30:190, 140:300]), "png")
    no_face = codec.encode(load_photo("rocket.jpg")[:160, :160], "png")
    with serving(local_app(settings(model_dir=tmp_path, face_enabled=True))) as url:
        restored = post(url, {"img": b64(face), "scale": 2, "face": True})
        _, info = decode_result(restored)
        assert (info.width, info.height) == (320, 320) and restored.json()["faces"] == 1
        plain = post(url, {"img": b64(no_face), "face": True})
        assert plain.status_code == 200 and plain.json()["faces"] == 0
        assert post(url, {"img": b64(face), "scale": 2}).json()["faces"] == 0


# --- 400 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        ({}, "url or img"),
        ({"img": "aGVsbG8=", "scale": 9}, "scale"),
        ({"img": "aGVsbG8=", "scale": "four"}, "scale"),
        ({"img": "aGVsbG8=", "scale": 0.5}, "scale"),
        ({"img": "aGVsbG8=", "face": "yes"}, "face"),
        ({"img": "aGVsbG8=", "colour": "blue"}, "colour"),
        ({"img": 42}, "img"),
        ({"img": "%%% not base64 %%%"}, "base64"),
        ({"img": "aGVsbG8=", "face": True}, "face enhancement is not enabled"),
        ({"url": "ftp://example.com/a.png"}, "url"),
        ({"url": "http://169.254.169.254/latest/meta-data/"}, "link-local"),
        ({"url": "https://bucket.s3.us-east-1.amazonaws.com/key.png"}, "give an S3 object as s3://bucket/key"),
        ({"url": "https://sts.cn-north-1.amazonaws.com.cn/"}, "AWS service endpoint"),
    ],
    ids=lambda value: str(value)[:40],
)
def test_bad_requests_are_400(base_url: str, payload: object, fragment: str) -> None:
    assert_error(post(base_url, payload), 400, fragment)


# --- 413 ---------------------------------------------------------------------------------------


def test_413_request_bytes(base_url: str) -> None:
    assert_error(post(base_url, {"img": "A" * 2_100_000}), 413, "limit is 2,000,000 bytes")


def test_413_limits_of_a_small_deployment(photo_png: bytes, astronaut) -> None:
    big = codec.encode(np.ascontiguousarray(astronaut[:200, :200]), "png")
    limits = settings(
        max_input_pixels=100 * 100,
        max_output_pixels=150 * 150,
        max_response_bytes=20_000,
        time_budget_seconds=5,
        throughput_mflops=1.0,
    )
    with serving(local_app(limits)) as url:
        assert_error(post(url, {"img": b64(big)}), 413, "200x200 = 40,000 pixels; the limit is 10,000 pixels")
        assert_error(post(url, {"img": b64(photo_png), "scale": 4}), 413, "the limit is 22,500 pixels")
        assert_error(post(url, {"img": b64(photo_png)}), 413, "time budget is 5 s")
    with serving(local_app(settings(max_response_bytes=20_000))) as url:
        assert_error(post(url, {"img": b64(photo_png), "scale": 4}), 413, "the limit is 20,000 bytes")


# --- 415 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"plain text", b"GIF89a" + bytes(100), b"\x89PNG\r\n\x1a\n" + bytes(30)])
def test_not_an_image_is_415(base_url: str, data: bytes) -> None:
    assert_error(post(base_url, {"img": b64(data)}), 415)


# --- 429, 502, 504 -----------------------------------------------------------------------------


def held_app(chosen: ServiceSettings, **hold: bool) -> tuple[Starlette, HeldBackend]:
    """The app of ``chosen`` on its real backend, held on an event."""
    backend = HeldBackend(LocalBackend(chosen), **hold)
    return create_app(chosen, backend), backend


def test_a_burst_past_the_queue_gets_429_at_once(photo_png: bytes) -> None:
    app, backend = held_app(settings(workers=1, queue_size=0))
    with serving(app) as url:
        first: list[httpx.Response] = []
        worker = threading.Thread(target=lambda: first.append(post(url, {"img": b64(photo_png), "scale": 4})))
        worker.start()
        try:
            backend.wait_entered()  # the first request holds the only place
            started = time.monotonic()
            assert_error(post(url, {"img": b64(photo_png)}), 429, "busy")
            assert time.monotonic() - started < 1.0
        finally:
            backend.release.set()
            worker.join()
    _, info = decode_result(first[0])
    assert (info.width, info.height) == (320, 256)


def test_unfetchable_url_is_502(base_url: str) -> None:
    with file_server({}) as images:
        assert_error(post(base_url, {"url": images + "/missing.png"}), 502, "404")


def test_running_past_the_time_budget_is_504(photo_png: bytes) -> None:
    # Admitted (the prediction is far inside the budget), then computed past it.
    app, _ = held_app(settings(time_budget_seconds=0.5, throughput_mflops=1e12), past_deadline=True)
    with serving(app) as url:
        assert_error(post(url, {"img": b64(photo_png), "scale": 4}), 504, "time budget")


def test_unknown_routes_keep_the_error_shape(base_url: str) -> None:
    assert_error(httpx.get(base_url + "/nowhere"), 404)
    not_allowed = httpx.get(base_url + "/resolution")
    assert_error(not_allowed, 405)
    assert not_allowed.headers["allow"] == "POST"


# --- the Lambda handler with API Gateway's event -----------------------------------------------


def load_lambda_handler(wrap: Callable[[Backend], Backend] | None = None, **env: str) -> Any:
    return load_lambda("lambda_sr.handler", env, wrap)


@pytest.fixture(scope="module")
def lambda_handler():
    return load_lambda_handler()


def test_lambda_handler_502_for_an_unfetchable_url() -> None:
    handler = load_lambda_handler(SUPERRES_ALLOW_LOOPBACK_URLS="true")
    with file_server({}) as images:
        answer = handler(api_gateway_event(json.dumps({"url": images + "/gone.png"})), LambdaContext())
    assert answer["statusCode"] == 502 and json.loads(answer["body"])["code"] == "url_fetch_failed"


def test_lambda_handler_504_past_the_time_budget(photo_png: bytes) -> None:
    handler = load_lambda_handler(
        lambda real: HeldBackend(real, past_deadline=True),
        SUPERRES_TIME_BUDGET_SECONDS="0.5",
        SUPERRES_THROUGHPUT_MFLOPS="1e12",
    )
    answer = handler(api_gateway_event(json.dumps({"img": b64(photo_png), "scale": 4})), LambdaContext())
    assert answer["statusCode"] == 504 and json.loads(answer["body"])["code"] == "time_budget_exceeded"


@pytest.mark.parametrize("base64_body", [False, True])
def test_lambda_handler_answers_200(lambda_handler, photo_png: bytes, base64_body: bool) -> None:
    body = json.dumps({"img": b64(photo_png), "scale": 2})
    answer = lambda_handler(api_gateway_event(body, base64_body=base64_body), LambdaContext())
    assert answer["statusCode"] == 200
    result = json.loads(answer["body"])
    _, info = codec.decode(base64.b64decode(result["result"]))
    assert (info.width, info.height) == (160, 128)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("{oops", 400),
        (json.dumps({"img": "aGVsbG8=", "scale": 9}), 400),
        (json.dumps({"img": b64(b"definitely not an image")}), 415),
        (json.dumps({"url": "http://127.0.0.1:9/x.png"}), 400),  # loopback: refused in Lambda
    ],
)
def test_lambda_handler_errors(lambda_handler, body: str, status: int) -> None:
    answer = lambda_handler(api_gateway_event(body), LambdaContext())
    assert answer["statusCode"] == status
    error = json.loads(answer["body"])
    jsonschema.validate(error, schema("Error"))


def test_lambda_variant_limits_apply(lambda_handler, astronaut) -> None:
    big = codec.encode(np.ascontiguousarray(astronaut[:420, :420]), "png")
    answer = lambda_handler(api_gateway_event(json.dumps({"img": b64(big)})), LambdaContext())
    assert answer["statusCode"] == 413
    assert "the limit is 160,000 pixels" in json.loads(answer["body"])["message"]


# --- CORS ---------------------------------------------------------------------------------------


def test_answers_name_the_allowed_origin_only_when_one_is_set() -> None:
    """CorsAllowOrigin reaches the function as SUPERRES_CORS_ORIGIN: its answers (errors too)
    carry the header a browser needs to read them; without it, none."""
    origin = "https://app.example.com"

    def from_page(url: str, page: str) -> httpx.Response:
        body = json.dumps({"img": "aGVsbG8=", "scale": 9})
        return httpx.post(
            url + "/resolution", content=body, headers={"content-type": "application/json", "origin": page}
        )

    with serving(local_app(settings(cors_origin=origin))) as url:
        answer = from_page(url, origin)
        assert_error(answer, 400, "scale")
        assert answer.headers["access-control-allow-origin"] == origin
        assert "x-request-id" in answer.headers["access-control-expose-headers"]
        other = from_page(url, "https://evil.example")
        assert "access-control-allow-origin" not in other.headers
    with serving(local_app(settings())) as url:
        answer = from_page(url, origin)
        assert "access-control-allow-origin" not in answer.headers
