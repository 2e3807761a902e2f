"""The page that tries the API (GET /), in real headless Chromium against the real local server.

Playwright for Python drives Debian's Chromium (/usr/bin/chromium): Playwright's own browser
download does not work here, so it is never used. The server runs realesr-animevideov3 (real
weights); the whole 512x512 astronaut goes through it at scale 2.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import ConsoleMessage, Page, Playwright, Route, expect, sync_playwright

from conftest import SHARED
from service_helpers import settings
from superres import codec
from superres.service.local import local_app, serving

#: `make test` installs it; a missing browser fails the page tests, it never skips them.
CHROMIUM = Path("/usr/bin/chromium")

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
ASTRONAUT = SHARED / "images" / "astronaut.png"
#: As root, on a machine with no network but the package registries (headless=True adds --headless).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: The real model on 512x512 at 2 threads takes seconds; leave room for a slow CI machine.
UPSCALE_TIMEOUT_MS = 180_000


#: The sign the page writes sizes and scales with ("512 \u00d7 512", "4\u00d7").
TIMES = "\u00d7"


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serving(local_app(settings(allow_loopback_urls=False))) as url:
        yield url


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium)"
    )
    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def page(playwright: Playwright, tmp_path: Path) -> Iterator[Page]:
    """A fresh profile per test; console errors and page errors are collected on page.problems."""
    context = playwright.chromium.launch_persistent_context(
        tmp_path / "profile",
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1280, "height": 900},
        accept_downloads=True,
    )
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: _console_problem(message, problems))
    page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
    page.problems = problems  # type: ignore[attr-defined]  # the fixture hangs the page's console problems on it
    try:
        yield page
    finally:
        context.close()


def _console_problem(message: ConsoleMessage, problems: list[str]) -> None:
    # Failed requests the tests cause on purpose are logged by Chromium as console errors too.
    if message.type == "error" and "Failed to load resource" not in message.text:
        problems.append(f"console: {message.text}")


def upscale(page: Page) -> None:
    page.get_by_role("button", name="Upscale").click()


# --- the server's routes -----------------------------------------------------------------------


def test_the_page_and_its_assets_are_served(base_url: str) -> None:
    index = httpx.get(base_url + "/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in index.headers["content-security-policy"]
    for asset, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        served = httpx.get(f"{base_url}/web/{asset}")
        assert served.status_code == 200 and kind in served.headers["content-type"], asset
        assert f'"web/{asset}"' in index.text  # relative: works under a stage path or as static files
    # Nothing from another origin: every src/href is local.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", index.text)
    missing = httpx.get(base_url + "/web/nothing.js")
    assert missing.status_code == 404 and set(missing.json()) == {"message", "code"}


# --- in the browser ----------------------------------------------------------------------------


def test_upscale_the_astronaut_at_scale_2(page: Page, base_url: str) -> None:
    info = codec.probe(ASTRONAUT.read_bytes(), 10**8)
    width, height = info.width, info.height
    assert (width, height) == (512, 512)
    page.goto(base_url + "/")
    expect(page).to_have_title(re.compile("super-resolution"))
    page.get_by_label("Drop an image here, or choose a file").set_input_files(ASTRONAUT)
    page.get_by_label(f"2{TIMES}").check()
    upscale(page)

    # While waiting: the spinner and the elapsed timer; the button cannot be pressed twice.
    expect(page.get_by_role("status")).to_contain_text("Upscaling…")
    expect(page.locator("#spinner")).to_be_visible()
    expect(page.get_by_role("button", name="Upscale")).to_be_disabled()

    expect(page.locator("#result")).to_be_visible(timeout=UPSCALE_TIMEOUT_MS)
    result = page.locator("#result-image")
    natural = result.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert natural == [2 * width, 2 * height]
    expect(page.locator("#fact-output")).to_contain_text(f"1024 {TIMES} 1024")
    expect(page.locator("#fact-input")).to_have_text(f"512 {TIMES} 512")
    expect(page.locator("#fact-time")).to_contain_text(re.compile(r"\d+\.\d\d s computing, \d+\.\d\d s in all"))
    expect(page.locator("#fact-model")).to_have_text("realesr-animevideov3")
    expect(page.get_by_role("status")).to_contain_text(f"Done: 1024 {TIMES} 1024")
    expect(page.locator("#spinner")).to_be_hidden()

    # Before and after are drawn at the same displayed size, over each other.
    before_box = page.locator("#before-image").bounding_box()
    after_box = result.bounding_box()
    assert before_box and after_box and before_box == after_box
    assert after_box["width"] > 300 and abs(after_box["width"] - after_box["height"]) < 1
    before = page.locator("#before-image").evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert before == [width, height]

    # The slider moves the edge between them.
    page.get_by_label("Before / after").fill("30")
    assert page.locator("#frame").evaluate("f => f.style.getPropertyValue('--pos')") == "30%"
    page.get_by_label("Before / after").fill("50")

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "web.png", full_page=True)

    # The download is the API's result, named after the input.
    link = page.get_by_role("link", name=re.compile("Download"))
    assert link.get_attribute("download") == "astronaut_x2.png"
    assert (link.get_attribute("href") or "").startswith("blob:")
    with page.expect_download() as download_info:
        link.click()
    download = download_info.value
    assert download.suggested_filename == "astronaut_x2.png"
    pixels, info = codec.decode(Path(download.path()).read_bytes())
    assert (info.format, info.width, info.height) == ("png", 1024, 1024)
    assert pixels.shape[:2] == (1024, 1024)

    assert page.problems == []  # type: ignore[attr-defined]  # hung on the page by the fixture


def test_a_text_file_named_png_shows_the_api_message(page: Page, base_url: str, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    fake = tmp_path / "notes.png"
    fake.write_text("these are my notes, not a picture\n")
    expected = httpx.post(
        base_url + "/resolution", json={"img": base64.b64encode(fake.read_bytes()).decode(), "scale": 2}
    )
    assert expected.status_code == 415
    message = expected.json()["message"]

    page.goto(base_url + "/")
    page.get_by_label("Drop an image here, or choose a file").set_input_files(fake)
    upscale(page)
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible(timeout=30_000)
    expect(alert).to_contain_text("HTTP 415")
    expect(alert).to_contain_text("unsupported_image")
    expect(alert).to_contain_text(message)
    expect(page.locator("#result")).to_be_hidden()
    expect(page.get_by_role("button", name="Upscale")).to_be_enabled()
    page.screenshot(path=ARTIFACTS / "web-error.png")
    assert page.problems == []  # type: ignore[attr-defined]  # hung on the page by the fixture


def test_a_dropped_file(page: Page, base_url: str, astronaut) -> None:
    """Drag and drop onto the zone: a real 64x48 crop, upscaled 4x by the real model."""
    crop = codec.encode(np.ascontiguousarray(astronaut[100:148, 150:214]), "png")
    page.goto(base_url + "/")
    transfer = page.evaluate_handle(
        """bytes => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], "crop.png", { type: "image/png" }));
            return transfer;
        }""",
        list(crop),
    )
    page.locator("#drop").dispatch_event("dragenter", {"dataTransfer": transfer})
    expect(page.locator("#drop")).to_have_class(re.compile("dragging"))
    page.locator("#drop").dispatch_event("drop", {"dataTransfer": transfer})
    expect(page.locator("#drop")).not_to_have_class(re.compile("dragging"))
    expect(page.locator("#chosen")).to_contain_text("crop.png")
    page.get_by_label(f"4{TIMES}").check()
    upscale(page)
    expect(page.locator("#result")).to_be_visible(timeout=UPSCALE_TIMEOUT_MS)
    assert page.locator("#result-image").evaluate("img => [img.naturalWidth, img.naturalHeight]") == [256, 192]
    expect(page.get_by_role("link", name=re.compile("Download"))).to_have_attribute("download", "crop_x4.png")
    assert page.problems == []  # type: ignore[attr-defined]  # hung on the page by the fixture


def test_nothing_chosen_says_so(page: Page, base_url: str) -> None:
    page.goto(base_url + "/")
    upscale(page)
    expect(page.get_by_role("alert")).to_contain_text("Choose or drop an image file, or give an image URL")


def test_failures_that_are_not_json(page: Page, base_url: str, tmp_path: Path) -> None:
    """API Gateway's HTML error page, and an endpoint nobody answers at."""
    image = tmp_path / "small.png"
    image.write_bytes(codec.encode(np.zeros((8, 8, 3), np.uint8), "png"))
    gateway = "https://gateway.example.test/prod/resolution"
    page.route(
        gateway,
        lambda route: route.fulfill(
            status=502,
            content_type="text/html",
            headers={"access-control-allow-origin": "*"},
            body="<html><head><title>502</title></head><body><h1>Bad Gateway</h1>"
            "<p>The upstream server is unreachable.</p></body></html>",
        ),
    )
    page.goto(base_url + "/")
    page.get_by_label("Drop an image here, or choose a file").set_input_files(image)
    page.get_by_text("Deployed API (endpoint and key)").click()
    page.get_by_label("Endpoint").fill(gateway)
    upscale(page)
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("HTTP 502", timeout=30_000)
    expect(alert).to_contain_text("not the API's JSON error")
    expect(alert).to_contain_text("Bad Gateway The upstream server is unreachable.")
    expect(alert).not_to_contain_text("<h1>")

    page.get_by_label("Endpoint").fill("http://127.0.0.1:9/resolution")  # discard port: refused
    upscale(page)
    expect(alert).to_contain_text("Could not reach http://127.0.0.1:9/resolution", timeout=30_000)
    expect(alert).to_contain_text("CORS")
    expect(page.get_by_role("button", name="Upscale")).to_be_enabled()


