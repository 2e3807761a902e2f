"""The Inf1 (AWS Neuron) container: the SageMaker routes over networks compiled for fixed-shape tiles.

    python -m sagemaker_sr.neuron serve              # what the Inf1 image runs (port 8080)
    python -m sagemaker_sr.neuron compile OUT_DIR    # compile ahead of time (in the Neuron image)

torch-neuron (Inf1, NeuronCore v1) compiles a network for one input shape. The engine's
fixed-shape mode (``TileConfig(fixed_shape=True, batch=N)``) cuts every image into windows
of exactly ``tile + 2 * pad`` pixels, so one compilation per network serves every request.
The compiled module runs with ``dynamic_batch_size=True``, so the last, shorter batch of an
image runs too. Where torch-neuron is not installed (anywhere but the Neuron image),
``torch.jit.trace`` compiles the same fixed-shape graph for the CPU: that path is what the
tests exercise.

``superres.engine.Upscaler`` runs the compiled module in place of the network
(``compiled=``), with the same tiling, checks and output assembly as every other host.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path

import torch
from spandrel import ImageModelDescriptor

from superres.engine import Upscaler
from superres.manifest import ModelSpec, get_spec
from superres.runtimes.torch_runner import TorchRunner, load_descriptor
from superres.service.app import create_app
from superres.service.local import LocalBackend
from superres.service.settings import ServiceSettings
from superres.store import ModelStore
from superres.tiling import TileConfig

from .serve import MODEL_DIR

logger = logging.getLogger(__name__)

#: Fixed window = tile + 2 * pad; batch windows per NeuronCore call. Set by environment.
TILE = int(os.environ.get("SUPERRES_NEURON_TILE", "128"))
PAD = int(os.environ.get("SUPERRES_NEURON_PAD", "32"))
BATCH = int(os.environ.get("SUPERRES_NEURON_BATCH", "4"))
#: Compiled files not shipped in the model artifact are written here on first start.
CACHE_DIR = Path(os.environ.get("SUPERRES_NEURON_CACHE", "/tmp/neuron-compiled"))


def tile_config(tile: int = TILE, pad: int = PAD, batch: int = BATCH) -> TileConfig:
    return TileConfig(tile=tile, pad=pad, fixed_shape=True, batch=batch)


def neuron_available() -> bool:
    try:
        # Importing it registers torch.neuron; it exists only in the Neuron image (no stubs here).
        importlib.import_module("torch_neuron")
    except ImportError:
        return False
    return True


def compile_network(descriptor: ImageModelDescriptor, config: TileConfig) -> torch.jit.ScriptModule:
    """The network traced for ``config.batch`` windows of ``config.window`` pixels (fp32 in)."""
    network = descriptor.model.float().eval()
    example = torch.rand(config.batch, 3, config.window, config.window)
    with torch.inference_mode(False), torch.no_grad():
        if neuron_available():
            return torch.neuron.trace(network, example, dynamic_batch_size=True)  # type: ignore[attr-defined]  # torch.neuron exists only in AWS's Neuron image
        return torch.jit.trace(network, example, check_trace=False)


def compiled_name(spec: ModelSpec, config: TileConfig) -> str:
    target = "neuron" if neuron_available() else "cpu-jit"
    return f"{spec.name}.{target}-{config.window}px-b{config.batch}.pt"


def compiled_upscaler(spec: ModelSpec, store: ModelStore, config: TileConfig, cache_dir: Path = CACHE_DIR) -> Upscaler:
    """An Upscaler over the compiled network: loaded if compiled before, else compiled now."""
    name = compiled_name(spec, config)
    source = load_descriptor(store.path(spec), spec)
    for folder in (store.directory, cache_dir):
        if (folder / name).is_file():
            module = torch.jit.load(str(folder / name))
            break
    else:
        logger.info("compiling %s for %d windows of %d px", spec.name, config.batch, config.window)
        module = compile_network(source, config)
        cache_dir.mkdir(parents=True, exist_ok=True)
        module.save(str(cache_dir / name))
    return Upscaler(TorchRunner(source, device="cpu", bf16=False, compiled=module), name=spec.name, tiles=config)


class NeuronBackend(LocalBackend):
    """The local backend with every upscaler swapped for its compiled fixed-shape twin."""

    def __init__(
        self, settings: ServiceSettings, config: TileConfig | None = None, cache_dir: Path = CACHE_DIR
    ) -> None:
        super().__init__(settings)
        store = ModelStore(settings.model_dir)
        self.upscalers = {
            name: compiled_upscaler(get_spec(name), store, config or tile_config(), cache_dir)
            for name in self.upscalers
        }


def settings() -> ServiceSettings:
    # The NeuronCores are driven from the host CPU's side: the engine's device is "cpu".
    return ServiceSettings.for_variant("gpu", model_dir=os.environ.get("SUPERRES_MODEL_DIR", MODEL_DIR), device="cpu")


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "serve"
    if command == "serve":
        import uvicorn

        current = settings()
        uvicorn.run(create_app(current, NeuronBackend(current)), host="0.0.0.0", port=8080, log_level="info")
        return 0
    if command == "compile" and len(argv) == 2:
        current = settings()
        store = ModelStore(current.model_dir)
        for name in filter(None, {current.model_x4, current.model_x2}):
            compiled_upscaler(get_spec(name), store, tile_config(), Path(argv[1]))
            print(Path(argv[1]) / compiled_name(get_spec(name), tile_config()))
        return 0
    print("usage: python -m sagemaker_sr.neuron serve | compile OUT_DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
