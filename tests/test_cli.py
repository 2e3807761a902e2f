"""The ``superres`` command: batches with a bad file, naming, the model commands."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import SHARED
from superres import codec
from superres.cli import main
from superres.engine import Upscaler
from superres.manifest import get_spec
from superres.runtimes import Runtime
from superres.store import ModelStore

MODELS = str(SHARED / "models")
FAST = ["--model", "realesr-animevideov3", "--model-dir", MODELS]


def _small_png(path: Path, source: np.ndarray) -> Path:
    path.write_bytes(codec.encode(np.ascontiguousarray(source[:40, :56]), "png"))
    return path


def test_a_bad_file_in_a_batch_is_reported_and_the_rest_finish(tmp_path: Path, astronaut) -> None:
    batch = tmp_path / "in"
    batch.mkdir()
    _small_png(batch / "a.png", astronaut)
    (batch / "b.jpg").write_bytes(b"this is not a jpeg")
    _small_png(batch / "c.png", astronaut[100:])
    (batch / "notes.txt").write_text("not an image suffix: ignored")
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "superres.cli", "upscale", str(batch), "--scale", "2", "-o", str(out), *FAST],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "b.jpg" in done.stderr and "not a supported image" in done.stderr
    assert "1 of 3 images failed" in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a_x2.png", "c_x2.png"]
    _, info = codec.decode((out / "a_x2.png").read_bytes())
    assert (info.width, info.height) == (112, 80)


def test_single_file_to_a_named_output_in_another_format(tmp_path: Path, astronaut) -> None:
    source = _small_png(tmp_path / "in.png", astronaut)
    target = tmp_path / "result.webp"
    result = CliRunner().invoke(main, ["upscale", str(source), "-o", str(target), "--format", "webp", *FAST])
    assert result.exit_code == 0, result.output
    _, info = codec.decode(target.read_bytes())
    assert (info.format, info.width, info.height) == ("webp", 224, 160)


@pytest.mark.parametrize(
    ("flags", "runtime", "bf16"),
    [
        ([], "auto", None),
        (["--fp32"], "auto", False),
        (["--runtime", "torch"], "torch", None),
        (["--runtime", "torch", "--fp32"], "torch", False),
        (["--runtime", "openvino", "--fp32"], "openvino", False),
    ],
)
def test_runtime_and_precision_flags_pick_the_engine_the_library_would(
    tmp_path: Path, astronaut: np.ndarray, flags: list[str], runtime: Runtime, bf16: bool | None
) -> None:
    """Each flag combination gives exactly the pixels of the library's engine with the same options."""
    source = _small_png(tmp_path / "in.png", astronaut)
    crop = codec.decode(source.read_bytes())[0]
    target = tmp_path / "out.png"
    result = CliRunner().invoke(main, ["upscale", str(source), "-o", str(target), *flags, *FAST])
    assert result.exit_code == 0, result.output
    spec = get_spec("realesr-animevideov3")
    expected = Upscaler.from_file(ModelStore(MODELS).path(spec), spec, runtime=runtime, bf16=bf16).upscale(crop)
    assert np.array_equal(codec.decode(target.read_bytes())[0], expected)


def test_missing_model_says_how_to_get_it(tmp_path: Path, astronaut) -> None:
    source = _small_png(tmp_path / "in.png", astronaut)
    result = CliRunner().invoke(main, ["upscale", str(source), "--model-dir", str(tmp_path / "empty")])
    assert result.exit_code == 1
    assert "superres models fetch RealESRGAN_x4plus --model-dir" in result.output


def test_models_list_and_verify_on_the_shared_copies() -> None:
    listed = CliRunner().invoke(main, ["models", "list", "--model-dir", MODELS])
    assert listed.exit_code == 0
    assert "RealESRGAN_x4plus.ncnn-fp16.pth" in listed.output
    assert "RealESRGAN_x2plus" in listed.output and "not downloaded" in listed.output
    verified = CliRunner().invoke(main, ["models", "verify", "RealESRGAN_x4plus", "--model-dir", MODELS])
    assert verified.exit_code == 0
    assert "known copy" in verified.output


def test_fetch_accepts_a_verified_copy_without_network() -> None:
    result = CliRunner().invoke(main, ["models", "fetch", "realesr-animevideov3", "--model-dir", MODELS])
    assert result.exit_code == 0, result.output
    assert "realesr-animevideov3.ncnn-fp16.pth" in result.output


def test_verify_fails_on_a_corrupt_file(tmp_path: Path) -> None:
    shutil.copy(SHARED / "models" / "realesr-animevideov3.ncnn-fp16.pth", tmp_path)
    with (tmp_path / "realesr-animevideov3.ncnn-fp16.pth").open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"\0\1\2\3")
    result = CliRunner().invoke(main, ["models", "verify", "realesr-animevideov3", "--model-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "mismatch" in result.output