def test_a_deployed_endpoint_gets_the_api_key(page: Page, base_url: str, tmp_path: Path) -> None:
    """The endpoint and key fields: the request goes there, with x-api-key, and its answer is shown."""
    image = tmp_path / "tiny photo.jpg"
    image.write_bytes(codec.encode(np.full((6, 10, 3), 120, np.uint8), "jpeg"))
    answer = codec.encode(np.full((24, 40, 3), 200, np.uint8), "jpeg")
    seen: list[dict] = []
    endpoint = "https://abc123.execute-api.example.test/prod/resolution"

    def deployed(route: Route) -> None:
        seen.append({"headers": route.request.headers, "body": json.loads(route.request.post_data or "{}")})
        route.fulfill(
            status=200,
            content_type="application/json",
            headers={"access-control-allow-origin": "*"},
            body=json.dumps(
                {
                    "result": base64.b64encode(answer).decode(),
                    "format": "jpeg",
                    "width": 40,
                    "height": 24,
                    "scale": 4,
                    "model": "RealESRGAN_x4plus",
                    "faces": 0,
                    "seconds": 0.5,
                }
            ),
        )

    page.route(endpoint, deployed)
    page.goto(base_url + "/")
    page.get_by_label("Drop an image here, or choose a file").set_input_files(image)
    page.get_by_label(f"4{TIMES}").check()
    page.get_by_label("Restore faces (GFPGAN)").check()
    page.get_by_text("Deployed API (endpoint and key)").click()
    page.get_by_label("Endpoint").fill(endpoint)
    page.get_by_label("API key").fill("my-secret-key")
    upscale(page)
    expect(page.locator("#result")).to_be_visible(timeout=30_000)

    assert len(seen) == 1
    assert seen[0]["headers"]["x-api-key"] == "my-secret-key"
    assert seen[0]["body"]["scale"] == 4 and seen[0]["body"]["face"] is True
    assert base64.b64decode(seen[0]["body"]["img"]) == image.read_bytes()  # bare base64, no data: prefix
    expect(page.get_by_role("link", name=re.compile("Download"))).to_have_attribute("download", "tiny_photo_x4.jpg")
    expect(page.locator("#fact-output")).to_contain_text(f"40 {TIMES} 24 (4{TIMES}, jpeg")
    expect(page.locator("#fact-input")).to_have_text(f"10 {TIMES} 6")


def test_a_url_is_sent_as_url(page: Page, base_url: str) -> None:
    """A URL the server cannot fetch: the API's 502 (or 400) message is shown, not a crash."""
    page.goto(base_url + "/")
    page.get_by_label("Image URL").fill("http://127.0.0.1:9/photo.png")
    upscale(page)
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("HTTP 400", timeout=30_000)  # loopback is refused by the local defaults
    expect(alert).to_contain_text("url")
