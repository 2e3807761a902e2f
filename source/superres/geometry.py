"""Image geometry in numpy: affine warps, area reduction, a Gaussian-blurred mask.

What face restoration needs from OpenCV (``warpAffine``, ``resize`` with ``INTER_AREA``,
``GaussianBlur``, ``invertAffineTransform``), computed the same way on every host, so the
Lambda zip (no OpenCV) and the GPU container (its own OpenCV) give one result.

Coordinates are OpenCV's: pixel centres at integers. A 2x3 matrix maps a source point
``(x, y, 1)`` to the destination.
"""

from __future__ import annotations

import numpy as np

#: A warp that shrinks more than this first reduces its source by area (no aliasing).
SHRINK_LIMIT = 2 / 3


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The 2x3 transform that undoes ``matrix`` (float64)."""
    full = np.vstack([np.asarray(matrix, np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def linear_scale(matrix: np.ndarray) -> float:
    """How much ``matrix`` enlarges lengths (the square root of its area factor)."""
    return float(np.sqrt(abs(np.linalg.det(np.asarray(matrix, np.float64)[:, :2]))))


def warp_affine(
    src: np.ndarray, matrix: np.ndarray, size: tuple[int, int], border: float | tuple[float, ...]
) -> np.ndarray:
    """``src`` (H x W or H x W x C) moved by ``matrix`` into a ``size`` = (width, height) image.

    Bilinear; a sample outside ``src`` reads ``border`` (a value per channel), so a pixel
    within one of the edge blends the two, as ``cv2.warpAffine`` with ``BORDER_CONSTANT``
    does (which steps its positions by 1/32 pixel; this does not). When ``matrix`` shrinks
    by more than 1.5x, the part of ``src`` it reads is first reduced by area to about the
    result's scale. Integer images come back rounded in their dtype, others as float32.
    """
    linear = linear_scale(matrix)
    if linear >= SHRINK_LIMIT:
        return _bilinear(src, matrix, size, border)
    height, width = src.shape[:2]
    w, h = size
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], np.float64)
    read = corners @ invert_affine(matrix).T
    margin = int(np.ceil(2 / linear)) + 1  # two reduced pixels of context on every side
    x0 = max(int(np.floor(read[:, 0].min())) - margin, 0)
    y0 = max(int(np.floor(read[:, 1].min())) - margin, 0)
    x1 = min(int(np.ceil(read[:, 0].max())) + margin + 1, width)
    y1 = min(int(np.ceil(read[:, 1].max())) + margin + 1, height)
    if x0 >= x1 or y0 >= y1:  # reads nothing of src: all border
        return _bilinear(src, matrix, size, border)
    reduced = (max(1, round((x1 - x0) * linear)), max(1, round((y1 - y0) * linear)))
    small = area_resize(src[y0:y1, x0:x1], reduced)
    fx, fy = (x1 - x0) / reduced[0], (y1 - y0) / reduced[1]
    # A pixel centre u of ``small`` is at x0 + (u + 0.5) * fx - 0.5 in ``src``.
    to_src = np.array([[fx, 0, x0 + 0.5 * fx - 0.5], [0, fy, y0 + 0.5 * fy - 0.5], [0, 0, 1]])
    return _bilinear(small, np.asarray(matrix, np.float64) @ to_src, size, border)


def _bilinear(
    src: np.ndarray, matrix: np.ndarray, size: tuple[int, int], border: float | tuple[float, ...]
) -> np.ndarray:
    height, width = src.shape[:2]
    channels = 1 if src.ndim == 2 else src.shape[2]
    fill = np.broadcast_to(np.asarray(border, np.float32), (channels,))
    # One pixel of border around the source: a sample between the edge and the border blends
    # them, and any position further out reads border alone.
    padded = np.empty((height + 2, width + 2, channels), np.float32)
    padded[...] = fill
    padded[1:-1, 1:-1] = src.reshape(height, width, channels)
    inverse = invert_affine(matrix)
    w, h = size
    xs, ys = np.arange(w, dtype=np.float64)[None, :], np.arange(h, dtype=np.float64)[:, None]
    sx = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2] + 1  # + 1: the padding
    sy = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2] + 1
    np.clip(sx, 0, width + 1, out=sx)
    np.clip(sy, 0, height + 1, out=sy)
    left = np.minimum(np.floor(sx), width).astype(np.intp)
    top = np.minimum(np.floor(sy), height).astype(np.intp)
    fx = (sx - left).astype(np.float32)[:, :, None]
    fy = (sy - top).astype(np.float32)[:, :, None]
    upper = padded[top, left] + fx * (padded[top, left + 1] - padded[top, left])
    lower = padded[top + 1, left] + fx * (padded[top + 1, left + 1] - padded[top + 1, left])
    out = upper + fy * (lower - upper)
    out = out if src.ndim == 3 else out[:, :, 0]
    return _as_dtype(out, src.dtype)


def _as_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        rounded: np.ndarray = np.clip(np.rint(values), info.min, info.max).astype(dtype)
        return rounded
    return values.astype(np.float32, copy=False)


def area_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` reduced to ``size`` = (width, height) by area: each result pixel is the mean of
    the source area it covers, fractions of pixels included (``cv2.INTER_AREA`` when shrinking).

    Exact through running sums, so the cost is linear in the pixels whatever the factor.
    Integer images come back rounded in their dtype, others as float32.
    """
    values = image.astype(np.float64)
    values = _area_axis(values, size[1], axis=0)
    values = _area_axis(values, size[0], axis=1)
    return _as_dtype(values, image.dtype)


