"""requirements.lock holds what pyproject.toml asks for: CI fails when a pin changed and
`make lock` was not run (the lock is read as text here; nothing is resolved or fetched)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(path: Path) -> dict[str, str]:
    """``name -> version`` of each pinned line, with its hashes required."""
    text = path.read_text()
    entries = re.findall(
        r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)[^\n]*\\\n\s+--hash=sha256:[0-9a-f]{64}", text, re.M
    )
    assert len(entries) == len(re.findall(r"^[A-Za-z0-9][^\n]*==", text, re.M)), f"{path.name}: a pin without a hash"
    return {canonical(name): version for name, version in entries}


def exact_pins(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for requirement in requirements:
        name, sep, version = requirement.partition("==")
        assert sep, f"pyproject.toml: {requirement!r} is not an exact pin"
        pins[canonical(name.split("[")[0])] = version.strip()
    return pins


def test_every_pin_of_pyproject_is_locked_at_its_version() -> None:
    project = PYPROJECT["project"]
    wanted = exact_pins([*project["dependencies"], *project["optional-dependencies"]["dev"]])
    lock = locked(ROOT / "requirements.lock")
    assert {name: lock.get(name) for name in wanted} == wanted


@pytest.mark.parametrize("group", sorted(PYPROJECT["dependency-groups"]))
def test_every_zip_group_member_is_locked(group: str) -> None:
    lock = locked(ROOT / "requirements.lock")
    assert [name for name in PYPROJECT["dependency-groups"][group] if canonical(name) not in lock] == []


def test_checkov_is_locked_at_its_pin() -> None:
    wanted = exact_pins(
        [
            line
            for line in (ROOT / "tests/tools/checkov/requirements.in").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
    )
    lock = locked(ROOT / "tests/tools/checkov/requirements.lock")
    assert {name: lock.get(name) for name in wanted} == wanted


#: Pinned in requirements.lock at releases that need Python 3.11: the Inferentia artifact's lock
#: holds their newest releases for 3.10 instead.
NEWER_THAN_PYTHON_310 = {"pillow", "starlette", "python-multipart", "rpds-py"}


def test_the_neuron_artifact_lock_holds_its_group_at_the_kits_versions_where_python_310_allows() -> None:
    """deployment/sagemaker-neuron-artifact.lock (make lock, seeded with requirements.lock): the
    whole group, hashed, none of the image's own packages, and the kit's version of every package
    both hold unless that version needs Python 3.11."""
    neuron = locked(ROOT / "deployment" / "sagemaker-neuron-artifact.lock")
    kit = locked(ROOT / "requirements.lock")
    group = {canonical(name) for name in PYPROJECT["dependency-groups"]["sagemaker-neuron-artifact"]}
    assert group <= set(neuron)
    assert not set(neuron) & {"torch", "torchvision", "numpy", "opencv-python-headless", "pyyaml", "boto3"}
    assert {name for name, version in neuron.items() if kit.get(name, version) != version} == NEWER_THAN_PYTHON_310
