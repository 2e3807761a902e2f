"""Face restoration with GFPGAN: find faces, align them, restore them, paste them back.

The steps of facexlib's ``FaceRestoreHelper`` (what the official ``GFPGANer``
runs), rebuilt on OpenCV's YuNet detector and spandrel's GFPGAN architecture:

1. ``FaceDetector``: YuNet (``cv2.FaceDetectorYN``) on the *original* image
   gives a box, five landmarks and a score per face.
2. ``alignment_matrix``: the similarity transform (rotation, uniform scale,
   shift) that maps the five landmarks best onto the FFHQ 512x512 template
   (least squares, closed form);
   ``align_face`` cuts the 512x512 crop with it.
3. ``FaceModel``: GFPGAN on the crop, with the official normalisation to
   [-1, 1] (spandrel's descriptor call does not do it for GFPGAN; see ``FaceModel``).
4. ``paste_face``: the restored crop goes back through the inverse transform,
   scaled to the upscaled image, under a soft mask; pixels where the mask is 0
   keep the upscaled image's exact values.

``FaceRestorer.restore(original, upscaled, scale)`` runs all four.

Coordinates are those of OpenCV (pixel centres at integers). A point ``x`` of
the input lies at ``s * x + (s - 1) / 2`` in an image enlarged ``s`` times: the
centre of the ``s x s`` block the pixel became (facexlib adds ``s / 2``, half
an output pixel off).

Other layouts: the network sees RGB. Grayscale images are detected and
restored as RGB and the restored face is converted back to gray; RGBA images
are restored in their colour channels and alpha is never touched; 16-bit
images keep 16-bit precision through the crop and the paste (the detector
alone sees an 8-bit copy).
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import spandrel
import torch
from spandrel import ImageModelDescriptor

from .errors import BadRequestError, InferenceError, ModelMismatchError
from .manifest import ModelSpec, get_spec
from .runtimes.torch_runner import pick_device, pick_dtype
from .store import ModelStore

logger = logging.getLogger(__name__)

#: Edge of the aligned crop GFPGAN v1.3/v1.4 restore.
FACE_SIZE = 512

#: facexlib's five-point FFHQ template for 512x512 crops (``FaceRestoreHelper.face_template``):
#: the person's right eye, left eye, nose tip, right and left mouth corner, which is
#: YuNet's order. The person's right eye is the one on the image's left (x = 193).
FFHQ_TEMPLATE = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    dtype=np.float64,
)

#: facexlib's fill outside the image, (135, 133, 132) in its BGR order.
BORDER_RGB = (132, 133, 135)

# The blend mask, in crop pixels. facexlib builds it in output pixels from the face's area:
# w_edge = sqrt(area) / 20, erode by a 2 * w_edge kernel, Gaussian blur of size 2 * w_edge + 1.
# The crop's area is 512^2, so w_edge = 25.6: a 26 px inset and a 51 px blur (sigma 8).
# The blur's radius (25) is below the inset, so the crop's outermost pixels stay exactly 0.
_MASK_INSET = 26
_MASK_BLUR = 51

#: A warp that shrinks more than this first reduces its source with INTER_AREA (no aliasing).
_SHRINK_LIMIT = 2 / 3

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face, in pixels of the image it was found in."""

    #: x, y of the top-left corner, width, height.
    box: tuple[float, float, float, float]
    #: 5 x 2 float64 (x, y): right eye, left eye, nose tip, right mouth corner, left
    #: mouth corner; right and left of the person, as YuNet and FFHQ_TEMPLATE order them.
    landmarks: np.ndarray
    score: float

    @property
    def size(self) -> float:
        """The box's shorter side: what ``min_face_size`` compares."""
        return min(self.box[2], self.box[3])

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]


