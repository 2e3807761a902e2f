"""A bounded load run: 8 concurrent clients against one server process on 127.0.0.1.

The server runs in a subprocess (``local_app`` under uvicorn, realesr-animevideov3
weights) with ``workers=1, queue_size=2``: three requests in progress at most,
so eight clients posting in a loop must meet 429s. Each client posts small
crops of the astronaut photo (PNG or JPEG, scale 2 or 4) until the run's time
is up or it reaches its hard request cap; after a 429 it waits 50 ms (not the
full Retry-After: the point is to keep the server at capacity).

Asserted: every request got an answer (sent == answered, no exception, no
timeout), every answer is a 200 whose image has the asked-for size and format
or a documented 429/503 JSON error, both 200s and 429s occurred, and the server
process's peak RSS (psutil, sampled every 100 ms) stayed under
``PEAK_RSS_LIMIT_MB`` and grew by less than ``RSS_GROWTH_LIMIT_MB`` over its
idle RSS.

The test runs ``LOAD_SECONDS`` (20 s); the issue's 60 s run is::

    SUPERRES_LOAD_SECONDS=60 pytest tests/test_load.py -s
"""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import jsonschema
import numpy as np
import psutil
import pytest

from conftest import SHARED, load_photo
from superres import codec
from superres.service.contract import schema

LOAD_SECONDS = float(os.environ.get("SUPERRES_LOAD_SECONDS") or 20)
CLIENTS = 8
#: Hard cap per client, whatever the server's speed: 25 requests a second of run time.
REQUEST_CAP_PER_CLIENT = int(25 * LOAD_SECONDS)
#: Peak resident memory (RSS) of the server process. On the 2-core CI machine it
#: is about 1.0 GB idle (importing torch alone is 0.7 GB of it; then OpenCV,
#: spandrel, the model) and peaked at about 1.05 GB in this run, 20 s or 60 s.
PEAK_RSS_LIMIT_MB = 1536
#: Peak RSS under load over the idle RSS after one warm-up request: what the
#: requests themselves cost (queued bodies, decoded tiles, results).
RSS_GROWTH_LIMIT_MB = 300
CLIENT_TIMEOUT = 60.0

SOURCE = Path(__file__).resolve().parents[1] / "source"
SERVER = """
import json, socket, sys
import torch, uvicorn
from superres.service.local import local_app
from superres.service.settings import ServiceSettings

torch.set_num_threads(2)
app = local_app(ServiceSettings.for_variant("local", **json.loads(sys.argv[1])))
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(256)
print(sock.getsockname()[1], flush=True)
uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
"""
SETTINGS = {
    "model_x4": "realesr-animevideov3",
    "model_dir": str(SHARED / "models"),
    "workers": 1,
    "queue_size": 2,
    "allow_loopback_urls": False,
}


