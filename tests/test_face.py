"""Face restoration: the real YuNet detector, real geometry, GFPGAN's real architecture.

GFPGAN's weights are not available offline, so the network is GFPGANv1Clean
(spandrel's class, the configuration of v1.3/v1.4) with random weights, saved
in the official layout; the pipeline around it is checked exactly, the quality
of its faces cannot be.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from bench.metrics import psnr
from spandrel.architectures.GFPGAN import GFPGAN

from conftest import SHARED, load_photo, write_random_gfpgan
from superres.errors import BadRequestError, ModelMismatchError
from superres.face import (
    FACE_SIZE,
    FFHQ_TEMPLATE,
    FaceModel,
    FaceRestoration,
    FaceRestorer,
    PastedFace,
    align_face,
    alignment_matrix,
    face_mask,
    paste_face,
    paste_matrix,
)
from superres.face_detection import FaceDetector, suppress
from superres.manifest import get_spec
from superres.runtimes import RunnerInfo
from superres.runtimes.opencv_dnn import OpenCvGraph
from superres.runtimes.openvino_runner import OpenVinoGraph
from superres.runtimes.torch_runner import load_descriptor
from superres.store import FileStatus, ModelStore

YUNET = SHARED / "models" / "face_detection_yunet_2026may.onnx"


# GFPGANer's "clean" configuration for v1.3 and v1.4 (spandrel builds the same).
@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector.from_file(YUNET)


@pytest.fixture(scope="module")
def gfpgan_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_gfpgan(tmp_path_factory.mktemp("gfpgan") / "GFPGANv1.4.pth")


@pytest.fixture(scope="module")
def model(gfpgan_file: Path) -> FaceModel:
    return FaceModel.from_file(gfpgan_file, get_spec("GFPGANv1.4"), runtime="torch", device="cpu")


@pytest.fixture(scope="module")
def face_crop(astronaut: np.ndarray) -> np.ndarray:
    """160x160 around the astronaut's face (box about 90x113)."""
    return np.ascontiguousarray(astronaut[30:190, 140:300])


# --- detection ----------------------------------------------------------------------------


def test_the_manifest_knows_the_shared_detector_copy() -> None:
    store = ModelStore(SHARED / "models")
    assert store.verify(get_spec("YuNet")).status is FileStatus.KNOWN_COPY
    assert store.network(get_spec("YuNet")) == YUNET
    assert len(FaceDetector.from_store(store).detect(load_photo("astronaut.png"))) == 1


def test_detector_finds_the_astronaut_with_landmarks_in_yunet_order(detector, astronaut) -> None:
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.8
    x, y, w, h = face.box
    right_eye, left_eye, nose, right_mouth, left_mouth = face.landmarks
    assert ((face.landmarks >= (x, y)) & (face.landmarks <= (x + w, y + h))).all()
    # The person's right eye and mouth corner are on the image's left, like the template's.
    assert right_eye[0] < nose[0] < left_eye[0] and right_mouth[0] < left_mouth[0]
    assert max(right_eye[1], left_eye[1]) < nose[1] < min(right_mouth[1], left_mouth[1])


#: The people in the shared photos: the astronaut (colour) and the cameraman (gray).
FACES_IN_PHOTOS = {"astronaut.png": 1, "camera.png": 1}


@pytest.mark.parametrize("path", sorted((SHARED / "images").iterdir()), ids=lambda path: path.name)
def test_detector_finds_the_face_in_every_photo_of_a_person_and_none_elsewhere(detector, path) -> None:
    faces = detector.detect(load_photo(path.name))
    assert len(faces) == FACES_IN_PHOTOS.get(path.name, 0)
    for face in faces:
        right_eye, left_eye, nose, right_mouth, left_mouth = face.landmarks
        x, y, w, h = face.box
        assert face.score > 0.8 and face.size > 50
        assert ((face.landmarks >= (x, y)) & (face.landmarks <= (x + w, y + h))).all()
        # The cameraman turns his head: his nose tip passes his left eye, so only the pairs' order.
        assert right_eye[0] < left_eye[0] and right_mouth[0] < left_mouth[0]
        assert max(right_eye[1], left_eye[1]) < nose[1] < min(right_mouth[1], left_mouth[1])


