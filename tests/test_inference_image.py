"""The GPU stack's image: AWS's PyTorch inference image, its Region map generated from the
pinned sagemaker-core's image_uri_config/pytorch.json, no other ECR repository anywhere.

The map is read from the installed sagemaker-core here, independently of the generator's
code path (templates/generator/images.py), and compared with the committed template.
"""

from __future__ import annotations

import json
import re
import tomllib
from importlib.metadata import distribution, version
from pathlib import Path
from typing import Any

import pytest

from repo_modules import load_script
from superres.operate.regions import REGIONS

ROOT = Path(__file__).resolve().parents[1]
build = load_script("templates_build", "templates/build.py")

#: The quick-create templates that still name the kit's own ECR images, and the issue that
#: moves each onto AWS's images; the check below fails for them until then (strict).
PENDING = {"inf1": "issue 15: Inf1 on AWS's Neuron image"}
#: The stacks that run no container image at all (zip functions only).
IMAGELESS = {"lambda"}


def template(kind: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(build.OUTPUTS[kind].read_text())
    return loaded


def sdk_table() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        distribution("sagemaker-core").locate_file("sagemaker/core/image_uri_config/pytorch.json").read_text()
    )
    return loaded


def newest_gpu_py312() -> tuple[str, dict[str, Any]]:
    inference = sdk_table()["inference"]
    assert "gpu" in inference["processors"]
    versions = [v for v, entry in inference["versions"].items() if "py312" in entry["py_versions"]]
    newest = max(versions, key=lambda v: [int(part) for part in v.split(".")])
    return newest, inference["versions"][newest]


def test_sagemaker_core_is_installed_at_its_pin() -> None:
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    pinned = next(entry.split("==")[1] for entry in dev if entry.startswith("sagemaker-core=="))
    assert version("sagemaker-core") == pinned


def test_the_region_map_is_the_sdks() -> None:
    newest, entry = newest_gpu_py312()
    body = template("gpu")
    mapping = {region: value["Account"] for region, value in body["Mappings"]["PyTorchInferenceRegistry"].items()}
    assert mapping == entry["registries"]
    image = body["Resources"]["Model"]["Properties"]["PrimaryContainer"]["Image"]["Fn::Sub"][0]
    assert image.endswith(f"/{entry['repository']}:{newest}-gpu-py312")


def test_every_quick_create_region_has_the_image() -> None:
    mapping = template("gpu")["Mappings"]["PyTorchInferenceRegistry"]
    assert sorted(set(REGIONS) - set(mapping)) == []


def test_the_real_time_and_async_endpoints_share_image_artifact_and_driver() -> None:
    resources = template("gpu")["Resources"]
    realtime, jobs = (resources[name]["Properties"]["PrimaryContainer"] for name in ("Model", "AsyncModel"))
    assert (realtime["Image"], realtime["ModelDataUrl"]) == (jobs["Image"], jobs["ModelDataUrl"])
    for config in ("EndpointConfig", "AsyncEndpointConfig"):
        (variant,) = resources[config]["Properties"]["ProductionVariants"]
        # CUDA 12.4 needs driver 550; ml.g4dn's default is 470.
        assert variant["InferenceAmiVersion"] == "al2-ami-sagemaker-inference-gpu-3-1"


def ecr_references(node: Any) -> list[tuple[str, str, Any]]:
    """(registry account expression, repository, the Fn::Sub's variables) of every image URI or
    repository ARN in ``node``."""
    found: list[tuple[str, str, Any]] = []
    if isinstance(node, dict):
        if "Fn::Sub" in node:
            text, variables = (node["Fn::Sub"], {}) if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"]
            for account, repository in re.findall(r"([^/:\s]+)\.dkr\.ecr\.[^/]+/([^:\"]+)", text):
                found.append((account, repository, variables))
            for account, repository in re.findall(r"ecr:\$\{AWS::Region\}:([^:]+):repository/(\S+)", text):
                found.append((account, repository, variables))
        for value in node.values():
            found += ecr_references(value)
    elif isinstance(node, list):
        for value in node:
            found += ecr_references(value)
    return found


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param(k, marks=pytest.mark.xfail(strict=True, reason=PENDING[k])) if k in PENDING else k
        for k in build.OUTPUTS
    ],
)
def test_no_template_names_an_ecr_repository_outside_awss_inference_registries(kind: str) -> None:
    body = template(kind)
    accounts = set(sdk_table()["inference"]["versions"][newest_gpu_py312()[0]]["registries"].values())
    references = ecr_references(body)
    if kind in IMAGELESS:
        assert references == [] and "PyTorchInferenceRegistry" not in body.get("Mappings", {})
        return
    assert references, "the stack runs an image, so it names one"
    for account, repository, variables in references:
        assert account == "${Account}" and repository == "pytorch-inference", (account, repository)
        assert variables["Account"] == {
            "Fn::FindInMap": ["PyTorchInferenceRegistry", {"Ref": "AWS::Region"}, "Account"]
        }
    assert {value["Account"] for value in body["Mappings"]["PyTorchInferenceRegistry"].values()} <= accounts
