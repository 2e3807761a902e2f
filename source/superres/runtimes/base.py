"""What every runtime offers the tiler: a runner that enlarges a batch of windows.

The tiler (``engine.Upscaler``) owns windows, seams, alpha, 16-bit, progress and failure
rules once for every runtime. A runner only runs the network: float32 N x 3 x H x W in
[0, 1] in, float32 N x 3 x sH x sW out, clamped to [0, 1]. It carries what it is
(``RunnerInfo``), as spandrel's descriptors carry what a network is, so no caller guesses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # numpy stays out of what the invoke-endpoint zip imports (service settings)
    import numpy as np
    import numpy.typing as npt

    Batch = npt.NDArray[np.float32]


@dataclass(frozen=True)
class RunnerInfo:
    """What a runner is and what it can do."""

    #: "torch", "openvino"
    runtime: str
    #: "cpu", "cuda:0"...
    device: str
    #: How the network computes, e.g. "fp32", "fp16", "bf16 after an fp32 first layer".
    precision: str
    #: The network's native scale: every output side is this many times the input's.
    scale: int
    #: Compiled for one window shape (``TileConfig.fixed_shape`` windows only).
    fixed_shape: bool = False


class Runner(Protocol):
    info: RunnerInfo

    def run(self, batch: Batch) -> Batch:
        """The enlarged batch; raises ``RunnerOutOfMemoryError`` when the device ran out of
        memory (the tiler retries smaller) and ``errors.InferenceError`` for any other failure."""
        ...


class RunnerOutOfMemoryError(Exception):
    """The device had no memory for this batch; a smaller one may fit."""


class Graph(Protocol):
    """A network whose outputs the caller decodes itself (the face detector's YuNet): one
    input blob in, every output by name out; safe to call from many threads."""

    #: "openvino", "opencv"
    runtime: str

    def __call__(self, blob: np.ndarray) -> dict[str, np.ndarray]: ...