@pytest.mark.parametrize("name", ["rocket.jpg", "chelsea.png"])
def test_detector_finds_no_face_in_a_rocket_or_a_cat(name) -> None:
    assert FaceDetector.from_file(YUNET, score_threshold=0.3).detect(load_photo(name)) == []


def test_detector_takes_gray_rgba_and_16_bit(detector, astronaut) -> None:
    reference = detector.detect(astronaut)[0].landmarks
    alpha = np.full((*astronaut.shape[:2], 1), 255, np.uint8)
    variants = {
        "rgba": np.concatenate([astronaut, alpha], axis=2),
        "16-bit": astronaut.astype(np.uint16) * 257,
        "gray": cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)[:, :, None],
    }
    for name, pixels in variants.items():
        faces = detector.detect(pixels)
        assert len(faces) == 1, name
        # Same 8-bit colour for RGBA and 16-bit; gray is another picture for YuNet.
        tolerance = 4.0 if name == "gray" else 1e-3  # gray: up to 3.1 px measured
        assert np.abs(faces[0].landmarks - reference).max() < tolerance, name


def test_detector_reduces_large_images_and_maps_back(astronaut) -> None:
    big = cv2.resize(astronaut, None, fx=2, fy=2, interpolation=cv2.INTER_LANCZOS4)
    (face,) = FaceDetector.from_file(YUNET, max_side=512).detect(big)
    (reference,) = FaceDetector.from_file(YUNET).detect(astronaut)
    # Detected on a copy reduced back to 512 px: the same landmarks, in the big image's pixels.
    assert np.abs(face.landmarks - (reference.landmarks * 2 + 0.5)).max() < 1.0


def opencv_faces(pixels: np.ndarray, score_threshold: float = 0.8) -> np.ndarray:
    """``cv2.FaceDetectorYN`` (the oracle) on ``pixels``: rows of box, landmarks, score."""
    bgr = cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR) if pixels.shape[2] == 1 else pixels[:, :, 2::-1].copy()
    oracle = cv2.FaceDetectorYN.create(str(YUNET), "", (bgr.shape[1], bgr.shape[0]), score_threshold, 0.3, 5000)
    _, rows = oracle.detect(bgr)
    return np.zeros((0, 15)) if rows is None else rows.astype(np.float64)


@pytest.mark.parametrize("path", sorted((SHARED / "images").iterdir()), ids=lambda path: path.name)
def test_detection_agrees_with_opencvs_face_detector_on_every_photo(detector, path) -> None:
    """Our decoding and suppression of YuNet's raw outputs (on OpenVINO here) against OpenCV's
    ``FaceDetectorYN``, which runs the same graph and decodes it in C++: the same faces, boxes
    and landmarks within 0.001 px, scores within 1e-5. Measured at score 0.5 (five faces: the
    astronaut, the cameraman and three false ones in the Hubble field): boxes within 3.1e-5 px
    (float32 rounding of the box's size), landmarks equal, scores within 6e-8."""
    pixels = load_photo(path.name)
    expected = opencv_faces(pixels, score_threshold=0.5)
    faces = FaceDetector.from_file(YUNET, score_threshold=0.5).detect(pixels)
    assert len(faces) == len(expected)
    for face, row in zip(faces, expected, strict=True):
        assert np.abs(np.array(face.box) - row[:4]).max() < 1e-3
        assert np.abs(face.landmarks - row[4:14].reshape(5, 2)).max() < 1e-3
        assert abs(face.score - row[14]) < 1e-5