@dataclass
class Server:
    url: str
    process: psutil.Process
    peak_rss: int = 0
    samples: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
                self.samples += 1
            except psutil.NoSuchProcess:
                return
            self.stop.wait(0.1)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SOURCE), os.environ.get("PYTHONPATH")]))}
    env = {k: v for k, v in env.items() if not k.startswith("SUPERRES_")}  # SETTINGS are the settings
    child = subprocess.Popen(
        [sys.executable, "-c", SERVER, json.dumps(SETTINGS)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/ping", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert child.poll() is None, "the server process exited"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        running = Server(url, psutil.Process(child.pid))
        sampler = threading.Thread(target=running.sample, daemon=True)
        sampler.start()
        yield running
        running.stop.set()
        sampler.join()
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@dataclass(frozen=True)
class Payload:
    body: bytes
    width: int
    height: int
    format: str
    scale: int


def payloads() -> list[Payload]:
    photo = load_photo("astronaut.png")
    rng = random.Random(7)
    made = []
    for index in range(32):
        width, height = rng.randint(24, 64), rng.randint(24, 64)
        top, left = rng.randint(0, 512 - height), rng.randint(0, 512 - width)
        fmt = ("png", "jpeg")[index % 2]
        scale = (2, 4)[(index // 2) % 2]
        data = codec.encode(np.ascontiguousarray(photo[top : top + height, left : left + width]), fmt)
        body = json.dumps({"img": base64.b64encode(data).decode(), "scale": scale}).encode()
        made.append(Payload(body, width, height, fmt, scale))
    return made


@dataclass
class Tally:
    sent: int = 0
    answered: int = 0
    statuses: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def check_answer(response: httpx.Response, payload: Payload) -> str | None:
    """None when the answer is one the contract allows under load; else what is wrong."""
    if response.status_code == 200:
        body = response.json()
        jsonschema.validate(body, schema("ResolutionResult"))
        info = codec.probe(base64.b64decode(body["result"]))
        expected = (payload.format, payload.width * payload.scale, payload.height * payload.scale)
        if (info.format, info.width, info.height) != expected:
            return f"200 with {(info.format, info.width, info.height)}, expected {expected}"
        return None
    if response.status_code in (429, 503):
        body = response.json()
        jsonschema.validate(body, schema("Error"))
        if set(body) != {"message", "code"} or response.headers.get("retry-after") is None:
            return f"{response.status_code} without the documented shape: {body} {dict(response.headers)}"
        return None
    return f"{response.status_code}: {response.text[:200]}"


def client(base_url: str, work: list[Payload], seed: int, end: float, tally: Tally) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=base_url, timeout=CLIENT_TIMEOUT) as http:
        for _ in range(REQUEST_CAP_PER_CLIENT):
            if time.monotonic() >= end:
                return
            payload = rng.choice(work)
            with tally.lock:
                tally.sent += 1
            try:
                response = http.post("/resolution", content=payload.body, headers={"content-type": "application/json"})
                problem = check_answer(response, payload)
            except Exception as error:  # noqa: BLE001 (timeouts, resets, bad JSON: all count against the server)
                with tally.lock:
                    tally.problems.append(f"{type(error).__name__}: {error}")
                continue
            with tally.lock:
                tally.answered += 1
                tally.statuses[response.status_code] += 1
                if problem:
                    tally.problems.append(problem)
            if response.status_code != 200:
                time.sleep(0.05)


def test_eight_clients_get_answers_and_memory_stays_bounded(server: Server) -> None:
    work = payloads()
    warm = httpx.post(server.url + "/resolution", content=work[0].body, timeout=CLIENT_TIMEOUT)
    assert check_answer(warm, work[0]) is None
    idle_rss = server.process.memory_info().rss

    tally = Tally()
    started = time.monotonic()
    end = started + LOAD_SECONDS
    threads = [
        threading.Thread(target=client, args=(server.url, work, seed, end, tally), daemon=True)
        for seed in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=LOAD_SECONDS + 2 * CLIENT_TIMEOUT)
    elapsed = time.monotonic() - started
    still_running = sum(thread.is_alive() for thread in threads)
    time.sleep(0.3)  # one more RSS sample after the last answer

    mb = 1024 * 1024
    print(
        f"\nload: {CLIENTS} clients, {LOAD_SECONDS:g} s planned, {elapsed:.1f} s taken; "
        f"sent {tally.sent}, answered {tally.answered}; statuses {dict(sorted(tally.statuses.items()))}; "
        f"{tally.statuses[200] / elapsed:.1f} results/s; server RSS idle {idle_rss / mb:.0f} MB, "
        f"peak {server.peak_rss / mb:.0f} MB over {server.samples} samples "
        f"(limits: {PEAK_RSS_LIMIT_MB} MB, growth {RSS_GROWTH_LIMIT_MB} MB)"
    )
    assert still_running == 0, "clients still waiting for answers"
    assert tally.problems == [], tally.problems[:10]
    assert tally.sent == tally.answered
    assert set(tally.statuses) <= {200, 429, 503}, tally.statuses
    assert tally.statuses[200] > 0 and tally.statuses[429] > 0, tally.statuses
    assert server.peak_rss < PEAK_RSS_LIMIT_MB * mb
    assert server.peak_rss - idle_rss < RSS_GROWTH_LIMIT_MB * mb
    # The server is still there and still serving.
    after = httpx.post(server.url + "/resolution", content=work[1].body, timeout=CLIENT_TIMEOUT)
    assert check_answer(after, work[1]) is None
