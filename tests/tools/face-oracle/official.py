"""The official GFPGAN pipeline on given landmarks, run in .venv/face-oracle (Python 3.11, torch 2.1).

    python official.py weights OUT.pth CONFIG_JSON
        GFPGANv1Clean with these arguments (GFPGANer's for v1.3/v1.4: bench.face_bench.GFPGAN_CONFIG),
        random weights (seed 0), saved as {"params_ema": state_dict} like the released files.
    python official.py restore IN.npz WEIGHTS OUT.npz
        IN.npz: image (H x W x 3 uint8 RGB), landmarks (N x 5 x 2, the five points per face),
        scale (int). OUT.npz: matrices (N x 2 x 3), crops and restored (N x 512 x 512 x 3
        uint8 RGB) and image (the pasted result, RGB), all from GFPGANer.enhance; mask (the
        helper's blend weight x 255, uint8: its paste of white faces on black); skimage (N x 2 x 3,
        scikit-image's least-squares SimilarityTransform, which facexlib's fit is meant to equal).

Everything but the face detector is the packages' own code. The landmarks are given, so
the detector (RetinaFace, whose weights cannot be downloaded here) is never built; nor is
ParseNet, for the same reason: the helper pastes under its square mask (use_parse=False).
The network uses its stored noise maps (randomize_noise=False) so that a run repeats.
"""

from __future__ import annotations

import json
import sys
from functools import partial

import numpy as np
import torch
from facexlib.utils import face_restoration_helper
from gfpgan import GFPGANer
from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean
from skimage.transform import SimilarityTransform


def write_weights(path: str, config: str) -> None:
    torch.manual_seed(0)
    torch.save({"params_ema": GFPGANv1Clean(**json.loads(config)).state_dict()}, path)


def given_landmarks(helper: face_restoration_helper.FaceRestoreHelper, landmarks: np.ndarray, **_: object) -> int:
    """Stands in for FaceRestoreHelper.get_face_landmarks_5: what its detector would have found."""
    helper.all_landmarks_5 = [points.astype(np.float32) for points in landmarks]
    return len(helper.all_landmarks_5)


def restore(source: str, weights: str, target: str) -> None:
    data = np.load(source)
    # No detector or parser: their weights are downloads, and the landmarks are given.
    face_restoration_helper.init_detection_model = lambda *args, **kwargs: None
    face_restoration_helper.init_parsing_model = lambda *args, **kwargs: None
    restorer = GFPGANer(weights, upscale=int(data["scale"]), arch="clean", device=torch.device("cpu"))
    restorer.face_helper.use_parse = False
    restorer.face_helper.get_face_landmarks_5 = partial(given_landmarks, restorer.face_helper, data["landmarks"])
    restorer.gfpgan.forward = partial(restorer.gfpgan.forward, randomize_noise=False)
    bgr = np.ascontiguousarray(data["image"][:, :, ::-1])
    crops, restored, image = restorer.enhance(bgr, paste_back=True)
    helper = restorer.face_helper
    # The blend weight: the same paste of white faces onto black. The paste shifted the inverse
    # matrices in place, so they are derived afresh.
    helper.restored_faces = [np.full_like(face, 255) for face in restored]
    helper.inverse_affine_matrices = []
    helper.get_inverse_affine()
    helper.read_image(np.zeros_like(bgr))
    mask = helper.paste_faces_to_input_image()[:, :, 0]
    skimage = [SimilarityTransform.from_estimate(points, helper.face_template) for points in data["landmarks"]]
    np.savez(
        target,
        matrices=np.stack(helper.affine_matrices),
        crops=np.stack(crops)[..., ::-1],
        restored=np.stack(restored)[..., ::-1],
        image=image[:, :, ::-1],
        mask=mask,
        skimage=np.stack([transform.params[:2] for transform in skimage]),
    )


if __name__ == "__main__":
    torch.set_num_threads(2)
    command, *arguments = sys.argv[1:]
    if command == "weights":
        write_weights(*arguments)
    else:
        restore(*arguments)
