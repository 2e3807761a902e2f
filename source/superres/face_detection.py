"""Face detection with YuNet: the raw network on a runtime, its outputs decoded here.

What ``cv2.FaceDetectorYN`` does, in numpy around the network alone, so every host runs
the one implementation: the Lambda zip runs the graph on OpenVINO (converted to IR at
release build), the GPU container on its image's OpenCV (``cv2.dnn``), a laptop on
OpenVINO (``runtimes.load_graph`` picks).

1. The image, 8-bit BGR, padded at its right and bottom to a multiple of 32 with black;
   the network takes it as it is (no mean, no scale).
2. Per stride (8, 16, 32), every cell of the grid has a class and an objectness score
   (each clamped to [0, 1]; the face's score is the square root of their product), a box
   (centre offset from the cell, log size, in strides) and five landmarks (offsets from
   the cell, in strides).
3. Faces scoring at least ``score_threshold`` go through non-maximum suppression on their
   boxes truncated to integers, as OpenCV's ``NMSBoxes`` compares them.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BadRequestError, InferenceError
from .geometry import area_resize
from .manifest import get_spec
from .runtimes import Graph, load_graph
from .store import ModelStore

#: YuNet's strides; the input is padded to a multiple of the largest.
STRIDES = (8, 16, 32)


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face, in pixels of the image it was found in."""

    #: x, y of the top-left corner, width, height.
    box: tuple[float, float, float, float]
    #: 5 x 2 float64 (x, y): right eye, left eye, nose tip, right mouth corner, left
    #: mouth corner; right and left of the person, as YuNet and face.FFHQ_TEMPLATE order them.
    landmarks: np.ndarray
    score: float

    @property
    def size(self) -> float:
        """The box's shorter side: what ``min_face_size`` compares."""
        return min(self.box[2], self.box[3])

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]


