"""The Neuron runtime behind the tiler, with a CPU TorchScript trace standing in for the Neuron
compilers (torch-neuron and torch-neuronx exist only in AWS's Neuron images): the compiled
network only ever sees the shape it was compiled for, its pictures are the eager network's, and
until its compile (on a thread of its own) is done every request is a 503 with a Retry-After,
never a hang. Served by the real stack under Python 3.10 and torch 1.13: test_sagemaker_neuron.py.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from bench.metrics import psnr

from conftest import SHARED, load_photo
from lambda_events import LambdaContext, api_gateway_event
from sagemaker_runtime import FakeRuntime, invoke_endpoint_lambda
from servers import serving
from service_helpers import b64
from superres import codec
from superres.engine import Upscaler
from superres.errors import ModelCompileError, ModelWarmingUpError
from superres.manifest import get_spec
from superres.runtimes import neuron_runner
from superres.runtimes.torch_runner import load_descriptor
from superres.service.backends import model_error
from superres.service.local import local_app
from superres.service.settings import ServiceSettings
from superres.store import ModelStore
from superres.tiling import TileConfig

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # the CPU stand-in traces with torch.jit

MODEL = "realesr-animevideov3"
TILES = TileConfig(tile=32, pad=8, fixed_shape=True, batch=3)
CPU_TRACE = neuron_runner.COMPILERS["cpu-trace"]


def weights() -> Path:
    return ModelStore(SHARED / "models").path(get_spec(MODEL))


def neuron_upscaler(
    cache: Path, compiler: neuron_runner.NeuronCompiler = CPU_TRACE
) -> tuple[Upscaler, neuron_runner.NeuronRunner]:
    """The tiler over a Neuron runner (compiling as it is made), and that runner."""
    descriptor = load_descriptor(weights(), get_spec(MODEL))
    runner = neuron_runner.NeuronRunner(descriptor, name=MODEL, tiles=TILES, compiler=compiler, cache_dir=cache)
    return Upscaler(runner, name=MODEL, tiles=TILES), runner


class Recording:
    """The compiled module, recording the shape of every batch it is called with."""

    def __init__(self, module: neuron_runner.Module) -> None:
        self.module = module
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(batch.shape))
        return self.module(batch)


def test_the_compiled_network_only_ever_sees_the_compiled_shape(tmp_path: Path) -> None:
    """Images smaller than a window, and sizes whose last batch is short: every call is
    ``batch`` windows of ``window`` px, and the pictures are the eager fp32 network's."""
    compiled, runner = neuron_upscaler(tmp_path)
    assert runner.wait(120) and runner.module is not None
    recording = Recording(runner.module)
    runner.module = recording
    eager = Upscaler.from_file(weights(), get_spec(MODEL), runtime="torch", device="cpu", bf16=False, tiles=TILES)
    photo = load_photo("astronaut.png")
    for height, width in [(20, 30), (80, 96), (70, 101)]:  # 1 window; 9 (3 full batches); 12 (last one short)
        pixels = np.ascontiguousarray(photo[100 : 100 + height, 140 : 140 + width, :3])
        out = compiled.upscale(pixels, 4)
        assert out.shape == (height * 4, width * 4, 3)
        assert psnr(out, eager.upscale(pixels, 4)) >= 60
    assert len(recording.shapes) == 1 + 3 + 4
    assert set(recording.shapes) == {(TILES.batch, 3, TILES.window, TILES.window)}


def test_the_compiled_networks_raw_output_is_clamped(tmp_path: Path) -> None:
    """The traced network is spandrel's raw module (the descriptor's clamp is not in it): the
    runner clamps, so highlights saturate instead of wrapping around."""
    doubled = dataclasses.replace(CPU_TRACE, load=lambda path: lambda batch: CPU_TRACE.load(path)(batch) * 2)
    compiled, runner = neuron_upscaler(tmp_path, doubled)
    assert runner.wait(120)
    plain, _ = neuron_upscaler(tmp_path)
    crop = np.ascontiguousarray(load_photo("astronaut.png")[100:164, 140:204, :3])
    out, reference = compiled.upscale(crop, 4).astype(int), plain.upscale(crop, 4).astype(int)
    assert np.abs(out - np.minimum(2 * reference, 255)).max() <= 1


