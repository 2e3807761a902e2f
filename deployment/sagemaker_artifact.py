"""What the SageMaker model artifacts hold: ``sagemaker-gpu-model.tar.gz`` for AWS's PyTorch
inference image (CUDA) and ``sagemaker-neuron-model.tar.gz`` for AWS's Neuron inference images
(Inf1 and Inf2); templates/generator/images.py names the images.

SageMaker unpacks one into /opt/ml/model; the image's serving toolkit (sagemaker-pytorch-inference
on TorchServe) imports ``code/inference.py`` from there. Both artifacts hold:

- the weight files, at the root (the host's model directory);
- ``code/inference.py``: the thin host (``source/sagemaker_sr/inference.py``), the same file for
  both: ``SUPERRES_RUNTIME`` in the model's environment picks CUDA or Neuron;
- ``code/superres/``: the core library;
- ``code/lib/``: the core's third-party imports the image lacks, pinned and hashed, installed
  here for the image's Python on x86_64 Linux. Nothing is installed when the container starts:
  endpoints may have no internet (the Neuron model has none: network isolation), and the
  toolkit would pip-install a ``code/requirements.txt``.

The GPU image runs Python 3.12: its closure is the ``sagemaker-gpu-artifact`` group at
requirements.lock's versions. The Neuron images run Python 3.10, which Pillow 13, Starlette 1.10
and python-multipart 0.0.34 no longer support: the ``sagemaker-neuron-artifact`` group has a lock
of its own (sagemaker-neuron-artifact.lock, beside this file), at requirements.lock's versions
wherever those run on 3.10 (``make lock`` seeds it so).

The image's own torch, torchvision and numpy are never vendored (its torch is built for its CUDA
or Neuron, and numpy's ABI is torch's); the core also uses the image's OpenCV, PyYAML and boto3.
Pillow is vendored: the images' (11.x) have no AVIF, which every other host reads and writes.
deployment/package.py installs and packs; these definitions say what goes where.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Left out of every closure: the image's builds must be the ones imported.
CONTAINER_PACKAGES = ("torch", "torchvision", "numpy")
#: What the core imports from the image as it is (none of these may be vendored either).
IMAGE_PACKAGES = ("opencv-python", "opencv-python-headless", "pyyaml", "boto3", "botocore")
CODE = "code"
#: Where the toolkit finds the module it serves (``SAGEMAKER_PROGRAM``).
HOST_MODULE = f"{CODE}/inference.py"
VENDORED = f"{CODE}/lib"


@dataclass(frozen=True)
class ModelArtifact:
    """One model artifact: its asset name and how its ``code/lib`` is installed."""

    #: The asset's file name in regional-s3-assets/.
    name: str
    #: The dependency group of pyproject.toml whose locked closure goes into code/lib.
    group: str
    #: The lock holding that group's versions and hashes for the image's Python.
    lock: Path
    #: The image's Python, which the wheels are chosen for.
    python_version: str


GPU = ModelArtifact("sagemaker-gpu-model.tar.gz", "sagemaker-gpu-artifact", HERE.parent / "requirements.lock", "3.12")
NEURON = ModelArtifact(
    "sagemaker-neuron-model.tar.gz", "sagemaker-neuron-artifact", HERE / "sagemaker-neuron-artifact.lock", "3.10"
)
ARTIFACTS = (GPU, NEURON)


def write_excludes(destination: Path) -> Path:
    """The packages uv must leave out of the vendored closure, as an ``--excludes`` file: the
    image's own, wherever the closure would bring them in."""
    destination.write_text("".join(f"{name}\n" for name in (*CONTAINER_PACKAGES, *IMAGE_PACKAGES)))
    return destination


def vendored_distributions(site: Path) -> set[str]:
    """Normalised names of the distributions installed in ``site`` (from their dist-info)."""
    return {path.name.split("-")[0].lower().replace("_", "-").replace(".", "-") for path in site.glob("*.dist-info")}


def artifact_entries(
    artifact: ModelArtifact, weights: dict[str, Path], code: dict[str, Path], site: Path
) -> dict[str, Path]:
    """Archive path -> file: ``weights`` at the root, ``code`` (paths under ``code/``) and every
    file of ``site`` under ``code/lib/``.

    Refuses a vendored package the image must provide itself, a ``code/requirements.txt``
    (the toolkit would run pip at start), and two sources for one path.
    """
    leaked = sorted(vendored_distributions(site) & {*CONTAINER_PACKAGES, *IMAGE_PACKAGES})
    if leaked:
        raise ValueError(f"{artifact.name}: {', '.join(leaked)} must come from the container, not {VENDORED}")
    vendored = {
        f"{VENDORED}/{path.relative_to(site).as_posix()}": path
        for path in site.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    outside = sorted(name for name in code if not name.startswith(f"{CODE}/"))
    if outside:
        raise ValueError(f"{artifact.name}: code belongs under {CODE}/, not {outside[0]}")
    if f"{CODE}/requirements.txt" in code:
        raise ValueError(f"{artifact.name}: no {CODE}/requirements.txt: the toolkit would pip-install it at start")
    if HOST_MODULE not in code:
        raise ValueError(f"{artifact.name}: {HOST_MODULE} is missing")
    clash = sorted(set(code) & set(vendored))
    if clash:
        raise ValueError(f"{artifact.name}: {clash[0]} comes from two places")
    return {**weights, **code, **vendored}