@dataclass(frozen=True)
class FaceDetector:
    """YuNet on a runtime; ``detect`` is safe to call from many threads."""

    network: Graph
    _: KW_ONLY
    score_threshold: float = 0.8
    nms_threshold: float = 0.3
    top_k: int = 5000
    #: Images with a longer side are detected on a copy reduced to it. YuNet finds faces of
    #: about 10 to 300 px well; beyond that its scores fall and false positives rise, and a
    #: large image costs time for nothing.
    max_side: int = 1280

    def __post_init__(self) -> None:
        if not 0 < self.score_threshold <= 1 or not 0 < self.nms_threshold <= 1:
            raise ValueError("score_threshold and nms_threshold must be in (0, 1]")
        if self.top_k < 1 or self.max_side < 32:
            raise ValueError("top_k must be at least 1 and max_side at least 32")

    @classmethod
    def from_file(cls, path: Path | str, *, threads: int | None = None, **options: Any) -> FaceDetector:
        """YuNet from its ONNX file or its released conversion (a folder)."""
        return cls(load_graph(path, threads=threads), **options)

    @classmethod
    def from_store(cls, store: ModelStore, name: str = "YuNet", **options: Any) -> FaceDetector:
        return cls.from_file(store.network(get_spec(name)), **options)

    def detect(self, pixels: np.ndarray) -> list[Face]:
        """Faces in ``pixels`` (H x W x C, C in 1/3/4, uint8/uint16), best score first."""
        check_pixels(pixels, "pixels")
        bgr, factor = self._detector_input(pixels)
        height, width = bgr.shape[:2]
        padded_height, padded_width = (-(-side // STRIDES[-1]) * STRIDES[-1] for side in (height, width))
        blob = np.zeros((1, 3, padded_height, padded_width), np.float32)
        blob[0, :, :height, :width] = bgr.transpose(2, 0, 1)
        rows = decode(self.network(blob), padded_width, padded_height, self.score_threshold)
        rows = rows[suppress(rows[:, :4], rows[:, 14], self.score_threshold, self.nms_threshold, self.top_k)]
        faces = []
        for row in rows.astype(np.float64):
            # Back to the caller's pixels: centres scale about the half-pixel offset.
            landmarks = (row[4:14].reshape(5, 2) + 0.5) / factor - 0.5
            x, y = (row[0:2] + 0.5) / factor - 0.5
            box_width, box_height = row[2:4] / factor
            faces.append(Face((float(x), float(y), float(box_width), float(box_height)), landmarks, float(row[14])))
        return sorted(faces, key=lambda face: face.score, reverse=True)

    def _detector_input(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """An 8-bit BGR image for YuNet (reduced to ``max_side``) and its scale factors (x, y)."""
        eight = (pixels >> 8).astype(np.uint8) if pixels.dtype == np.uint16 else pixels
        bgr = np.repeat(eight, 3, axis=2) if eight.shape[2] == 1 else eight[:, :, 2::-1]
        height, width = bgr.shape[:2]
        factor = min(1.0, self.max_side / max(height, width))
        if factor == 1.0:
            return bgr, np.ones(2)
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        return area_resize(bgr, size), np.array([size[0] / width, size[1] / height])  # what the rounding produced


def decode(outputs: dict[str, np.ndarray], width: int, height: int, score_threshold: float) -> np.ndarray:
    """YuNet's outputs for a ``width`` x ``height`` input (multiples of 32) as rows of 15
    float32: box x, y, w, h, five landmarks (x, y), score; only rows scoring at least
    ``score_threshold``, stride by stride, cells in row-major order (OpenCV's order)."""
    found = []
    for stride in STRIDES:
        try:
            cls, obj, box, kps = (outputs[f"{head}_{stride}"] for head in ("cls", "obj", "bbox", "kps"))
        except KeyError as missing:
            raise InferenceError(f"the face detector has no output {missing}: not a YuNet graph") from None
        columns, cells = width // stride, (width // stride) * (height // stride)
        cls, obj = cls.reshape(-1), obj.reshape(-1)
        box, kps = box.reshape(-1, 4), kps.reshape(-1, 10)
        if not len(cls) == len(obj) == len(box) == len(kps) == cells:
            raise InferenceError(f"the face detector's stride-{stride} outputs do not match a {width}x{height} input")
        score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
        keep = np.flatnonzero(score >= score_threshold)
        row, column = np.divmod(keep, columns)
        box, kps = box[keep], kps[keep]
        size = np.exp(box[:, 2:4]) * stride
        centre = (np.column_stack([column, row]) + box[:, 0:2]) * stride
        landmarks = (kps.reshape(-1, 5, 2) + np.column_stack([column, row])[:, None, :]) * stride
        found.append(np.column_stack([centre - size / 2, size, landmarks.reshape(-1, 10), score[keep]]))
    return np.concatenate(found).astype(np.float32)


def suppress(boxes: np.ndarray, scores: np.ndarray, score_threshold: float, overlap: float, top_k: int) -> np.ndarray:
    """Indices of the boxes (x, y, w, h) non-maximum suppression keeps, best first.

    OpenCV's ``NMSBoxes`` on integer boxes (truncated towards zero): scores above
    ``score_threshold``, the ``top_k`` best (stable order among equals), each kept unless
    its intersection over union with a box kept before is above ``overlap``. A single
    candidate is kept as it is (``FaceDetectorYN`` suppresses only two or more).
    """
    if len(scores) <= 1:
        return np.arange(len(scores))
    order = [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] > score_threshold][:top_k]
    rects = np.trunc(boxes).astype(np.int64)
    left, top = rects[:, 0], rects[:, 1]
    right, bottom = left + rects[:, 2], top + rects[:, 3]
    area = rects[:, 2] * rects[:, 3]
    kept: list[int] = []
    for index in order:
        if kept:
            others = np.array(kept)
            width = np.minimum(right[index], right[others]) - np.maximum(left[index], left[others])
            height = np.minimum(bottom[index], bottom[others]) - np.maximum(top[index], top[others])
            inter = np.where((width > 0) & (height > 0), width * height, 0)
            union = area[index] + area[others] - inter
            iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
            if (iou > overlap).any():
                continue
        kept.append(index)
    return np.array(kept, dtype=np.intp)


def check_pixels(pixels: np.ndarray, name: str) -> None:
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3, 4):
        raise BadRequestError(f"{name} must be H x W x C with C = 1, 3 or 4")
    if pixels.dtype not in (np.uint8, np.uint16):
        raise BadRequestError(f"{name} must be uint8 or uint16")