class FaceDetector:
    """YuNet through ``cv2.FaceDetectorYN``; ``detect`` is safe to call from many threads.

    A ``FaceDetectorYN`` holds its input size (``setInputSize`` before every
    image), so each call borrows an instance of its own from a pool that grows
    to the number of concurrent calls.
    """

    def __init__(
        self,
        model_path: Path | str,
        *,
        score_threshold: float = 0.8,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
        max_side: int = 1280,
    ) -> None:
        if not 0 < score_threshold <= 1 or not 0 < nms_threshold <= 1:
            raise ValueError("score_threshold and nms_threshold must be in (0, 1]")
        if top_k < 1 or max_side < 32:
            raise ValueError("top_k must be at least 1 and max_side at least 32")
        self.model_path = str(model_path)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        #: Images with a longer side are detected on a copy reduced to it. YuNet finds
        #: faces of about 10 to 300 px well; beyond that its scores fall and false
        #: positives rise, and a large image costs time for nothing.
        self.max_side = max_side
        self._idle: queue.SimpleQueue[cv2.FaceDetectorYN] = queue.SimpleQueue()
        self._idle.put(self._create())  # a wrong file fails here, not on the first request

    @classmethod
    def from_store(cls, store: ModelStore, name: str = "YuNet", **options: Any) -> FaceDetector:
        return cls(store.path(get_spec(name)), **options)

    def _create(self) -> cv2.FaceDetectorYN:
        try:
            return cv2.FaceDetectorYN.create(
                self.model_path, "", (320, 320), self.score_threshold, self.nms_threshold, self.top_k
            )
        except cv2.error as error:
            raise ModelMismatchError(f"{self.model_path}: not a YuNet face detector ({error.err})") from None

    def detect(self, pixels: np.ndarray) -> list[Face]:
        """Faces in ``pixels`` (H x W x C, C in 1/3/4, uint8/uint16), best score first."""
        _check_pixels(pixels, "pixels")
        bgr, factor = self._detector_input(pixels)
        try:
            detector = self._idle.get_nowait()
        except queue.Empty:
            detector = self._create()
        try:
            detector.setInputSize((bgr.shape[1], bgr.shape[0]))
            _, rows = detector.detect(bgr)
        except cv2.error as error:
            raise InferenceError(f"face detection failed: {error.err}") from None
        finally:
            self._idle.put(detector)
        if rows is None:
            return []
        faces = []
        for row in rows.astype(np.float64):
            # Back to the caller's pixels: centres scale about the half-pixel offset.
            landmarks = (row[4:14].reshape(5, 2) + 0.5) / factor - 0.5
            x, y = (row[0:2] + 0.5) / factor - 0.5
            width, height = row[2:4] / factor
            faces.append(Face((float(x), float(y), float(width), float(height)), landmarks, float(row[14])))
        return sorted(faces, key=lambda face: face.score, reverse=True)

    def _detector_input(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """An 8-bit BGR image for YuNet (reduced to ``max_side``) and its scale factors (x, y)."""
        eight = (pixels >> 8).astype(np.uint8) if pixels.dtype == np.uint16 else pixels
        if eight.shape[2] == 1:
            bgr = cv2.cvtColor(eight, cv2.COLOR_GRAY2BGR)
        else:
            bgr = cv2.cvtColor(np.ascontiguousarray(eight[:, :, :3]), cv2.COLOR_RGB2BGR)
        height, width = bgr.shape[:2]
        factor = min(1.0, self.max_side / max(height, width))
        if factor == 1.0:
            return bgr, np.ones(2)
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        return bgr, np.array([size[0] / width, size[1] / height])  # what the rounding produced


def alignment_matrix(landmarks: np.ndarray) -> np.ndarray | None:
    """The 2x3 similarity transform from image pixels to the 512x512 crop.

    Rotation, uniform scale and shift with the least squared distance between
    the five mapped landmarks and the FFHQ template (Umeyama's closed form). A
    similarity keeps the face's proportions, so the points land near, not on,
    the template's. facexlib fits the same model with ``cv2.estimateAffinePartial2D``
    (least median of squares, refined on its inliers), which is this optimum
    whenever it keeps all five points; the closed form is it always, in one
    deterministic step. None when the landmarks are degenerate (all in one
    point, not finite).
    """
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    if not np.isfinite(points).all():
        return None
    source, target = points - points.mean(axis=0), FFHQ_TEMPLATE - FFHQ_TEMPLATE.mean(axis=0)
    spread = float((source**2).sum())
    if spread < 1e-12:
        return None
    # The optimal rotation and scale in complex numbers: z -> c * z with c = sum(t * conj(s)) / sum(|s|^2).
    source_z = source[:, 0] + 1j * source[:, 1]
    target_z = target[:, 0] + 1j * target[:, 1]
    c = complex((target_z * source_z.conjugate()).sum()) / spread
    linear = np.array([[c.real, -c.imag], [c.imag, c.real]])
    if abs(np.linalg.det(linear)) < 1e-12:
        return None
    shift = FFHQ_TEMPLATE.mean(axis=0) - linear @ points.mean(axis=0)
    return np.hstack([linear, shift[:, None]])


def align_face(pixels: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The 512x512x3 RGB crop (``pixels``' dtype) that ``matrix`` maps the face to.

    Outside the image the crop is facexlib's gray; gray images are repeated to RGB.
    """
    top = np.iinfo(pixels.dtype).max
    border = tuple(float(value) * top / 255 for value in BORDER_RGB)
    if pixels.shape[2] == 1:
        crop = _warp(pixels[:, :, 0], matrix, (FACE_SIZE, FACE_SIZE), border[1])
        return np.repeat(crop[:, :, None], 3, axis=2)
    return _warp(np.ascontiguousarray(pixels[:, :, :3]), matrix, (FACE_SIZE, FACE_SIZE), border)


def paste_matrix(matrix: np.ndarray, scale: float) -> np.ndarray:
    """The 2x3 transform from crop pixels to the pixels of the image enlarged ``scale`` times."""
    inverse = cv2.invertAffineTransform(matrix) * scale
    inverse[:, 2] += (scale - 1) / 2
    return inverse


@cache
def face_mask() -> np.ndarray:
    """The blend mask in crop pixels: 1 on the face, a Gaussian ramp, exactly 0 at the edge."""
    mask = np.zeros((FACE_SIZE, FACE_SIZE), np.float32)
    mask[_MASK_INSET:-_MASK_INSET, _MASK_INSET:-_MASK_INSET] = 1.0
    mask = np.clip(cv2.GaussianBlur(mask, (_MASK_BLUR, _MASK_BLUR), 0), 0.0, 1.0)
    mask.setflags(write=False)
    return mask


def paste_face(
    output: np.ndarray, face: np.ndarray, matrix: np.ndarray, scale: float, *, weight: float = 1.0
) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """Blend a restored crop into ``output`` (modified in place) where the face came from.

    ``face``: 512x512x3 float RGB in [0, 1]; ``matrix``: the alignment of the
    face in the image ``output`` is ``scale`` times larger than. Per pixel,
    ``out = a * face + (1 - a) * out`` with ``a = weight * mask`` warped to the
    output; where ``a`` is 0 the pixel is left as it was, byte for byte. Colour
    channels only (alpha untouched); a 1-channel output gets the face in gray.
    Returns the region ``(x0, y0, x1, y1)`` written and its ``a``, or None when
    the face misses the image.
    """
    to_output = paste_matrix(matrix, scale)
    height, width = output.shape[:2]
    edge = FACE_SIZE - 1
    corners = np.array([[0, 0, 1], [edge, 0, 1], [0, edge, 1], [edge, edge, 1]], np.float64) @ to_output.T
    x0, y0 = (max(int(np.floor(v)) - 1, 0) for v in corners.min(axis=0))
    x1 = min(int(np.ceil(corners[:, 0].max())) + 2, width)
    y1 = min(int(np.ceil(corners[:, 1].max())) + 2, height)
    if x0 >= x1 or y0 >= y1:
        return None
    to_region = to_output.copy()
    to_region[:, 2] -= (x0, y0)
    size = (x1 - x0, y1 - y0)
    alpha = _warp(face_mask(), to_region, size, 0.0) * np.float32(weight)
    changed = alpha > 0
    if not changed.any():
        return None
    warped = _warp(np.ascontiguousarray(face, dtype=np.float32), to_region, size, (0.0, 0.0, 0.0))
    channels = slice(0, 1) if output.shape[2] == 1 else slice(0, 3)
    if output.shape[2] == 1:
        warped = cv2.cvtColor(warped, cv2.COLOR_RGB2GRAY)[:, :, None]
    top = np.iinfo(output.dtype).max
    region = output[y0:y1, x0:x1, channels]
    background = region.astype(np.float32)
    blended = background + alpha[:, :, None] * (warped * np.float32(top) - background)
    blended = np.clip(np.rint(blended), 0, top)
    region[...] = np.where(changed[:, :, None], blended, background).astype(output.dtype)
    return (x0, y0, x1, y1), alpha


def _warp(src: np.ndarray, matrix: np.ndarray, size: tuple[int, int], border: float | tuple[float, ...]) -> np.ndarray:
    """``cv2.warpAffine`` (bilinear, constant border) that does not alias when it shrinks.

    When the transform reduces by more than 1.5x, the part of ``src`` it reads
    is first reduced with INTER_AREA to about the result's scale.
    """

    def warp(image: np.ndarray, transform: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(
            image, transform, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=border
        )

    linear = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if linear >= _SHRINK_LIMIT:
        return warp(src, matrix)
    height, width = src.shape[:2]
    inverse = cv2.invertAffineTransform(matrix)
    w, h = size
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], np.float64) @ inverse.T
    margin = int(np.ceil(2 / linear)) + 1  # two reduced pixels of context on every side
    x0 = max(int(np.floor(corners[:, 0].min())) - margin, 0)
    y0 = max(int(np.floor(corners[:, 1].min())) - margin, 0)
    x1 = min(int(np.ceil(corners[:, 0].max())) + margin + 1, width)
    y1 = min(int(np.ceil(corners[:, 1].max())) + margin + 1, height)
    if x0 >= x1 or y0 >= y1:  # reads nothing of src: all border
        return warp(src, matrix)
    reduced = (max(1, round((x1 - x0) * linear)), max(1, round((y1 - y0) * linear)))
    small = cv2.resize(src[y0:y1, x0:x1], reduced, interpolation=cv2.INTER_AREA)
    fx, fy = (x1 - x0) / reduced[0], (y1 - y0) / reduced[1]
    # A pixel centre u of ``small`` is at x0 + (u + 0.5) * fx - 0.5 in ``src``.
    to_src = np.array([[fx, 0, x0 + 0.5 * fx - 0.5], [0, fy, y0 + 0.5 * fy - 0.5], [0, 0, 1]])
    return warp(small, matrix @ to_src)


def load_face_descriptor(path: Path | str, spec: ModelSpec | None = None) -> ImageModelDescriptor:
    """Load a GFPGAN weight file; spandrel detects the architecture from the state dict.

    (``engine.load_descriptor`` accepts super-resolution networks only, and
    spandrel gives GFPGAN the purpose "FaceSR".)
    """
    try:
        descriptor = spandrel.ModelLoader().load_from_file(str(path))
    except spandrel.UnsupportedModelError as error:
        raise ModelMismatchError(f"{path}: not a known network architecture ({error})") from None
    if not isinstance(descriptor, ImageModelDescriptor) or descriptor.architecture.id != "GFPGAN":
        found = getattr(getattr(descriptor, "architecture", None), "id", type(descriptor).__name__)
        raise ModelMismatchError(f"{path}: holds a {found} network, not GFPGAN")
    if spec and spec.architecture != descriptor.architecture.id:
        raise ModelMismatchError(f"{path}: holds a GFPGAN network, but {spec.name} is a {spec.architecture} network")
    return descriptor


class FaceModel:
    """GFPGAN on one device; ``restore`` is safe to call from many threads.

    The official ``GFPGANer`` feeds the network ``normalize(crop / 255, 0.5, 0.5)``,
    i.e. [-1, 1], and reads its output as [-1, 1]. spandrel 0.4's descriptor call
    for GFPGAN passes its [0, 1] input straight through and clamps the output to
    [0, 1], which is wrong for the official weights, so this class calls the
    network module itself with the official mapping. ``randomize_noise=False``
    uses the noise maps stored in the weight file, so a face restores the same way
    every time (the official helper draws new noise per call; the difference is
    fine texture). fp16 only where spandrel marks the network as safe for it (it
    does not for GFPGAN: fp32 on CUDA too).
    """

    def __init__(
        self,
        descriptor: ImageModelDescriptor,
        *,
        name: str = "GFPGAN",
        device: str | torch.device = "auto",
        half: bool | None = None,
        randomize_noise: bool = False,
    ) -> None:
        if descriptor.architecture.id != "GFPGAN":
            raise ModelMismatchError(f"{name}: {descriptor.architecture.id} is not GFPGAN")
        self.name = name
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, half, descriptor.supports_half)
        self.descriptor = descriptor.to(self.device, self.dtype).eval()
        self.randomize_noise = randomize_noise

    @classmethod
    def from_file(cls, path: Path | str, spec: ModelSpec | None = None, **options: Any) -> FaceModel:
        name = spec.name if spec else Path(path).stem
        return cls(load_face_descriptor(path, spec), name=name, **options)

    def restore(self, crop: np.ndarray) -> np.ndarray:
        """Restore an aligned 512x512x3 RGB crop (uint8/uint16); float32 RGB in [0, 1]."""
        if crop.shape != (FACE_SIZE, FACE_SIZE, 3) or crop.dtype not in (np.uint8, np.uint16):
            raise BadRequestError(f"a face crop must be {FACE_SIZE}x{FACE_SIZE}x3 uint8/uint16")
        top = float(np.iinfo(crop.dtype).max)
        x = torch.from_numpy(crop.astype(np.float32)).permute(2, 0, 1)[None].to(self.device)
        x = x.mul_(2 / top).sub_(1).to(self.dtype)
        with torch.inference_mode():
            try:
                out: torch.Tensor = self.descriptor.model(x, return_rgb=False, randomize_noise=self.randomize_noise)[0]
            except torch.OutOfMemoryError:
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                raise InferenceError(f"{self.name}: out of memory on {self.device}") from None
            except RuntimeError as error:
                raise InferenceError(f"{self.name} failed on a face: {error}") from error
            out = out.float()
            if not torch.isfinite(out).all():
                raise InferenceError(f"{self.name} produced non-finite values on a face")
            out = out.add_(1).mul_(0.5).clamp_(0, 1)
        return out[0].permute(1, 2, 0).cpu().numpy()


@dataclass(frozen=True, eq=False)
class PastedFace:
    face: Face
    #: x0, y0, x1, y1 of the output region the face was blended into.
    region: tuple[int, int, int, int]
    #: Blend weight per pixel of ``region``, float32: 0 = upscaled image untouched, 1 = restored face.
    alpha: np.ndarray


@dataclass(frozen=True, eq=False)
class FaceRestoration:
    image: np.ndarray
    #: In the order they were pasted (largest face first).
    faces: list[PastedFace]


class FaceRestorer:
    """Detector + GFPGAN + paste-back; ``restore`` is safe to call from many threads.

    ``max_faces``: at most this many faces are restored, the largest first (a
    face costs one 512x512 GFPGAN pass, about 0.4 TFLOP). ``min_face_size``:
    faces whose box has a shorter side below this (input pixels) are left alone.
    ``weight``: 1 pastes the restored face as it is (the official result:
    ``GFPGANer`` hands its ``weight`` to GFPGANv1Clean, which ignores it); below
    1 the restored face is mixed with the upscaled image under the same mask,
    and 0 changes nothing.
    """

    def __init__(
        self,
        detector: FaceDetector,
        model: FaceModel,
        *,
        max_faces: int = 10,
        min_face_size: float = 32,
        weight: float = 1.0,
    ) -> None:
        if max_faces < 0 or min_face_size < 0:
            raise ValueError("max_faces and min_face_size must not be negative")
        _check_weight(weight)
        self.detector = detector
        self.model = model
        self.max_faces = max_faces
        self.min_face_size = min_face_size
        self.weight = weight

    @classmethod
    def from_files(
        cls,
        detector_path: Path | str,
        model_path: Path | str,
        spec: ModelSpec | None = None,
        *,
        device: str | torch.device = "auto",
        half: bool | None = None,
        score_threshold: float = 0.8,
        nms_threshold: float = 0.3,
        max_side: int = 1280,
        **options: Any,
    ) -> FaceRestorer:
        detector = FaceDetector(
            detector_path, score_threshold=score_threshold, nms_threshold=nms_threshold, max_side=max_side
        )
        return cls(detector, FaceModel.from_file(model_path, spec, device=device, half=half), **options)

    @classmethod
    def from_store(
        cls, store: ModelStore, name: str = "GFPGANv1.4", detector: str = "YuNet", **options: Any
    ) -> FaceRestorer:
        spec = get_spec(name)
        return cls.from_files(store.path(get_spec(detector)), store.path(spec), spec, **options)

    def find_faces(self, pixels: np.ndarray) -> list[Face]:
        """The faces ``restore`` would restore: large enough, the largest ``max_faces``."""
        faces = [face for face in self.detector.detect(pixels) if face.size >= self.min_face_size]
        faces.sort(key=lambda face: (face.area, face.score), reverse=True)
        return faces[: self.max_faces]

    def restore(
        self, original: np.ndarray, upscaled: np.ndarray, scale: float, **options: Any
    ) -> tuple[np.ndarray, int]:
        """``upscaled`` with the faces of ``original`` restored, and how many were.

        Without a face to restore, ``upscaled`` itself comes back (not a copy).
        Neither input is modified. Options as for ``process``.
        """
        result = self.process(original, upscaled, scale, **options)
        return result.image, len(result.faces)

    def process(
        self,
        original: np.ndarray,
        upscaled: np.ndarray,
        scale: float,
        *,
        weight: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> FaceRestoration:
        """``restore`` with the details: each pasted face, its region and blend mask.

        ``original``: the image the upscaler got (H x W x C, C in 1/3/4, uint8/uint16);
        ``upscaled``: its enlargement by ``scale``, same channels and dtype.
        ``on_progress(done, total)`` runs after each face (it may raise, e.g. on a
        deadline; the inputs are untouched either way).
        """
        _check_pixels(original, "original")
        _check_pixels(upscaled, "upscaled")
        if not scale > 0:
            raise BadRequestError("scale must be positive")
        expected = (round(original.shape[0] * scale), round(original.shape[1] * scale), original.shape[2])
        if upscaled.shape != expected or upscaled.dtype != original.dtype:
            raise BadRequestError(
                f"upscaled must be {expected[1]}x{expected[0]}x{expected[2]} {original.dtype} "
                f"for a x{scale} enlargement, got {upscaled.shape[1]}x{upscaled.shape[0]}x"
                f"{upscaled.shape[2]} {upscaled.dtype}"
            )
        weight = self.weight if weight is None else weight
        if not 0 <= weight <= 1:
            raise BadRequestError("weight must be between 0 and 1")
        if weight == 0 or self.max_faces == 0:
            return FaceRestoration(upscaled, [])
        faces = self.find_faces(original)
        output: np.ndarray | None = None
        pasted: list[PastedFace] = []
        for done, face in enumerate(faces, 1):
            matrix = alignment_matrix(face.landmarks)
            if matrix is None:
                logger.warning("skipping a face with degenerate landmarks at %s", face.box)
            else:
                restored = self.model.restore(align_face(original, matrix))
                if output is None:
                    output = upscaled.copy()
                placed = paste_face(output, restored, matrix, scale, weight=weight)
                if placed:
                    pasted.append(PastedFace(face, *placed))
            if on_progress:
                on_progress(done, len(faces))
        return FaceRestoration(output if pasted and output is not None else upscaled, pasted)


def _check_pixels(pixels: np.ndarray, name: str) -> None:
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3, 4):
        raise BadRequestError(f"{name} must be H x W x C with C = 1, 3 or 4")
    if pixels.dtype not in (np.uint8, np.uint16):
        raise BadRequestError(f"{name} must be uint8 or uint16")


def _check_weight(weight: float) -> None:
    if not 0 <= weight <= 1:
        raise ValueError("weight must be between 0 and 1")
