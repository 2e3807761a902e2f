"""Property-based tests of POST /resolution generated from the contract (schemathesis + Hypothesis).

Schemathesis reads source/superres/service/openapi.yaml and generates requests
for ``POST /resolution``: schema-violating ones (negative mode) and
schema-valid ones (positive mode), sent over real HTTP to the real local
server (uvicorn on 127.0.0.1, realesr-animevideov3 weights). Every answer is
checked by schemathesis against the contract (no 5xx, the status documented,
the content type and body valid against ResolutionResult or Error; negative
data rejected with a 4xx) and by the checks below (the exact error shape, and
what a schema-valid request may be refused for).

Positive bodies are sent a third as generated (random ``img``/``url``
strings, which the server must refuse with a documented 4xx), a third with
``img`` replaced by image magic bytes or a real image's head followed by
random bytes (a documented refusal, never a 5xx), and a third with ``img``
replaced by a real small image, which must come back 200 with the size and
format asked for. Limits keep every request small: 200 kB bodies, 64x64
inputs.

The examples are derandomized (the same ones on every run) and never shrunk,
so the run time is bounded; at least 500 requests are sent in all.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import load_photo
from servers import serving
from service_helpers import settings as service_settings
from superres import codec
from superres.service.contract import contract, schema
from superres.service.local import local_app
from superres.sizes import output_size
from test_hostile import Tripwire, tripwire  # noqa: F401 (a fixture: no lookups or connections beyond loopback)

NEGATIVE_EXAMPLES = 300
POSITIVE_EXAMPLES = 300
MINIMUM_REQUESTS = 500
MAX_SIDE = 64
DEPLOYMENT_MAX_SCALE = 8


def json_form_contract() -> dict[str, Any]:
    """The contract with /resolution's JSON body only: the fuzzing here is of fields and values
    (the query string's too); the raw and multipart bodies are bytes, which test_forms and the
    hostile corpus send with real images and hostile forms."""
    document = copy.deepcopy(contract())
    content = document["paths"]["/resolution"]["post"]["requestBody"]["content"]
    document["paths"]["/resolution"]["post"]["requestBody"]["content"] = {
        "application/json": content["application/json"]
    }
    return document


SCHEMA = schemathesis.openapi.from_dict(json_form_contract())
OPERATION = SCHEMA["/resolution"]["POST"]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)

#: Requests sent by this module, by kind and status.
SENT: dict[str, dict[int, int]] = {
    "negative": {},
    "positive-generated": {},
    "positive-noise-image": {},
    "positive-real-image": {},
}


def count(kind: str, status: int) -> None:
    SENT[kind][status] = SENT[kind].get(status, 0) + 1


@pytest.fixture(scope="module")
def base_url(tripwire: Tripwire) -> Iterator[str]:  # noqa: F811 (the fixture imported above)
    limits = {
        "max_request_bytes": 200_000,
        "max_response_bytes": 2_000_000,
        "max_input_pixels": MAX_SIDE * MAX_SIDE,
        "allow_loopback_urls": False,
    }
    with serving(local_app(service_settings(**limits))) as url:
        yield url


def assert_error_shape(response: Any) -> dict[str, Any]:
    body = response.json()
    jsonschema.validate(body, schema("Error"))
    assert set(body) == {"message", "code"} and all(isinstance(v, str) for v in body.values()), body
    return body


# --- negative: every schema violation is a 400 in the documented shape -------------------------


@settings(FUZZ, max_examples=NEGATIVE_EXAMPLES)
@given(case=OPERATION.as_strategy(generation_mode=GenerationMode.NEGATIVE))
def test_negative_data_is_rejected_in_the_documented_shape(case: schemathesis.Case, base_url: str) -> None:
    response = case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=60)
    count("negative", response.status_code)
    assert 400 <= response.status_code < 500, response.text[:300]
    assert_error_shape(response)


# --- positive: generated bodies and real images ------------------------------------------------


@st.composite
def real_images(draw: st.DrawFn) -> tuple[str, int, int, str]:
    """(img text, width, height, input format): a crop of the astronaut photo."""
    width = draw(st.integers(4, MAX_SIDE))
    height = draw(st.integers(4, MAX_SIDE))
    top = draw(st.integers(0, 512 - height))
    left = draw(st.integers(0, 512 - width))
    fmt = draw(st.sampled_from(["png", "jpeg", "webp", "bmp", "avif"]))
    data = codec.encode(np.ascontiguousarray(_photo()[top : top + height, left : left + width]), fmt)
    text = base64.b64encode(data).decode()
    if draw(st.booleans()):
        text = f"data:image/{fmt};base64," + text
    return text, width, height, fmt


MAGIC = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"GIF89a", b""]


@st.composite
def noise_images(draw: st.DrawFn) -> str:
    """Base64 of an image format's magic bytes, or a real image's head, then random bytes."""
    if draw(st.booleans()):
        head = draw(st.sampled_from(MAGIC))
    else:
        fmt = draw(st.sampled_from(["png", "jpeg", "webp", "bmp"]))
        real = codec.encode(np.ascontiguousarray(_photo()[:16, :16]), fmt)
        head = real[: draw(st.integers(0, len(real)))]
    return base64.b64encode(head + draw(st.binary(max_size=2000))).decode()


_PHOTO: list[np.ndarray] = []


def _photo() -> np.ndarray:
    if not _PHOTO:
        _PHOTO.append(load_photo("astronaut.png"))
    return _PHOTO[0]


#: What a schema-valid request may still be refused with, and why: bad base64, a url the
#: default policy refuses, face on a deployment without it (400); too big (413); not an
#: image (415); a url that could not be fetched (502).
REFUSALS_OF_VALID_REQUESTS = {
    400: {"bad_request", "url_not_allowed"},
    413: {"too_large"},
    415: {"unsupported_image"},
    502: {"url_fetch_failed"},
}


@settings(FUZZ, max_examples=POSITIVE_EXAMPLES)
@given(
    case=OPERATION.as_strategy(generation_mode=GenerationMode.POSITIVE),
    # Hypothesis draws the first choice most (None, about two in three): real images, which
    # must come back right, are listed twice.
    image=st.sampled_from([st.none(), real_images(), noise_images(), real_images()]).flatmap(lambda kind: kind),
)
def test_valid_requests_succeed_or_get_a_documented_refusal(
    case: schemathesis.Case, image: str | tuple[str, int, int, str] | None, base_url: str
) -> None:
    kind = {type(None): "positive-generated", str: "positive-noise-image", tuple: "positive-real-image"}[type(image)]
    assert isinstance(case.body, dict)
    if image is not None:
        case.body, case.query = for_an_image(case.body, case.query or {})
        case.body["img"] = image if isinstance(image, str) else image[0]
    response = case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=60)
    count(kind, response.status_code)
    if not isinstance(image, tuple):
        assert response.status_code in REFUSALS_OF_VALID_REQUESTS or response.status_code == 200, response.text[:300]
        if response.status_code != 200:
            error = assert_error_shape(response)
            assert error["code"] in REFUSALS_OF_VALID_REQUESTS[response.status_code], error
        return
    _, width, height, fmt = image
    assert response.status_code == 200, response.text[:300]
    options = {**case.body, **case.query}
    scale = float(options.get("scale", 2))
    expected_format = options.get("format") or {"bmp": "png", "heic": "jpeg"}.get(fmt, fmt)
    expected = (expected_format, *output_size(width, height, scale))
    if response.headers["content-type"][0].startswith("image/"):  # an Accept that prefers an image
        info = codec.probe(response.content)
        fields = (response.headers["x-result-width"][0], response.headers["x-result-height"][0])
        assert (info.format, info.width, info.height) == expected and fields == tuple(map(str, expected[1:]))
        return
    result = response.json()
    jsonschema.validate(result, schema("ResolutionResult"))
    info = codec.probe(base64.b64decode(result["result"]))
    assert (info.format, info.width, info.height) == expected
    assert (result["format"], result["width"], result["height"]) == expected
    assert result["scale"] == scale
    assert result["faces"] == 0 and result.get("context") == case.body.get("context")


def for_an_image(body: dict[str, Any], query: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A generated body and query string that a real image must get a 200 with: no url, no face
    or bucket (this deployment has neither), no model name (generated names are not installed),
    each option in one place, and a scale (not a width or height) within this deployment's."""
    kept = {key: value for key, value in body.items() if key not in ("url", "model", "width", "height")}
    kept.update(face=False, output="inline")
    extra = {
        key: value
        for key, value in query.items()
        if key not in kept and key not in ("model", "width", "height", "face", "output")
    }
    for options in (kept, extra):
        if "scale" in options and not 1 <= float(options["scale"]) <= DEPLOYMENT_MAX_SCALE:
            del options["scale"]
    return kept, extra


# --- afterwards --------------------------------------------------------------------------------


def test_enough_requests_were_sent_and_the_server_still_serves(base_url: str) -> None:
    """Runs last: the totals, and a plain valid request still gets its 200."""
    total = sum(sum(by_status.values()) for by_status in SENT.values())
    print(f"\nschemathesis requests: {total}", {kind: dict(sorted(s.items())) for kind, s in SENT.items()})
    assert total >= MINIMUM_REQUESTS, SENT
    assert SENT["positive-real-image"].get(200, 0) > 50, SENT
    png = codec.encode(np.ascontiguousarray(_photo()[:32, :48]), "png")
    response = httpx.post(
        base_url + "/resolution", json={"img": base64.b64encode(png).decode(), "scale": 4}, timeout=60
    )
    assert response.status_code == 200, response.text[:300]
    info = codec.probe(base64.b64decode(response.json()["result"]))
    assert (info.width, info.height) == (192, 128)
