"""The OpenVINO runtime behind the tiler: the same pictures as torch, converted once, no torch
needed to run a conversion, and the precision it promises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from bench.metrics import psnr

from conftest import SHARED, load_photo, photo_names
from superres.cpu import native_bf16_cpu
from superres.engine import Upscaler
from superres.errors import ModelMismatchError
from superres.manifest import get_spec
from superres.runtimes import load_runner, openvino_runner
from superres.store import ModelStore

NETWORKS = ["RealESRGAN_x4plus", "realesr-animevideov3"]


def centre(pixels: np.ndarray, size: int = 96) -> np.ndarray:
    top, left = (pixels.shape[0] - size) // 2, (pixels.shape[1] - size) // 2
    return np.ascontiguousarray(pixels[top : top + size, left : left + size, :3])


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("converted")


def upscaler(name: str, converted: Path, **options: object) -> Upscaler:
    spec = get_spec(name)
    return Upscaler.from_file(ModelStore(SHARED / "models").path(spec), spec, converted_dir=converted, **options)  # type: ignore[arg-type]  # options are load_runner's keywords


@pytest.fixture(scope="module")
def torch_fp32() -> dict[str, Upscaler]:
    return {name: upscaler(name, Path(), runtime="torch", device="cpu", bf16=False) for name in NETWORKS}


@pytest.mark.parametrize("name", NETWORKS)
def test_openvino_fp32_computes_what_torch_fp32_computes(
    name: str, converted: Path, torch_fp32: dict[str, Upscaler]
) -> None:
    ours = upscaler(name, converted, runtime="openvino", bf16=False)
    assert (ours.runner.info.runtime, ours.runner.info.precision) == ("openvino", "fp32")
    crop = centre(load_photo("astronaut.png"))
    assert psnr(ours.upscale(crop), torch_fp32[name].upscale(crop)) >= 70


@pytest.mark.parametrize("name", [*NETWORKS, "RealESRGAN_x4plus_anime_6B"])
@pytest.mark.parametrize("photo", photo_names())
def test_the_converted_network_keeps_50_db_against_torch_on_every_photo(
    name: str, photo: str, converted: Path, torch_fp32: dict[str, Upscaler]
) -> None:
    """Every network with real weights here, converted as the release build converts it, in
    the precision this CPU runs it by default (bf16 where native, with the first layer in
    fp32 where the plan says so; else fp32), against its torch original in fp32."""
    fast = upscaler(name, converted)
    expected = get_spec(name).openvino if native_bf16_cpu() else "fp32"
    assert (fast.runner.info.runtime, fast.runner.info.precision) == ("openvino", expected)
    torch_fp32.setdefault(name, upscaler(name, Path(), runtime="torch", device="cpu", bf16=False))
    crop = centre(load_photo(photo))
    assert psnr(fast.upscale(crop), torch_fp32[name].upscale(crop)) >= 50


def test_a_network_converts_once(converted: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    upscaler("realesr-animevideov3", converted, runtime="openvino")  # converted here or before

    def refuse(*_: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(openvino_runner, "convert", refuse)
    again = upscaler("realesr-animevideov3", converted, runtime="openvino")
    assert again.runner.info.runtime == "openvino"
    folders = [path.name for path in converted.iterdir()]
    assert not [name for name in folders if name.startswith(".")], f"a partial conversion was left: {folders}"


def test_concurrent_calls_on_one_runner_never_mix_outputs(converted: Path) -> None:
    shared = upscaler("realesr-animevideov3", converted, runtime="openvino", threads=2, streams=2)
    photo = load_photo("coffee.png")
    crops = [np.ascontiguousarray(photo[i * 40 : i * 40 + 48, i * 50 : i * 50 + 64, :3]) for i in range(6)]
    alone = [shared.upscale(crop) for crop in crops]
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(shared.upscale, crops))
    for index, (got, want) in enumerate(zip(together, alone, strict=True)):
        assert np.array_equal(got, want), f"call {index} got another call's pixels"


def test_bf16_is_refused_by_name_where_the_cpu_lacks_it(converted: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openvino_runner, "native_bf16_cpu", lambda: False)
    with pytest.raises(ValueError, match=r"^bf16 needs a CPU with native bf16 support \(AMX or AVX512-BF16\)"):
        upscaler("realesr-animevideov3", converted, runtime="openvino", bf16=True)
    assert upscaler("realesr-animevideov3", converted, runtime="openvino").runner.info.precision == "fp32"


def test_auto_runs_openvino_on_the_cpu_and_torch_elsewhere(converted: Path) -> None:
    assert upscaler("realesr-animevideov3", converted, device="cpu").runner.info.runtime == "openvino"
    assert upscaler("realesr-animevideov3", converted, runtime="torch", device="cpu").runner.info.runtime == "torch"
    with pytest.raises(ValueError, match="runs on the CPU"):
        upscaler("realesr-animevideov3", converted, runtime="openvino", device="cuda")


RUN_WITHOUT_TORCH = """
import json, sys
sys.modules["torch"] = None  # any import of torch fails, as in a zip without it
from pathlib import Path
import numpy as np
from superres.engine import Upscaler
from superres.errors import ModelMismatchError
from superres.manifest import get_spec
weights, converted, empty = map(Path, sys.argv[1:4])
spec = get_spec("realesr-animevideov3")
out = Upscaler.from_file(weights, spec, converted_dir=converted).upscale(np.full((20, 24, 3), 128, np.uint8))
try:
    Upscaler.from_file(weights, spec, converted_dir=empty)
    refusal = None
