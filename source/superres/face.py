"""Face restoration with GFPGAN: find faces, align them, restore them, paste them back.

The steps of facexlib's ``FaceRestoreHelper`` (what the official ``GFPGANer``
runs), rebuilt on the YuNet detector and spandrel's GFPGAN architecture, with no
OpenCV: the networks run on a runtime (``superres.runtimes``), everything around
them is numpy (``superres.geometry``), the same on every host.

1. ``FaceDetector`` (``face_detection``): YuNet on the *original* image gives a
   box, five landmarks and a score per face.
2. ``alignment_matrix``: the similarity transform (rotation, uniform scale,
   shift) that maps the five landmarks best onto the FFHQ 512x512 template
   (least squares, closed form);
   ``align_face`` cuts the 512x512 crop with it.
3. ``FaceModel``: GFPGAN on the crop, through a runner: torch (spandrel's
   network, called with the official normalisation to [-1, 1]) or OpenVINO (that
   same call converted at a fixed 1x3x512x512).
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
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BadRequestError, InferenceError
from .face_detection import Face, FaceDetector, check_pixels
from .geometry import blurred_rectangle, invert_affine, rgb_to_gray, warp_affine
from .manifest import ModelSpec, get_spec
from .runtimes import Runner, Runtime, load_runner
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

ProgressCallback = Callable[[int, int], None]


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
        crop = warp_affine(pixels[:, :, 0], matrix, (FACE_SIZE, FACE_SIZE), border[1])
        return np.repeat(crop[:, :, None], 3, axis=2)
    return warp_affine(pixels[:, :, :3], matrix, (FACE_SIZE, FACE_SIZE), border)


def paste_matrix(matrix: np.ndarray, scale: float) -> np.ndarray:
    """The 2x3 transform from crop pixels to the pixels of the image enlarged ``scale`` times."""
    inverse = invert_affine(matrix) * scale
    inverse[:, 2] += (scale - 1) / 2
    return inverse


@cache
def face_mask() -> np.ndarray:
    """The blend mask in crop pixels: 1 on the face, a Gaussian ramp, exactly 0 at the edge."""
    mask = blurred_rectangle(FACE_SIZE, _MASK_INSET, _MASK_BLUR)
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
    alpha = warp_affine(face_mask(), to_region, size, 0.0) * np.float32(weight)
    changed = alpha > 0
    if not changed.any():
        return None
    warped = warp_affine(face.astype(np.float32, copy=False), to_region, size, (0.0, 0.0, 0.0))
    channels = slice(0, 1) if output.shape[2] == 1 else slice(0, 3)
    if output.shape[2] == 1:
        warped = rgb_to_gray(warped)[:, :, None]
    top = np.iinfo(output.dtype).max
    region = output[y0:y1, x0:x1, channels]
    background = region.astype(np.float32)
    blended = background + alpha[:, :, None] * (warped * np.float32(top) - background)
    blended = np.clip(np.rint(blended), 0, top)
    region[...] = np.where(changed[:, :, None], blended, background).astype(output.dtype)
    return (x0, y0, x1, y1), alpha


class FaceModel:
    """GFPGAN through a runner; ``restore`` is safe to call from many threads.

    The runner takes and gives [0, 1] RGB at 512x512: on torch, spandrel's network
    called as the official ``GFPGANer`` calls it (``runtimes.torch_runner.OfficialGfpganCall``:
    [-1, 1] in and out, the weight file's stored noise); on OpenVINO, that same call
    converted (by the release build, or on first use) at a fixed 1x3x512x512. fp32
    everywhere unless asked otherwise: spandrel does not mark GFPGAN safe for fp16, and
    its bf16 cannot be judged without the real weights.
    """

    def __init__(self, runner: Runner, *, name: str = "GFPGAN") -> None:
        if runner.info.scale != 1:
            raise ValueError(f"{name}: a face network restores at its input's size, not x{runner.info.scale}")
        self.runner = runner
        self.name = name

    @classmethod
    def from_file(
        cls, path: Path | str, spec: ModelSpec | None = None, *, runtime: Runtime = "auto", **options: Any
    ) -> FaceModel:
        """GFPGAN from its weight file or its released conversion (a folder); ``options`` as
        for ``runtimes.load_runner`` (device, bf16, threads, converted_dir...)."""
        spec = spec or get_spec("GFPGANv1.4")
        return cls(load_runner(path, spec, runtime=runtime, **options), name=spec.name)

    def restore(self, crop: np.ndarray) -> np.ndarray:
        """Restore an aligned 512x512x3 RGB crop (uint8/uint16); float32 RGB in [0, 1]."""
        if crop.shape != (FACE_SIZE, FACE_SIZE, 3) or crop.dtype not in (np.uint8, np.uint16):
            raise BadRequestError(f"a face crop must be {FACE_SIZE}x{FACE_SIZE}x3 uint8/uint16")
        batch = crop.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(np.iinfo(crop.dtype).max)
        out = self.runner.run(np.ascontiguousarray(batch))
        if not np.isfinite(out).all():
            raise InferenceError(f"{self.name} produced non-finite values on a face")
        restored: np.ndarray = out[0].transpose(1, 2, 0)
        return restored


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
        runtime: Runtime = "auto",
        device: str = "auto",
        bf16: bool | None = None,
        threads: int | None = None,
        streams: int = 1,
        converted_dir: Path | None = None,
        score_threshold: float = 0.8,
        nms_threshold: float = 0.3,
        max_side: int = 1280,
        **options: Any,
    ) -> FaceRestorer:
        """The detector and GFPGAN from their files or released conversions (folders);
        ``runtime`` to ``converted_dir`` choose GFPGAN's runner (``runtimes.load_runner``)."""
        detector = FaceDetector.from_file(
            detector_path,
            threads=threads,
            score_threshold=score_threshold,
            nms_threshold=nms_threshold,
            max_side=max_side,
        )
        model = FaceModel.from_file(
            model_path,
            spec,
            runtime=runtime,
            device=device,
            bf16=bf16,
            threads=threads,
            streams=streams,
            converted_dir=converted_dir,
        )
        return cls(detector, model, **options)

    @classmethod
    def from_store(
        cls, store: ModelStore, name: str = "GFPGANv1.4", detector: str = "YuNet", **options: Any
    ) -> FaceRestorer:
        """From the weight files in ``store``, else their released conversions."""
        spec = get_spec(name)
        return cls.from_files(store.network(get_spec(detector)), store.network(spec), spec, **options)

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
        check_pixels(original, "original")
        check_pixels(upscaled, "upscaled")
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


def _check_weight(weight: float) -> None:
    if not 0 <= weight <= 1:
        raise ValueError("weight must be between 0 and 1")