def test_opencv_dnn_and_openvino_run_the_detector_alike(astronaut) -> None:
    """The GPU container runs YuNet's graph on its OpenCV (no OpenVINO there): the same outputs."""
    blob = np.zeros((1, 3, 512, 512), np.float32)
    blob[0] = astronaut[:, :, ::-1].transpose(2, 0, 1)
    on_openvino = OpenVinoGraph(YUNET)(blob)
    on_opencv = OpenCvGraph(YUNET)(blob)
    assert set(on_opencv) <= set(on_openvino) and len(on_opencv) == 12
    for name, values in on_opencv.items():
        assert np.abs(values - on_openvino[name]).max() < 1e-4, name
    faces = [FaceDetector(network).detect(astronaut)[0] for network in (OpenVinoGraph(YUNET), OpenCvGraph(YUNET))]
    assert np.abs(faces[0].landmarks - faces[1].landmarks).max() < 1e-3


def test_non_maximum_suppression_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 5, 5], [0.9, 0.9, 9.9, 9.9]], np.float32)
    scores = np.array([0.9, 0.95, 0.85, 0.99], np.float32)
    # Box 3 truncates to (0, 0, 9, 9): IoU 0.81 with box 0, 0.64 with box 1; box 1 and 0: 0.68.
    assert suppress(boxes, scores, 0.8, 0.3, 5000).tolist() == [3, 2]
    assert suppress(boxes, scores, 0.8, 0.9, 5000).tolist() == [3, 1, 0, 2]
    assert suppress(boxes, scores, 0.8, 0.9, 2).tolist() == [3, 1]
    assert suppress(boxes, scores, 0.92, 0.9, 5000).tolist() == [3, 1]


def test_detector_is_thread_safe(detector, astronaut, face_crop) -> None:
    images = [astronaut, face_crop, load_photo("camera.png"), load_photo("rocket.jpg")] * 4
    expected = [[face.box for face in detector.detect(image)] for image in images]
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(lambda image: [face.box for face in detector.detect(image)], images))
    assert found == expected


# --- geometry -----------------------------------------------------------------------------


def least_squares_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Umeyama's closed form: the similarity transform with the least squared error."""
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - src_mean, dst - dst_mean
    u, sigma, vt = np.linalg.svd(d.T @ s / len(src))
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt))])
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(sigma) @ sign) / (s**2).sum() * len(src)
    return np.hstack([scale * rotation, (dst_mean - scale * rotation @ src_mean)[:, None]])


def aligned(landmarks: np.ndarray) -> np.ndarray:
    """``alignment_matrix`` of landmarks that are not degenerate (it is None only for those)."""
    matrix = alignment_matrix(landmarks)
    assert matrix is not None, f"degenerate landmarks {landmarks.tolist()}"
    return matrix


