"""AWS's PyTorch inference container for the GPU model: its image in every Region, and the
settings of its serving toolkit (sagemaker-pytorch-inference on TorchServe).

The Region -> registry account map is read at build time from the pinned ``sagemaker-core``
package's ``image_uri_config/pytorch.json`` (the SageMaker SDK's own image table), never
typed by hand: the newest ``pytorch-inference`` version there that has a GPU image for the
Python the artifact is built for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib.metadata import distribution
from typing import Any

from superres.service.settings import VARIANT_DEFAULTS

from .core import sub

#: The file of sagemaker-core that holds the PyTorch images' registries.
IMAGE_CONFIG = "sagemaker/core/image_uri_config/pytorch.json"
#: The artifact's vendored packages are built for this Python (deployment/sagemaker_artifact.py).
PYTHON = "py312"
MAPPING = "PyTorchInferenceRegistry"
#: SageMaker's cap on one real-time invocation, and on one asynchronous one.
REALTIME_SECONDS = 60
ASYNC_SECONDS = 3600
#: TorchServe's own size caps sit this far above the app's limits, so that the app, not
#: TorchServe, answers an oversized request or result (413 in the one error shape).
SIZE_MARGIN = 1024 * 1024
#: One TorchServe worker, one copy of the networks per GPU (ml.g4dn.* up to 8xlarge have one).
WORKERS_PER_GPU = 1
#: The image's CUDA 12.4 needs NVIDIA driver 550; SageMaker's default for ml.g4dn real-time
#: and asynchronous endpoints is driver 470 (CUDA 11.4). This AMI has driver 550, CUDA 12.4.
INFERENCE_AMI_VERSION = "al2-ami-sagemaker-inference-gpu-3-1"


@dataclass(frozen=True)
class InferenceImage:
    """One ``pytorch-inference`` image: version, Python, and its registry account per Region."""

    version: str
    python: str
    repository: str
    registries: dict[str, str]

    @property
    def tag(self) -> str:
        # The SDK's tag for a framework image: <version>-<processor>-<python>.
        return f"{self.version}-gpu-{self.python}"


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def newest_gpu_image(config: dict[str, Any], python: str = PYTHON) -> InferenceImage:
    """The newest inference version of ``config`` (pytorch.json) with a GPU image for ``python``."""
    inference = config["inference"]
    if "gpu" not in inference["processors"]:
        raise ValueError("pytorch.json lists no GPU inference images")
    versions = [v for v, entry in inference["versions"].items() if python in entry.get("py_versions", [])]
    if not versions:
        raise ValueError(f"pytorch.json has no inference image for {python}")
    version = max(versions, key=version_key)
    entry = inference["versions"][version]
    return InferenceImage(version, python, entry["repository"], dict(sorted(entry["registries"].items())))


@cache
def pinned_image() -> InferenceImage:
    """The image of the installed (pinned) sagemaker-core's table."""
    path = distribution("sagemaker-core").locate_file(IMAGE_CONFIG)
    return newest_gpu_image(json.loads(path.read_text()))


def registry_mapping(image: InferenceImage) -> dict[str, dict[str, str]]:
    """The template's mapping: Region -> {"Account": registry account}."""
    return {region: {"Account": account} for region, account in image.registries.items()}


#: Fn::Sub's ``${Account}``: the registry account of the stack's Region.
_ACCOUNT = {"Account": {"Fn::FindInMap": [MAPPING, {"Ref": "AWS::Region"}, "Account"]}}


def image_uri(image: InferenceImage) -> dict[str, Any]:
    """The image in the stack's Region (China's registries end in amazonaws.com.cn: URLSuffix)."""
    return sub(
        "${Account}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/" + f"{image.repository}:{image.tag}", variables=_ACCOUNT
    )


def repository_arn(image: InferenceImage) -> dict[str, Any]:
    """The image's repository, for the endpoint role's ECR pull permissions."""
    return sub("arn:${AWS::Partition}:ecr:${AWS::Region}:${Account}:repository/" + image.repository, variables=_ACCOUNT)


def toolkit_environment(settings: dict[str, Any]) -> dict[str, str]:
    """The serving toolkit's variables for a model whose ``SUPERRES_*`` environment is ``settings``.

    The module the toolkit loads, TorchServe's workers, its response timeout (SageMaker's own
    cap: an hour where there is no time budget, the asynchronous endpoint) and its request and
    response size caps, derived from the app's own limits so that the app answers every limit
    itself. ``TS_*`` are TorchServe's own settings, which it reads from the environment in this
    image. The timeout is one of them because the toolkit's ``SAGEMAKER_MODEL_SERVER_TIMEOUT``
    is lost: sagemaker-pytorch-inference 2.0.25 appends it to a properties file that lacks a
    final newline, gluing it onto the line before.
    """
    defaults = VARIANT_DEFAULTS["gpu"]
    request = int(settings.get("SUPERRES_MAX_REQUEST_BYTES", defaults["max_request_bytes"]))
    response = int(settings.get("SUPERRES_MAX_RESPONSE_BYTES", defaults["max_response_bytes"]))
    budget = float(settings.get("SUPERRES_TIME_BUDGET_SECONDS", defaults["time_budget_seconds"]))
    return {
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(WORKERS_PER_GPU),
        "TS_DEFAULT_RESPONSE_TIMEOUT": str(REALTIME_SECONDS if budget else ASYNC_SECONDS),
        "TS_MAX_REQUEST_SIZE": str(request + SIZE_MARGIN),
        "TS_MAX_RESPONSE_SIZE": str(response + SIZE_MARGIN),
    }
