"""Where each setting comes from: explicit argument, then environment, then the variant's
defaults, with one source for the variant itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from superres.service.settings import VARIANT_DEFAULTS, ServiceSettings


@pytest.fixture(autouse=True)
def no_superres_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: nothing from the shell that runs the tests."""
    for name in [name for name in os.environ if name.upper().startswith("SUPERRES_")]:
        monkeypatch.delenv(name)


def test_an_explicit_argument_beats_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`superres serve --model-dir` must not lose to SUPERRES_MODEL_DIR."""
    monkeypatch.setenv("SUPERRES_MODEL_DIR", "/from/env")
    monkeypatch.setenv("SUPERRES_MAX_INPUT_PIXELS", "1000")
    chosen = ServiceSettings.for_variant("local", model_dir=Path("/from/cli"), max_input_pixels=2000)
    assert (chosen.model_dir, chosen.max_input_pixels) == (Path("/from/cli"), 2000)


def test_the_environment_beats_the_variant_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPERRES_MAX_INPUT_PIXELS", "1000")
    monkeypatch.setenv("SUPERRES_DEVICE", "cpu")
    chosen = ServiceSettings(variant="gpu")
    assert (chosen.max_input_pixels, chosen.device) == (1000, "cpu")
    # What was not in the environment still comes from the variant.
    assert chosen.time_budget_seconds == VARIANT_DEFAULTS["gpu"]["time_budget_seconds"]


@pytest.mark.parametrize("how", ["constructor", "for_variant"])
def test_the_variant_defaults_apply_when_nothing_else_is_given(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    monkeypatch.setenv("SUPERRES_VARIANT", "lambda")
    chosen = ServiceSettings() if how == "constructor" else ServiceSettings.for_variant()
    assert chosen.variant == "lambda"
    for name, value in VARIANT_DEFAULTS["lambda"].items():
        assert getattr(chosen, name) == value, name


def test_an_explicit_variant_beats_superres_variant_and_brings_its_own_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SUPERRES_VARIANT", "lambda")
    chosen = ServiceSettings.for_variant("local")
    assert chosen.variant == "local"
    for name, value in VARIANT_DEFAULTS["local"].items():
        assert getattr(chosen, name) == value, name
    # Not the environment's variant's: a local server has no time budget, the Lambda 26 s.
    assert (chosen.time_budget_seconds, chosen.max_input_pixels) == (0.0, 1920 * 1080)


@pytest.mark.parametrize("how", ["constructor", "for_variant"])
def test_a_bad_superres_variant_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    monkeypatch.setenv("SUPERRES_VARIANT", "cpu")
    with pytest.raises(ValueError, match=r"^SUPERRES_VARIANT must be one of local, lambda, gpu, not 'cpu'$"):
        ServiceSettings() if how == "constructor" else ServiceSettings.for_variant()