def test_a_batch_of_another_shape_is_refused(tmp_path: Path) -> None:
    _, runner = neuron_upscaler(tmp_path)
    assert runner.wait(120)
    with pytest.raises(Exception, match="takes up to 3 windows of 48 px"):
        runner.run(np.zeros((1, 3, 40, 48), dtype=np.float32))
    with pytest.raises(Exception, match="takes up to 3 windows of 48 px"):
        runner.run(np.zeros((4, 3, 48, 48), dtype=np.float32))


@dataclasses.dataclass
class Blocked:
    """A compiler that traces only once ``release`` is set (or fails, with ``fail``)."""

    release: threading.Event = dataclasses.field(default_factory=threading.Event)
    fail: bool = False
    traces: int = 0

    def compiler(self) -> neuron_runner.NeuronCompiler:
        def trace(network: torch.nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
            self.traces += 1
            assert self.release.wait(60)
            if self.fail:
                raise RuntimeError("neuron-cc: out of memory on the host")
            return CPU_TRACE.trace(network, example)

        return dataclasses.replace(CPU_TRACE, trace=trace)


@pytest.fixture
def blocked(monkeypatch: pytest.MonkeyPatch) -> Iterator[Blocked]:
    """The cpu-trace compiler, held until the test releases it."""
    held = Blocked()
    monkeypatch.setitem(neuron_runner.COMPILERS, "cpu-trace", held.compiler())
    yield held
    held.release.set()


def neuron_settings(cache: Path) -> ServiceSettings:
    return ServiceSettings(
        variant="gpu",
        model_dir=SHARED / "models",
        model_x4=MODEL,
        device="cpu",
        runtime="neuron",
        neuron_compiler="cpu-trace",
        neuron_cache_dir=cache,
        tile=TILES.tile,
        pad=TILES.pad,
        neuron_batch=TILES.batch,
        face_enabled=False,
        time_budget_seconds=0,
    )


def test_requests_are_503_with_retry_after_until_the_compile_is_done(tmp_path: Path, blocked: Blocked) -> None:
    """The service starts at once; while the compiler is held every request is the 503 in the
    error shape, then the same request succeeds."""
    pixels = np.ascontiguousarray(load_photo("astronaut.png")[:40, :40, :3])
    request = {"img": b64(codec.encode(pixels, "png")), "scale": 4}
    with serving(local_app(neuron_settings(tmp_path))) as url:
        for _ in range(2):
            waiting = httpx.post(f"{url}/invocations", json=request, timeout=60)
            assert waiting.status_code == 503
            assert waiting.headers["retry-after"] == str(ModelWarmingUpError.retry_after)
            assert waiting.json()["code"] == "model_warming_up" and set(waiting.json()) == {"message", "code"}
        assert blocked.traces == 1
        blocked.release.set()
        deadline = time.monotonic() + 120
        done = httpx.post(f"{url}/invocations", json=request, timeout=60)
        while done.status_code == 503 and time.monotonic() < deadline:  # the trace itself takes a moment
            done = httpx.post(f"{url}/invocations", json=request, timeout=60)
    assert done.status_code == 200, done.text
    assert (done.json()["width"], done.json()["height"]) == (160, 160)
    assert blocked.traces == 1


def test_the_invoke_endpoint_lambda_relays_the_503_with_its_retry_after(tmp_path: Path, blocked: Blocked) -> None:
    """SageMaker's runtime drops the container's headers: the invoke-endpoint Lambda's real code
    (through the runtime stand-in) answers the 503 with the Retry-After the error's code implies."""
    fake = FakeRuntime()
    pixels = np.ascontiguousarray(load_photo("astronaut.png")[:40, :40, :3])
    payload = json.dumps({"img": b64(codec.encode(pixels, "png")), "scale": 4})
    with serving(local_app(neuron_settings(tmp_path))) as container, serving(fake.app()) as runtime_url:
        fake.container = container
        with invoke_endpoint_lambda(fake, runtime_url) as handler:
            answer = handler(api_gateway_event(payload), LambdaContext())
    assert answer["statusCode"] == 503, answer
    headers = {name.lower(): value for name, value in answer["headers"].items()}
    assert headers["retry-after"] == str(ModelWarmingUpError.retry_after)
    assert json.loads(answer["body"])["code"] == "model_warming_up" and blocked.traces == 1


def test_with_a_warmup_wait_a_call_waits_for_the_compile_instead_of_its_503(tmp_path: Path, blocked: Blocked) -> None:
    """The asynchronous model's setting: a call that comes while the compiler is held waits for
    it (the compile is released only once the call is waiting) and returns the picture."""
    descriptor = load_descriptor(weights(), get_spec(MODEL))
    runner = neuron_runner.NeuronRunner(
        descriptor,
        name=MODEL,
        tiles=TILES,
        compiler=neuron_runner.COMPILERS["cpu-trace"],
        cache_dir=tmp_path,
        warmup_wait=120,
    )
    assert not runner.wait(0)  # still compiling when the call comes

    class ReleasedOnWait(threading.Event):
        """The runner's compile-done event, releasing the held compiler once a call waits on it."""

        def wait(self, timeout: float | None = None) -> bool:
            blocked.release.set()
            return super().wait(timeout)

    runner._done = ReleasedOnWait()  # before the held compile can end: it sets this one
    pixels = np.ascontiguousarray(load_photo("astronaut.png")[:40, :40, :3])
    out = Upscaler(runner, name=MODEL, tiles=TILES).upscale(pixels, 4)
    assert out.shape == (160, 160, 3) and blocked.traces == 1


def test_a_failed_compile_is_a_500_not_a_hang(tmp_path: Path, blocked: Blocked) -> None:
    blocked.fail = True
    upscaler, runner = neuron_upscaler(tmp_path, neuron_runner.COMPILERS["cpu-trace"])
    blocked.release.set()
    assert runner.wait(60)
    with pytest.raises(ModelCompileError, match=r"compiling the network failed \(RuntimeError: neuron-cc"):
        upscaler.upscale(np.zeros((16, 16, 3), dtype=np.uint8), 4)
    assert not list(tmp_path.glob("*.pt"))  # nothing half-written for the next worker to load


def test_a_worker_that_starts_later_loads_what_another_compiled(tmp_path: Path) -> None:
    first, runner = neuron_upscaler(tmp_path)
    assert runner.wait(120)
    (kept,) = tmp_path.glob("*.pt")
    assert kept.name == f"{MODEL}.cpu-trace-48px-b3.pt"

    def never(network: torch.nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
        raise AssertionError("compiled again")

    second, again = neuron_upscaler(tmp_path, dataclasses.replace(CPU_TRACE, trace=never))
    assert again.wait(60)
    pixels = np.ascontiguousarray(load_photo("astronaut.png")[:30, :50, :3])
    assert np.array_equal(second.upscale(pixels, 4), first.upscale(pixels, 4))


def test_without_a_neuron_package_the_runtime_refuses_to_load() -> None:
    """No silent CPU fallback: the CPU trace only when named, the Neuron compilers only where installed."""
    with pytest.raises(ModelCompileError, match="needs torch-neuron \\(Inf1\\) or torch-neuronx \\(Inf2\\)"):
        neuron_runner.pick_compiler("auto")
    with pytest.raises(ModelCompileError, match="torch-neuronx compiler is not installed"):
        neuron_runner.pick_compiler("torch-neuronx")
    assert neuron_runner.pick_compiler("cpu-trace") is neuron_runner.COMPILERS["cpu-trace"]


def test_the_lambda_relays_the_containers_503_as_retryable() -> None:
    """SageMaker drops the container's headers: the invoke-endpoint Lambda answers the 503 and its
    Retry-After again from the body's code; any other 5xx stays the model failing."""
    relayed = model_error(503, '{"message": "compiling", "code": "model_warming_up"}')
    assert (relayed.status, relayed.code, relayed.retry_after) == (503, "model_warming_up", 30)
    assert model_error(503, '{"message": "x", "code": "model_unavailable"}').status == 502