except ModelMismatchError as error:
    refusal = error.message
print(json.dumps({"shape": out.shape, "torch": sys.modules["torch"] is not None, "refusal": refusal}))
"""


def test_a_converted_network_runs_without_torch(converted: Path, tmp_path: Path) -> None:
    """What the Lambda zip relies on: with the conversion present, torch is never imported;
    without it, a clear error instead of an ImportError."""
    weights = ModelStore(SHARED / "models").path(get_spec("realesr-animevideov3"))
    upscaler("realesr-animevideov3", converted, runtime="openvino")  # the conversion exists now
    done = subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT_TORCH, str(weights), str(converted), str(tmp_path / "empty")],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["shape"] == [80, 96, 3] and result["torch"] is False
    assert "no OpenVINO conversion" in result["refusal"] and "converting needs torch" in result["refusal"]


def test_load_runner_refuses_fp16_on_openvino(converted: Path) -> None:
    spec = get_spec("realesr-animevideov3")
    with pytest.raises(ValueError, match="fp16"):
        load_runner(
            ModelStore(SHARED / "models").path(spec), spec, runtime="openvino", half=True, converted_dir=converted
        )


def test_a_network_without_a_checked_plan_is_refused_on_openvino(converted: Path) -> None:
    """RealESRGAN_x2plus unshuffles pixels first; its conversion was never checked, so "auto"
    runs it on torch and asking for OpenVINO is refused by name."""
    spec = get_spec("RealESRGAN_x2plus")
    assert spec.openvino is None
    with pytest.raises(ValueError, match=r"^RealESRGAN_x2plus is not checked on the OpenVINO runtime"):
        load_runner(SHARED / "models" / "absent.pth", spec, runtime="openvino", converted_dir=converted)


def test_a_wrong_file_is_refused_before_conversion(converted: Path) -> None:
    spec = get_spec("RealESRGAN_x4plus")
    other = ModelStore(SHARED / "models").path(get_spec("realesr-animevideov3"))
    with pytest.raises(ModelMismatchError):
        load_runner(other, spec, runtime="openvino", converted_dir=converted)


def test_a_released_conversion_loads_without_weights_and_only_on_openvino(converted: Path, tmp_path: Path) -> None:
    """The Lambda stack's model directory: ``<name>.openvino/`` and no weight file."""
    spec = get_spec("realesr-animevideov3")
    weights = ModelStore(SHARED / "models").path(spec)
    released = openvino_runner.convert(weights, spec, tmp_path / "models" / "realesr-animevideov3.openvino")
    store = ModelStore(tmp_path / "models")
    assert store.network(spec) == released
    runner = load_runner(store.network(spec), spec)
    assert runner.info.runtime == "openvino"
    with pytest.raises(ValueError, match="converted for OpenVINO: the torch runtime needs the weight file"):
        load_runner(released, spec, runtime="torch")
    # With the weight file there too, the weights win: every runtime can load them.
    (tmp_path / "models" / weights.name).symlink_to(weights)
    assert store.network(spec) == tmp_path / "models" / weights.name
