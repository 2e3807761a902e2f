"""What the GPU model artifact (``sagemaker-gpu-model.tar.gz``) holds, for AWS's PyTorch
inference container (templates/generator/images.py names the image).

SageMaker unpacks it into /opt/ml/model; the container's serving toolkit
(sagemaker-pytorch-inference on TorchServe) imports ``code/inference.py`` from there:

- the weight files, at the root (the host's model directory);
- ``code/inference.py``: the thin host (``source/sagemaker_sr/inference.py``);
- ``code/superres/``: the core library;
- ``code/lib/``: the core's third-party imports the image lacks, pinned and hashed from
  requirements.lock (the ``sagemaker-gpu-artifact`` dependency group), installed here for
  the image's Python 3.12 on x86_64 Linux. Nothing is installed when the container starts:
  endpoints may have no internet, and the toolkit would pip-install a ``code/requirements.txt``.

The image's own torch, torchvision and numpy are never vendored (its torch is built for its
CUDA, and numpy's ABI is torch's); the core also uses the image's OpenCV, PyYAML and boto3.
Pillow is vendored: the image's (11.1) has no AVIF, which every other host reads and writes. deployment/package.py installs and packs; these functions say what goes where.
"""

from __future__ import annotations

from pathlib import Path

ARTIFACT = "sagemaker-gpu-model.tar.gz"
#: The dependency group of pyproject.toml whose locked closure goes into code/lib.
GROUP = "sagemaker-gpu-artifact"
#: Left out of the closure: the image's builds must be the ones imported.
CONTAINER_PACKAGES = ("torch", "torchvision", "numpy")
#: What the core imports from the image as it is (none of these may be vendored either).
IMAGE_PACKAGES = ("opencv-python", "opencv-python-headless", "pyyaml", "boto3", "botocore")
CODE = "code"
#: Where the toolkit finds the module it serves (``SAGEMAKER_PROGRAM``).
HOST_MODULE = f"{CODE}/inference.py"
VENDORED = f"{CODE}/lib"


def write_excludes(destination: Path) -> Path:
    """The packages uv must leave out of the vendored closure, as an ``--excludes`` file: the
    image's own, wherever the closure would bring them in."""
    destination.write_text("".join(f"{name}\n" for name in (*CONTAINER_PACKAGES, *IMAGE_PACKAGES)))
    return destination


def vendored_distributions(site: Path) -> set[str]:
    """Normalised names of the distributions installed in ``site`` (from their dist-info)."""
    return {path.name.split("-")[0].lower().replace("_", "-").replace(".", "-") for path in site.glob("*.dist-info")}


def artifact_entries(weights: dict[str, Path], code: dict[str, Path], site: Path) -> dict[str, Path]:
    """Archive path -> file: ``weights`` at the root, ``code`` (paths under ``code/``) and every
    file of ``site`` under ``code/lib/``.

    Refuses a vendored package the image must provide itself, a ``code/requirements.txt``
    (the toolkit would run pip at start), and two sources for one path.
    """
    leaked = sorted(vendored_distributions(site) & {*CONTAINER_PACKAGES, *IMAGE_PACKAGES})
    if leaked:
        raise ValueError(f"{ARTIFACT}: {', '.join(leaked)} must come from the container, not {VENDORED}")
    vendored = {
        f"{VENDORED}/{path.relative_to(site).as_posix()}": path
        for path in site.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    outside = sorted(name for name in code if not name.startswith(f"{CODE}/"))
    if outside:
        raise ValueError(f"{ARTIFACT}: code belongs under {CODE}/, not {outside[0]}")
    if f"{CODE}/requirements.txt" in code:
        raise ValueError(f"{ARTIFACT}: no {CODE}/requirements.txt: the toolkit would pip-install it at start")
    if HOST_MODULE not in code:
        raise ValueError(f"{ARTIFACT}: {HOST_MODULE} is missing")
    clash = sorted(set(code) & set(vendored))
    if clash:
        raise ValueError(f"{ARTIFACT}: {clash[0]} comes from two places")
    return {**weights, **code, **vendored}
