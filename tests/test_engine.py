"""The engine on real weights: scale semantics, channels, bit depth, concurrency, failures, loading."""

from __future__ import annotations

import copy
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import spandrel
import torch
from bench.metrics import psnr
from PIL import Image
from spandrel.architectures.SPAN import SPAN

from conftest import SHARED, WHOLE, descriptor_of, load_photo, torch_upscaler, with_round_alpha
from superres.cpu import native_bf16_cpu
from superres.engine import Upscaler
from superres.errors import BadRequestError, InferenceError, ModelMismatchError
from superres.manifest import get_spec
from superres.runtimes import torch_runner
from superres.runtimes.torch_runner import load_descriptor
from superres.tiling import TileConfig


def _official_layout_state_dict(template: Path, scale: int) -> dict[str, torch.Tensor]:
    """Random weights of the real RRDBNet in basicsr's key layout (x2plus: 12 input planes)."""
    real = torch.load(template, weights_only=True)["params_ema"]
    generator = torch.Generator().manual_seed(scale)
    state = {}
    for key, value in real.items():
        shape = (64, 3 * (4 // scale) ** 2, 3, 3) if key == "conv_first.weight" and scale == 2 else value.shape
        state[key] = torch.randn(shape, generator=generator) * 0.02
    return state


@pytest.fixture(scope="module")
def x2plus_file(tmp_path_factory) -> Path:
    """RealESRGAN_x2plus is not available offline: its architecture with random weights."""
    path = tmp_path_factory.mktemp("models") / "RealESRGAN_x2plus.pth"
    template = SHARED / "models" / "RealESRGAN_x4plus.ncnn-fp16.pth"
    torch.save({"params_ema": _official_layout_state_dict(template, 2)}, path)
    return path


def test_scale_4_runs_the_x4_network(compact, astronaut) -> None:
    crop = astronaut[:50, :70]
    assert compact.upscale(crop, 4).shape == (200, 280, 3)


def test_scale_2_on_an_x4_network_is_x4_then_lanczos(compact, astronaut) -> None:
    crop = astronaut[:51, :77]  # odd sizes: the output must still be exactly 2x
    half = compact.upscale(crop, 2)
    full = compact.upscale(crop, 4)
    assert half.shape == (102, 154, 3)
    # Pillow's own 8-bit Lanczos as the independent reference
    _assert_close(half, np.asarray(Image.fromarray(full).resize((154, 102), Image.Resampling.LANCZOS)))


@pytest.mark.parametrize(("scale", "size"), [(1, (77, 51)), (1.5, (116, 76)), (3, (231, 153)), (8, (616, 408))])
def test_any_scale_is_the_native_output_resized(compact, astronaut, scale: float, size: tuple[int, int]) -> None:
    crop = astronaut[:51, :77]
    out = compact.upscale(crop, scale)
    assert (out.shape[1], out.shape[0]) == size
    _assert_close(out, np.asarray(Image.fromarray(compact.upscale(crop, 4)).resize(size, Image.Resampling.LANCZOS)))


def test_a_size_keeps_alpha_and_gray_in_step(compact, astronaut) -> None:
    rgba = with_round_alpha(astronaut[:40, :60])
    out = compact.upscale(rgba, size=(100, 67))
    assert out.shape == (67, 100, 4)
    assert compact.upscale(np.ascontiguousarray(astronaut[:40, :60, :1]), size=(100, 67)).shape == (67, 100, 1)
    with pytest.raises(BadRequestError, match="at least 1x1"):
        compact.upscale(rgba, size=(0, 10))


def _assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    """Within 2 levels: Pillow's 8-bit path rounds and clips between its two passes, ours
    (in float, to keep 16-bit samples) only at the end."""
    assert actual.shape == expected.shape
    assert np.abs(actual.astype(int) - expected.astype(int)).max() <= 2


def test_native_x2_network_in_official_layout(x2plus_file: Path, astronaut) -> None:
    upscaler = Upscaler.from_file(x2plus_file, get_spec("RealESRGAN_x2plus"))
    assert upscaler.native_scale == 2
    crop = astronaut[:33, :45]  # odd: x2plus unshuffles pixels, so the engine must pad
    native = upscaler.upscale(crop, 2)
    assert native.shape == (66, 90, 3)
    # Above its native scale: the x2 output enlarged with Lanczos.
    _assert_close(
        upscaler.upscale(crop, 4), np.asarray(Image.fromarray(native).resize((180, 132), Image.Resampling.LANCZOS))
    )


def test_params_key_loads_too(tmp_path: Path) -> None:
    real = torch.load(SHARED / "models" / "realesr-animevideov3.ncnn-fp16.pth", weights_only=True)
    path = tmp_path / "net.pth"
    torch.save({"params": real["params_ema"]}, path)
    descriptor = load_descriptor(path, get_spec("realesr-animevideov3"))
    assert (descriptor.architecture.id, descriptor.scale) == ("Compact", 4)


def test_a_file_of_another_network_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelMismatchError, match="x4 Compact"):
        load_descriptor(SHARED / "models" / "realesr-animevideov3.ncnn-fp16.pth", get_spec("RealESRGAN_x4plus"))
    junk = tmp_path / "junk.pth"
    torch.save({"params_ema": {"weight": torch.zeros(3)}}, junk)
    with pytest.raises(ModelMismatchError, match="not a known network"):
        load_descriptor(junk)


def test_alpha_is_kept_and_enlarged_with_lanczos(compact, astronaut) -> None:
    crop = with_round_alpha(astronaut[100:180, 150:260])
    assert 0 < (crop[:, :, 3] < 255).mean() < 1
    out = compact.upscale(crop, 4)
    assert out.shape == (320, 440, 4)
    alpha = Image.fromarray(np.ascontiguousarray(crop[:, :, 3])).resize((440, 320), Image.Resampling.LANCZOS)
    _assert_close(out[:, :, 3], np.asarray(alpha))
    np.testing.assert_array_equal(out[:, :, :3], compact.upscale(np.ascontiguousarray(crop[:, :, :3]), 4))


def test_grayscale_stays_grayscale(compact) -> None:
    camera = load_photo("camera.png")
    assert camera.shape[2] == 1
    out = compact.upscale(camera[:64, :80], 4)
    assert out.shape == (256, 320, 1)


def test_16_bit_in_gives_16_bit_out_with_16_bit_precision(compact, astronaut) -> None:
    crop8 = astronaut[:64, :64]
    crop16 = crop8.astype(np.uint16) * 257
    out16 = compact.upscale(crop16, 4)
    out8 = compact.upscale(crop8, 4)
    assert out16.dtype == np.uint16
    assert (out16 % 257 != 0).mean() > 0.5, "result was computed at 8-bit precision"
    assert psnr((out16 / 257).round().astype(np.uint8), out8) >= 45


def test_concurrent_calls_never_mix_outputs(x4plus, astronaut) -> None:
    crops = [np.ascontiguousarray(astronaut[i * 40 : i * 40 + 40, i * 50 : i * 50 + 48]) for i in range(6)]
    config = TileConfig(tile=24, pad=8)
    expected = [x4plus.upscale(crop, tiles=config) for crop in crops]
    start = threading.Barrier(len(crops))

    def run(index: int) -> np.ndarray:
        start.wait()
        return x4plus.upscale(crops[index], tiles=config)

    with ThreadPoolExecutor(len(crops)) as pool:
        results = list(pool.map(run, range(len(crops))))
    for index, (got, want) in enumerate(zip(results, expected, strict=True)):
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1, f"call {index} got another call's pixels"


def _with_hook(upscaler: Upscaler, hook) -> Upscaler:
    """A copy of ``upscaler`` whose network passes each call through ``hook(call, batch, output)``.

    The hook raises, or returns the output to use: how a failing device behaves.
    """
    descriptor = copy.deepcopy(descriptor_of(upscaler))
    real_forward = descriptor.model.forward
    calls = itertools.count(1)

    def forward(batch: torch.Tensor) -> torch.Tensor:
        return hook(next(calls), batch, real_forward(batch))

    descriptor.model.forward = forward
    return torch_upscaler(descriptor, name="hooked", tiles=upscaler.tiles, bf16=False)


def test_out_of_memory_retries_with_smaller_tiles(compact, astronaut) -> None:
    def fail(_call: int, batch: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        if batch.shape[0] > 1 or batch.shape[-1] > 100:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return output

    crop = astronaut[:200, :200]
    config = TileConfig(tile=128, pad=16, batch=2)
    got = _with_hook(compact, fail).upscale(crop, tiles=config)
    assert psnr(got, compact.upscale(crop, tiles=WHOLE)) >= 50


def test_a_failing_tile_fails_the_call(compact, astronaut) -> None:
    def fail(call: int, _batch: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        if call == 3:
            raise RuntimeError("device lost")
        return output

    with pytest.raises(InferenceError, match="device lost"):
        _with_hook(compact, fail).upscale(astronaut[:200, :200], tiles=TileConfig(tile=64, pad=8))


def test_non_finite_output_fails_the_call(compact, astronaut) -> None:
    def poison(call: int, _batch: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        return output * float("nan") if call == 2 else output

    with pytest.raises(InferenceError, match="non-finite"):
        _with_hook(compact, poison).upscale(astronaut[:100, :100], tiles=TileConfig(tile=48, pad=8))


def test_bad_arguments_are_refused(compact, astronaut) -> None:
    with pytest.raises(BadRequestError, match="at least 1x1"):
        compact.upscale(astronaut[:8, :8], 0.05)
    with pytest.raises(BadRequestError):
        compact.upscale(astronaut[:8, :8].astype(np.float32), 4)
    with pytest.raises(ValueError):
        torch_upscaler(descriptor_of(compact), name="x", device="cpu", half=True)


needs_native_bf16 = pytest.mark.skipif(
    not native_bf16_cpu(), reason="needs a CPU with native bf16 (AMX or AVX512-BF16)"
)


def _has_bf16_trunk(upscaler: Upscaler) -> bool:
    return any(type(module).__name__ == "_Bf16" for module in descriptor_of(upscaler).model.modules())


@needs_native_bf16
@pytest.mark.parametrize("fixture", ["x4plus", "compact"])
@pytest.mark.parametrize("photo", ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"])
def test_cpu_bf16_keeps_50_db_against_fp32(request: pytest.FixtureRequest, fixture: str, photo: str) -> None:
    """The quality guard of the bf16 speed-up, on both network families and real photos."""
    exact = request.getfixturevalue(fixture)
    pixels = load_photo(photo)
    top, left = (pixels.shape[0] - 96) // 2, (pixels.shape[1] - 96) // 2
    crop = np.ascontiguousarray(pixels[top : top + 96, left : left + 96, :3])
    fast = torch_upscaler(descriptor_of(exact), name="bf16", bf16=True)
    assert _has_bf16_trunk(fast)
    assert psnr(fast.upscale(crop), exact.upscale(crop)) >= 50


@pytest.mark.parametrize("fixture", ["x4plus", "compact"])
def test_bf16_trunk_is_the_default_exactly_where_the_cpu_runs_it_natively(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    exact = request.getfixturevalue(fixture)
    assert not _has_bf16_trunk(exact)
    assert _has_bf16_trunk(torch_upscaler(descriptor_of(exact), name="auto", device="cpu")) == native_bf16_cpu()


def test_bf16_is_refused_where_it_was_not_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU that runs bf16 natively, an architecture without a measured bf16 trunk is
    refused by name when asked for, and runs fp32 by default."""
    monkeypatch.setattr(torch_runner, "native_bf16_cpu", lambda: True)  # the machine qualifies on any host
    span = spandrel.ModelLoader().load_from_state_dict(SPAN(num_in_ch=3, num_out_ch=3, upscale=2).state_dict())
    with pytest.raises(ValueError, match=r"^bf16 is measured for ESRGAN and Compact networks, not SPAN$"):
        torch_upscaler(span, name="span", device="cpu", bf16=True)
    assert not _has_bf16_trunk(torch_upscaler(span, name="span", device="cpu"))


def test_bf16_is_refused_on_a_cpu_without_native_bf16(compact: Upscaler, monkeypatch: pytest.MonkeyPatch) -> None:
    """A measured architecture on a CPU without AMX or AVX512-BF16: refused when asked for, fp32 by default."""
    monkeypatch.setattr(torch_runner, "native_bf16_cpu", lambda: False)  # the machine does not qualify, on any host
    with pytest.raises(ValueError, match=r"^bf16 needs a CPU with native bf16 support \(AMX or AVX512-BF16\)$"):
        torch_upscaler(descriptor_of(compact), name="compact", device="cpu", bf16=True)
    assert not _has_bf16_trunk(torch_upscaler(descriptor_of(compact), name="compact", device="cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on CI)")
def test_cuda_fp16_matches_cpu_fp32(shared_models, astronaut) -> None:
    spec = get_spec("RealESRGAN_x4plus")
    gpu = Upscaler.from_file(shared_models.path(spec), spec, device="cuda")
    assert (gpu.runner.info.runtime, gpu.runner.info.precision) == ("torch", "fp16")
    cpu = Upscaler.from_file(shared_models.path(spec), spec, runtime="torch", device="cpu", bf16=False)
    crop = astronaut[:96, :96]
    assert psnr(gpu.upscale(crop), cpu.upscale(crop)) >= 40
