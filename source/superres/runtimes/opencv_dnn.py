"""OpenCV's dnn module as a runtime for graphs with named outputs (the face detector's YuNet).

Where OpenVINO is not installed: the GPU container, whose image brings OpenCV (the model
artifact vendors neither). Only the network runs here; what its outputs mean is decoded by
the caller, the same on every runtime.
"""

from __future__ import annotations

import queue
from pathlib import Path

import cv2
import numpy as np

from ..errors import InferenceError, ModelMismatchError


class OpenCvGraph:
    """An ONNX graph in ``cv2.dnn``; safe to call from many threads.

    A ``cv2.dnn.Net`` holds its input between ``setInput`` and ``forward``, so each call
    borrows a net of its own from a pool that grows to the number of concurrent calls.
    """

    runtime = "opencv"

    def __init__(self, path: Path) -> None:
        self.path = path
        first = self._read()
        self.output_names: list[str] = list(first.getUnconnectedOutLayersNames())
        self._idle: queue.SimpleQueue[cv2.dnn.Net] = queue.SimpleQueue()
        self._idle.put(first)  # a wrong file fails here, not on the first request

    def _read(self) -> cv2.dnn.Net:
        try:
            return cv2.dnn.readNetFromONNX(str(self.path))
        except cv2.error as error:
            raise ModelMismatchError(f"{self.path}: OpenCV cannot read it as an ONNX network ({error.err})") from None

    def __call__(self, blob: np.ndarray) -> dict[str, np.ndarray]:
        try:
            net = self._idle.get_nowait()
        except queue.Empty:
            net = self._read()
        try:
            net.setInput(blob)
            outputs = net.forward(self.output_names)
        except cv2.error as error:
            raise InferenceError(f"the network failed: {error.err}") from None
        finally:
            self._idle.put(net)
        return {name: np.asarray(output) for name, output in zip(self.output_names, outputs, strict=True)}