def residuals(matrix: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    return np.linalg.norm(landmarks @ matrix[:, :2].T + matrix[:, 2] - FFHQ_TEMPLATE, axis=1)


def test_alignment_is_exact_for_a_face_with_the_template_proportions() -> None:
    angle = np.radians(12)
    similarity = 0.35 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = FFHQ_TEMPLATE @ similarity.T + (150.0, 80.0)
    assert residuals(aligned(landmarks), landmarks).max() < 1e-3


def test_alignment_is_the_best_similarity_for_the_real_landmarks(detector, astronaut) -> None:
    landmarks = detector.detect(astronaut)[0].landmarks
    matrix = aligned(landmarks)
    ours = residuals(matrix, landmarks)
    optimum = residuals(least_squares_similarity(landmarks, FFHQ_TEMPLATE), landmarks)
    # A similarity cannot reshape a face: the astronaut's five points miss the FFHQ template by
    # 3-10 crop pixels (1-3.4 input pixels), and no similarity does better than this fit.
    assert np.sqrt(np.mean(ours**2)) <= np.sqrt(np.mean(optimum**2)) + 1e-3
    assert ours.max() < 11.0
    # Each point lands nearest its own template point: the orders agree.
    mapped = landmarks @ matrix[:, :2].T + matrix[:, 2]
    nearest = np.linalg.norm(mapped[:, None] - FFHQ_TEMPLATE[None], axis=2).argmin(axis=1)
    assert nearest.tolist() == [0, 1, 2, 3, 4]


def test_paste_matrix_inverts_the_alignment_at_any_scale(detector, astronaut) -> None:
    landmarks = detector.detect(astronaut)[0].landmarks
    matrix = aligned(landmarks)
    on_crop = landmarks @ matrix[:, :2].T + matrix[:, 2]
    for scale in (1, 2, 4):
        back = on_crop @ paste_matrix(matrix, scale)[:, :2].T + paste_matrix(matrix, scale)[:, 2]
        assert np.abs(back - (landmarks * scale + (scale - 1) / 2)).max() < 1e-9


@pytest.mark.parametrize("scale", [1, 4])
def test_pasting_the_aligned_crop_back_lands_on_the_face(detector, astronaut, scale) -> None:
    """The unrestored crop pasted into a Lanczos enlargement must coincide with it.

    At x4 the crop is enlarged 1.4x on the way back; at x1 it shrinks 2.9x (the reduce-first path).
    """
    matrix = aligned(detector.detect(astronaut)[0].landmarks)
    crop = align_face(astronaut, matrix).astype(np.float32) / 255
    background = cv2.resize(astronaut, None, fx=scale, fy=scale, interpolation=cv2.INTER_LANCZOS4)

    def shift_of(matrix: np.ndarray) -> tuple[np.ndarray, float]:
        """Sub-pixel shift (phase correlation) of the pasted face against the background, and PSNR."""
        output = background.copy()
        placed = paste_face(output, crop, matrix, scale)
        assert placed is not None, "the face missed the image"
        (x0, y0, _, _), alpha = placed
        rows, cols = np.nonzero(alpha > 0.99)
        quality = psnr(background[rows + y0, cols + x0], output[rows + y0, cols + x0])
        # The middle of the fully pasted area: nothing but pasted pixels.
        top, bottom = (3 * rows.min() + rows.max()) // 4 + y0, (rows.min() + 3 * rows.max()) // 4 + y0
        left, right = (3 * cols.min() + cols.max()) // 4 + x0, (cols.min() + 3 * cols.max()) // 4 + x0
        gray = [
            cv2.cvtColor(image[top:bottom, left:right], cv2.COLOR_RGB2GRAY).astype(np.float64)
            for image in (background, output)
        ]
        window = cv2.createHanningWindow(gray[0].shape[::-1], cv2.CV_64F)
        (dx, dy), _ = cv2.phaseCorrelate(gray[0], gray[1], window)
        return np.array([dx, dy]), quality

    shift, quality = shift_of(matrix)
    assert np.abs(shift).max() < 0.1  # output pixels; measured 0.03 (x4) and 0.02 (x1)
    assert quality > (35 if scale == 4 else 30)  # measured 38.7 and 33.0 dB
    # The measurement sees a misplacement: the crop moved one input pixel right lands `scale` px off.
    moved = matrix.copy()
    moved[:, 2] -= matrix[:, 0]
    shift, _ = shift_of(moved)
    assert np.abs(shift - (scale, 0)).max() < 0.1


def test_a_face_larger_than_the_crop_is_reduced_without_aliasing(detector, astronaut) -> None:
    matrix = aligned(detector.detect(astronaut)[0].landmarks)
    reference = align_face(astronaut, matrix)
    big = cv2.resize(astronaut, None, fx=6, fy=6, interpolation=cv2.INTER_LANCZOS4)
    # The same alignment in the 6x image's pixels (x = (X - 2.5) / 6): it shrinks about 2x.
    on_big = matrix.copy()
    on_big[:, :2] /= 6
    on_big[:, 2] -= on_big[:, :2].sum(axis=1) * 2.5
    naive = cv2.warpAffine(big, on_big, (FACE_SIZE, FACE_SIZE), borderValue=(132, 133, 135))
    ours = psnr(align_face(big, on_big), reference)
    assert ours > 40 and ours > psnr(naive, reference) + 1  # measured 41.2 and 39.7 dB


def test_the_mask_is_soft_and_zero_at_the_crop_edge() -> None:
    mask = face_mask()
    assert mask[0].max() == mask[-1].max() == mask[:, 0].max() == mask[:, -1].max() == 0
    assert mask[FACE_SIZE // 2, FACE_SIZE // 2] == pytest.approx(1.0, abs=1e-6)
    ramp = mask[FACE_SIZE // 2, : FACE_SIZE // 2]
    assert (np.diff(ramp) >= -1e-7).all() and ((ramp > 0.01) & (ramp < 0.99)).sum() > 20


# Alignment by a pure translation: crop pixel (u, v) is image pixel (u - 40, v + 30). Pasting
# back is then an integer shift, so the expected blend follows from the inputs in closed form:
# no interpolation, and the face hangs 40 px over the image's left edge.
SHIFT_X, SHIFT_Y = 40, -30
SHIFTED = np.array([[1.0, 0.0, SHIFT_X], [0.0, 1.0, SHIFT_Y]])


def _gradient_face() -> np.ndarray:
    """A 512x512 crop whose every pixel differs from its neighbours: red follows u, green v."""
    v, u = np.mgrid[:FACE_SIZE, :FACE_SIZE].astype(np.float32) / (FACE_SIZE - 1)
    return np.dstack([u, v, np.full_like(u, 0.5)])


def _shifted_mask(shape: tuple[int, ...]) -> np.ndarray:
    """face_mask() placed by SHIFTED in an image of ``shape``: 0 where the crop does not reach."""
    alpha = np.zeros(shape[:2])
    alpha[-SHIFT_Y : -SHIFT_Y + FACE_SIZE, : FACE_SIZE - SHIFT_X] = face_mask()[:, SHIFT_X:][: shape[0] + SHIFT_Y]
    return alpha


def _shifted(crop: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``crop`` placed by SHIFTED in an image of ``shape`` (zero where it does not reach)."""
    placed = np.zeros(shape[:2] + crop.shape[2:])
    placed[-SHIFT_Y : -SHIFT_Y + FACE_SIZE, : FACE_SIZE - SHIFT_X] = crop[:, SHIFT_X:][: shape[0] + SHIFT_Y]
    return placed


def test_paste_blends_16_bit_colour_and_keeps_alpha(astronaut: np.ndarray) -> None:
    face = _gradient_face()
    alpha_channel = (np.arange(astronaut.size // 3).reshape(astronaut.shape[:2]) % 256).astype(np.uint8)
    rgba16 = np.dstack([astronaut, alpha_channel]).astype(np.uint16) * 257
    before = rgba16.copy()
    assert paste_face(rgba16, face, SHIFTED, 1) is not None
    assert np.array_equal(rgba16[:, :, 3], before[:, :, 3])
    # out = a * face + (1 - a) * background, 16 bits deep.
    a = _shifted_mask(astronaut.shape)[:, :, None]
    background = before[:, :, :3].astype(np.float64)
    expected = np.rint(background + a * (_shifted(face, astronaut.shape) * 65535 - background))
    assert np.abs(rgba16[:, :, :3] - expected).max() <= 1
    assert (a > 0.99).sum() > 100_000  # most of the face is pasted, not a sliver
    untouched = a[:, :, 0] == 0
    assert np.array_equal(rgba16[untouched], before[untouched])


def test_paste_writes_gray_as_gray(astronaut: np.ndarray) -> None:
    face = _gradient_face()
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)[:, :, None]
    before = gray.copy()
    assert paste_face(gray, face, SHIFTED, 1) is not None
    # ITU-R BT.601 luma of the face, as the gray image's own conversion weighs R, G and B.
    luma = _shifted(face, astronaut.shape) @ np.array([0.299, 0.587, 0.114])
    a = _shifted_mask(astronaut.shape)
    background = before[:, :, 0].astype(np.float64)
    expected = np.rint(background + a * (luma * 255 - background))
    assert np.abs(gray[:, :, 0] - expected).max() <= 1
    assert np.array_equal(gray[a == 0], before[a == 0])


# --- GFPGAN -------------------------------------------------------------------------------


def test_random_gfpgan_weights_in_the_official_layout_load_as_gfpgan(model) -> None:
    # ``model`` came through FaceModel.from_file -> load_runner -> load_descriptor -> spandrel's detection.
    descriptor = model.runner.descriptor
    assert descriptor.architecture.id == get_spec("GFPGANv1.4").architecture == "GFPGAN"
    assert isinstance(descriptor.model, GFPGAN)
    assert (descriptor.purpose, descriptor.scale) == ("FaceSR", 1)
    # Not compiled for one shape (torch takes GFPGAN's 512x512 as it takes any).
    assert model.runner.info == RunnerInfo("torch", "cpu", "fp32", 1)
    with pytest.raises(ModelMismatchError, match="not a face restoration network"):
        load_descriptor(SHARED / "models" / "realesr-animevideov3.ncnn-fp16.pth", get_spec("GFPGANv1.4"))


def test_gfpgan_on_openvino_restores_what_torch_restores(model, gfpgan_file, detector, astronaut, tmp_path) -> None:
    """The Lambda stack's GFPGAN: the official call converted to OpenVINO IR at 1x3x512x512
    (as the release build converts it), chosen by default on the CPU, in fp32 (measured:
    0.0006 of 255 from torch fp32 at most)."""
    on_openvino = FaceModel.from_file(gfpgan_file, get_spec("GFPGANv1.4"), device="cpu", converted_dir=tmp_path)
    assert on_openvino.runner.info == RunnerInfo("openvino", "cpu", "fp32", 1, fixed_shape=True)
    crop = align_face(astronaut, aligned(detector.detect(astronaut)[0].landmarks))
    assert np.abs(on_openvino.restore(crop) - model.restore(crop)).max() * 255 < 0.01


def test_end_to_end_restores_the_face_and_nothing_else(detector, model, compact, face_crop) -> None:
    restorer = FaceRestorer(detector, model)
    upscaled = compact.upscale(face_crop, 4)
    inputs = (face_crop.copy(), upscaled.copy())
    seen = {}

    def record(module, args, kwargs, output) -> None:
        seen["input"], seen["output"] = args[0].clone(), output[0].clone()

    hook = model.runner.descriptor.model.register_forward_hook(record, with_kwargs=True)
    try:
        result = restorer.process(face_crop, upscaled, 4)
    finally:
        hook.remove()
    assert len(result.faces) == 1
    assert np.array_equal(face_crop, inputs[0]) and np.array_equal(upscaled, inputs[1])
    pasted = result.faces[0]
    x0, y0, x1, y1 = pasted.region
    touched = np.zeros(upscaled.shape[:2], bool)
    touched[y0:y1, x0:x1] = pasted.alpha > 0
    assert np.array_equal(result.image[~touched], upscaled[~touched])
    core = np.zeros_like(touched)
    core[y0:y1, x0:x1] = pasted.alpha > 0.5
    assert (result.image != upscaled).any(axis=2)[core].mean() > 0.9

    # The official normalisation: the network gets the crop in [-1, 1] ...
    matrix = aligned(pasted.face.landmarks)
    crop = align_face(face_crop, matrix).astype(np.float32) / 255
    assert torch.allclose(seen["input"][0].permute(1, 2, 0), torch.from_numpy(crop * 2 - 1), atol=1e-6)
    # ... and its output, read as [-1, 1], is what was pasted: it and the mask carried to the x4
    # image by the inverse alignment (input pixel centre x is output 4x + 1.5), then blended.
    face = ((seen["output"][0].permute(1, 2, 0).numpy() + 1) * 0.5).clip(0, 1)
    to_output = np.asarray(cv2.invertAffineTransform(matrix), np.float64) * 4
    to_output[:, 2] += 1.5
    size = (upscaled.shape[1], upscaled.shape[0])
    a = cv2.warpAffine(face_mask(), to_output, size, flags=cv2.INTER_LINEAR, borderValue=0)[:, :, None]
    warped = cv2.warpAffine(face, to_output, size, flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    expected = np.rint(upscaled + a.astype(np.float64) * (warped * 255.0 - upscaled))
    assert np.abs(result.image - expected).max() <= 1  # float32 rounding: measured 1


def test_an_image_without_faces_comes_back_as_it_was(detector, model, compact) -> None:
    original = cv2.resize(load_photo("rocket.jpg"), (160, 107), interpolation=cv2.INTER_AREA)
    upscaled = compact.upscale(original, 2)
    image, count = FaceRestorer(detector, model).restore(original, upscaled, 2)
    assert count == 0 and image is upscaled


def test_min_face_size_and_max_faces(detector, model, face_crop) -> None:
    small = cv2.resize(face_crop, (96, 96), interpolation=cv2.INTER_AREA)
    two = np.concatenate([face_crop, cv2.copyMakeBorder(small, 32, 32, 0, 0, cv2.BORDER_REPLICATE)], axis=1)
    sizes = [face.size for face in FaceRestorer(detector, model).find_faces(two)]
    assert len(sizes) == 2 and sizes[0] > 80 and 40 < sizes[1] < 70  # largest first
    assert len(FaceRestorer(detector, model, max_faces=1).find_faces(two)) == 1
    assert FaceRestorer(detector, model, max_faces=1).find_faces(two)[0].size == sizes[0]
    assert [f.size for f in FaceRestorer(detector, model, min_face_size=75).find_faces(two)] == sizes[:1]
    # Nothing left to restore: no network pass, the upscaled image itself comes back.
    upscaled = cv2.resize(two, None, fx=2, fy=2, interpolation=cv2.INTER_LANCZOS4)
    for restorer in (FaceRestorer(detector, model, min_face_size=200), FaceRestorer(detector, model, max_faces=0)):
        image, count = restorer.restore(two, upscaled, 2)
        assert count == 0 and image is upscaled
    image, count = FaceRestorer(detector, model).restore(two, upscaled, 2, weight=0.0)
    assert count == 0 and image is upscaled


def test_bad_inputs_are_refused(detector, model, face_crop) -> None:
    restorer = FaceRestorer(detector, model)
    with pytest.raises(BadRequestError, match="upscaled must be 640x640x3"):
        restorer.restore(face_crop, face_crop, 4)
    with pytest.raises(BadRequestError, match="weight"):
        restorer.restore(face_crop, face_crop, 1, weight=1.5)
    with pytest.raises(BadRequestError, match="uint8 or uint16"):
        restorer.restore(face_crop.astype(np.float32), face_crop, 1)
    with pytest.raises(ValueError):
        FaceRestorer(detector, model, weight=-0.1)
    with pytest.raises(ModelMismatchError):
        FaceDetector.from_file(SHARED / "models" / "realesr-animevideov3.ncnn-fp16.pth")


# --- edge cases ---------------------------------------------------------------------------


def _restore_x2(restorer: FaceRestorer, pixels: np.ndarray) -> tuple[np.ndarray, FaceRestoration]:
    """The Lanczos x2 background and ``restorer.process`` of ``pixels`` on it."""
    upscaled = cv2.resize(pixels, None, fx=2, fy=2, interpolation=cv2.INTER_LANCZOS4)
    if upscaled.ndim == 2:
        upscaled = upscaled[:, :, None]
    return upscaled, restorer.process(pixels, upscaled, 2)


def _weights(shape: tuple[int, ...], pasted: PastedFace) -> np.ndarray:
    """A pasted face's blend weight over the whole output image."""
    x0, y0, x1, y1 = pasted.region
    weight = np.zeros(shape[:2], np.float32)
    weight[y0:y1, x0:x1] = pasted.alpha
    return weight


def test_a_face_cut_by_the_image_border_is_restored_within_the_image(detector, model, astronaut) -> None:
    cut = np.ascontiguousarray(astronaut[:, 200:])  # the left 22 px of the face are gone
    (face,) = detector.detect(cut)
    assert face.box[0] < 0  # YuNet places the box past the edge
    matrix = aligned(face.landmarks)
    # The crop's part beyond the image is facexlib's gray.
    crop = align_face(cut, matrix)
    assert (crop[FACE_SIZE // 2, :20] == (132, 133, 135)).all()
    upscaled, result = _restore_x2(FaceRestorer(detector, model), cut)
    (pasted,) = result.faces
    assert result.image.shape == upscaled.shape
    weight = _weights(upscaled.shape, pasted)
    assert weight[:, 0].max() > 0.99  # pasted up to the edge
    assert np.array_equal(result.image[weight == 0], upscaled[weight == 0])


def test_two_overlapping_faces_are_both_restored(detector, model, face_crop) -> None:
    # The face and its mirror image, side by side, their boxes overlapping.
    pair = np.concatenate([face_crop, face_crop[:, ::-1]], axis=1)
    pair = np.ascontiguousarray(np.delete(pair, np.s_[116:206], axis=1))
    first, second = detector.detect(pair)
    left, right = sorted([first.box, second.box])
    assert left[0] + left[2] > right[0] + 20  # overlap by more than 20 px
    upscaled, result = _restore_x2(FaceRestorer(detector, model), pair)
    assert len(result.faces) == 2
    weights = [_weights(upscaled.shape, pasted) for pasted in result.faces]
    assert ((weights[0] > 0) & (weights[1] > 0)).sum() > 1000  # their pastes overlap too
    untouched = (weights[0] == 0) & (weights[1] == 0)
    assert np.array_equal(result.image[untouched], upscaled[untouched])
    # The face pasted last shows where it is whole, the first where only it reaches.
    last, first_only = weights[1] > 0.999, (weights[0] > 0.999) & (weights[1] == 0)
    assert last.sum() > 10_000 and first_only.sum() > 10_000
    for region in (last, first_only):
        assert (result.image != upscaled).any(axis=2)[region].mean() > 0.9


def test_a_face_below_min_face_size_is_found_but_left_alone(detector, model, astronaut) -> None:
    small = cv2.resize(astronaut, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    (face,) = detector.detect(small)
    assert face.size < 32  # 20 px
    restorer = FaceRestorer(detector, model)
    assert restorer.min_face_size == 32
    upscaled, result = _restore_x2(restorer, small)
    assert result.faces == [] and result.image is upscaled
    _, result = _restore_x2(FaceRestorer(detector, model, min_face_size=16), small)
    assert len(result.faces) == 1


def test_a_grayscale_portrait_is_restored_in_gray(detector, model) -> None:
    cameraman = load_photo("camera.png")
    assert cameraman.shape == (512, 512, 1)
    upscaled, result = _restore_x2(FaceRestorer(detector, model), cameraman)
    (pasted,) = result.faces
    assert result.image.shape == (1024, 1024, 1) and result.image.dtype == np.uint8
    weight = _weights(upscaled.shape, pasted)
    assert np.array_equal(result.image[weight == 0], upscaled[weight == 0])
    assert (result.image != upscaled)[weight > 0.999].mean() > 0.9
