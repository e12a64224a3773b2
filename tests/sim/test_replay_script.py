"""benchmarks/replay.py's knobs: what --tune reads and the settings it tries."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from accord.sim.model import ReplayModel
from accord.sim.negotiated import PolicyFileError, default_documents

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "replay.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("replay_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_knobs_only_the_policy_as_given_is_replayed(script: ModuleType) -> None:
    assert script.settings_of([]) == []


def test_every_combination_of_the_knobs_is_tried(script: ModuleType) -> None:
    knobs = [script.knob("policy:bounds.scaleDownDwellSeconds=0,120"), script.knob("agent/cost:cost.x=0.5")]
    assert [label for label, _ in script.settings_of(knobs)] == [
        "bounds.scaleDownDwellSeconds=0, cost.x=0.5",
        "bounds.scaleDownDwellSeconds=120, cost.x=0.5",
    ]


def test_a_setting_changes_a_copy_of_the_documents(script: ModuleType) -> None:
    documents = default_documents(ReplayModel())
    changed = script.tuned(documents, [("policy:bounds.scaleDownDwellSeconds", 120)])
    assert changed[-1]["spec"]["bounds"]["scaleDownDwellSeconds"] == 120
    assert documents[-1]["spec"]["bounds"]["scaleDownDwellSeconds"] == 0
    with pytest.raises(PolicyFileError, match="no such document"):
        script.tuned(documents, [("agent/nobody:x", 1)])


@pytest.mark.parametrize("text", ["bounds.x=1", "policy:bounds.x", "policy:bounds.x="])
def test_a_knob_without_its_place_or_values_is_refused(script: ModuleType, text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="expected policy:PATH"):
        script.knob(text)