def _area_axis(values: np.ndarray, count: int, axis: int) -> np.ndarray:
    length = values.shape[axis]
    if count == length:
        return values
    running = np.concatenate([np.zeros_like(np.take(values, [0], axis=axis)), np.cumsum(values, axis=axis)], axis=axis)
    # The running sum at a fractional position p: the sum up to floor(p), plus the covered part of the next pixel.
    edges = np.arange(count + 1) * (length / count)
    whole = np.minimum(np.floor(edges).astype(np.intp), length - 1)
    part = (edges - whole).reshape([-1 if dim == axis else 1 for dim in range(values.ndim)])
    at_edges = np.take(running, whole, axis=axis) + part * np.take(values, whole, axis=axis)
    covered = np.diff(at_edges, axis=axis)
    result: np.ndarray = covered / (length / count)
    return result


def blurred_rectangle(size: int, inset: int, kernel: int) -> np.ndarray:
    """A ``size`` x ``size`` float32 mask: 1 inside an ``inset`` margin, 0 outside, blurred by a
    ``kernel`` x ``kernel`` Gaussian with OpenCV's default sigma for that size
    (``cv2.GaussianBlur(mask, (kernel, kernel), 0)``)."""
    if kernel % 2 == 0 or not 0 <= inset < size // 2:
        raise ValueError("kernel must be odd and inset less than half the size")
    sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8
    offsets = np.arange(kernel) - kernel // 2
    weights = np.exp(-(offsets**2) / (2 * sigma**2))
    weights /= weights.sum()
    line = np.zeros(size)
    line[inset : size - inset] = 1.0
    # Separable: the rectangle is the outer product of two lines, and so is its blur. Outside
    # the image the line is taken as 0 (OpenCV reflects it; the same while the inset exceeds
    # the kernel's radius, as both lines are 0 there).
    blurred = np.convolve(line, weights, mode="same")
    return np.clip(np.outer(blurred, blurred), 0.0, 1.0).astype(np.float32)


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma (OpenCV's ``COLOR_RGB2GRAY`` weights) of an H x W x 3 float image."""
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    gray: np.ndarray = rgb.astype(np.float32, copy=False) @ weights
    return gray
