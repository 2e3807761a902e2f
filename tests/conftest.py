"""Shared fixtures: the real weights and photos in ../shared, loaded once per session."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from bench.face_bench import GFPGAN_CONFIG
from spandrel import ImageModelDescriptor

from superres.codec import decode
from superres.engine import Upscaler
from superres.manifest import get_spec
from superres.runtimes.torch_runner import TorchRunner
from superres.store import ModelStore
from superres.tiling import TileConfig

SHARED = Path(os.environ.get("SUPERRES_SHARED") or Path(__file__).resolve().parents[2] / "shared")

# Two threads like the CI machine; tests that measure concurrency set their own.
torch.set_num_threads(2)
# Networks converted for OpenVINO during this run (on first use, then shared by every test
# and subprocess of the run) go to a folder of the run's own, not the user's cache.
os.environ.setdefault("SUPERRES_CONVERTED_DIR", tempfile.mkdtemp(prefix="superres-converted-"))


def torch_upscaler(
    descriptor: ImageModelDescriptor, *, name: str, tiles: TileConfig | None = None, **options: Any
) -> Upscaler:
    """The tiler over a torch runner of ``descriptor`` (``options``: TorchRunner's)."""
    return Upscaler(TorchRunner(descriptor, **options), name=name, tiles=tiles)


def descriptor_of(upscaler: Upscaler) -> ImageModelDescriptor:
    """The spandrel network behind a torch-run upscaler."""
    assert isinstance(upscaler.runner, TorchRunner), upscaler.runner.info
    return upscaler.runner.descriptor


@pytest.fixture(scope="session")
def shared_models() -> ModelStore:
    store = ModelStore(SHARED / "models")
    assert store.directory.is_dir(), f"{store.directory} missing: tests need ../shared beside the repo"
    return store


def _upscaler(store: ModelStore, name: str) -> Upscaler:
    """torch fp32 on CPU: the tests of tiling, fidelity and threads measure the tiler in exact
    arithmetic (the bf16 trunk and the OpenVINO runtime have their own quality tests)."""
    spec = get_spec(name)
    return Upscaler.from_file(store.path(spec), spec, runtime="torch", device="cpu", bf16=False)


@pytest.fixture(scope="session")
def x4plus(shared_models: ModelStore) -> Upscaler:
    """The photo model, real weights (35.9 MFLOP per pixel: keep inputs small)."""
    return _upscaler(shared_models, "RealESRGAN_x4plus")


@pytest.fixture(scope="session")
def compact(shared_models: ModelStore) -> Upscaler:
    """realesr-animevideov3, real weights, 30x cheaper than x4plus: for big inputs."""
    return _upscaler(shared_models, "realesr-animevideov3")


def photo_names() -> list[Any]:
    """The photos of ../shared/images by name, to parametrize a test over.

    Called by the module that parametrizes, so conftest imports without ../shared. Without it
    the test gets one case, which fails in ``load_photo`` saying so: neither a collection error
    nor a silent skip (an empty parameter set).
    """
    images = SHARED / "images"
    if not images.is_dir():
        return [pytest.param("", id="shared-images-missing")]
    return sorted(path.name for path in images.iterdir())


def load_photo(name: str) -> np.ndarray:
    path = SHARED / "images" / name
    if not path.is_file():
        pytest.fail(f"{path} missing: tests need ../shared beside the repo (or SUPERRES_SHARED)")
    pixels, _ = decode(path.read_bytes())
    return pixels


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    return load_photo("astronaut.png")


WHOLE = TileConfig(tile=0)


def with_round_alpha(rgb: np.ndarray) -> np.ndarray:
    """The photo with a soft-edged disc of opacity: ../shared/images/logo.png has an alpha
    channel, but every pixel of it is opaque."""
    height, width = rgb.shape[:2]
    y, x = np.mgrid[:height, :width]
    distance = np.hypot(y - height / 2, x - width / 2) / (min(height, width) / 2)
    alpha = np.clip((1.0 - distance) * 4, 0, 1) * 255
    return np.dstack((rgb, alpha.round().astype(rgb.dtype)))


def tool_in_own_venv(variable: str, folder: str, program: str) -> str:
    """A test tool that lives in a venv of its own (.venv/<folder>, see the Makefile), or
    wherever ``$variable`` points; the test fails, saying how to install it, without one."""
    candidates = [
        os.environ.get(variable),
        str(Path(__file__).resolve().parents[1] / ".venv" / folder / "bin" / program),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail(f"{folder} is not installed: make install creates .venv/{folder} (or set ${variable})")


def write_random_gfpgan(path: Path) -> Path:
    """GFPGAN v1.3/v1.4's real architecture (GFPGANv1Clean) with random weights, saved in the
    official layout: GFPGAN weights cannot be downloaded here, so face quality is not judged."""
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(0)
    network = GFPGAN(**GFPGAN_CONFIG)
    torch.save({"params_ema": network.state_dict()}, path)
    return path


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow: takes minutes (installs a container image's requirements into a fresh venv); "
        "CI runs it, `-m 'not slow'` skips it",
    )


@pytest.fixture(autouse=True, scope="module")
def fresh_moto_state() -> None:
    """moto keeps what its servers create in process-wide memory, shared by every moto server
    a test module starts: each module begins with an empty AWS (no stack, bucket or key left
    by another module)."""
    if "moto" in sys.modules:
        from moto.moto_api._internal import moto_api_backend

        moto_api_backend.reset()
