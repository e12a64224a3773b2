from __future__ import annotations

from typing import Any

import pytest

from accord.agents.base import Candidate
from accord.models.policy import Bounds, MissingMetrics, Rules
from accord.negotiation.rules import History, gates_for_change, missing_metrics_target, stabilize
from tests.factories import NOW, pools


def rules(**wire: Any) -> Rules:
    return Rules.model_validate(wire)


def gates(rule_set: Rules, current: Candidate, target: Candidate, **kw: Any) -> dict[str, str]:
    found = gates_for_change(
        rules=rule_set,
        current=current,
        target=target,
        now=kw.get("now", NOW),
        confidence=kw.get("confidence", 1.0),
        history=kw.get("history", History()),
        pools=pools(),
        concessions=kw.get("concessions", {}),
    )
    return {g.rule: g.effect for g in found}


S4, S8, S14, SPOT4 = Candidate(4, "standard"), Candidate(8, "standard"), Candidate(14, "standard"), Candidate(4, "spot")


@pytest.mark.parametrize(
    ("wire", "target", "kw", "expected"),
    [
        ({}, S8, {}, {}),
        ({"minConfidence": 0.8}, S8, {"confidence": 0.5}, {"minConfidence": "hold"}),
        ({"requireApproval": {"stepReplicasAbove": 6}}, S14, {}, {"stepReplicas": "approval"}),
        ({"requireApproval": {"stepReplicasAbove": 6}}, S8, {}, {}),
        ({"requireApproval": {"stepPercentAbove": 50}}, S8, {}, {"stepPercent": "approval"}),
        ({"requireApproval": {"stepPercentAbove": 100}}, S8, {}, {}),
        ({}, SPOT4, {}, {"placementChange": "approval"}),
        ({"requireApproval": {"placementChange": False}}, SPOT4, {}, {}),
        ({"requireApproval": {"costIncreasePerHourAbove": 0.5}}, S8, {}, {}),
        ({"requireApproval": {"costIncreasePerHourAbove": 0.5}}, S14, {}, {"costIncrease": "approval"}),
        (
            {"requireApproval": {"disagreementAbove": 0.5}},
            S8,
            {"concessions": {"cost": 0.7}},
            {"disagreement": "approval"},
        ),
        ({"requireApproval": {"disagreementAbove": 0.5}}, S8, {"concessions": {"cost": 0.3}}, {}),
        (
            {"minConfidence": 0.3, "requireApproval": {"confidenceBelow": 0.7}},
            S8,
            {"confidence": 0.5},
            {"lowConfidence": "approval"},
        ),
        (
            {"budget": {"maxChangesPerHour": 2}},
            S8,
            {"history": History(changes=(NOW - 100, NOW - 200))},
            {"changeBudget": "hold"},
        ),
        ({"budget": {"maxChangesPerHour": 2}}, S8, {"history": History(changes=(NOW - 4000, NOW - 200))}, {}),
        # NOW is Sunday 15:06 UTC = 17:06 in Berlin (summer time)
        (
            {"freezeWindows": [{"schedule": "0 17 * * 0", "timeZone": "Europe/Berlin", "durationMinutes": 30}]},
            S8,
            {},
            {"freezeWindow": "hold"},
        ),
        ({"freezeWindows": [{"schedule": "0 17 * * 0", "timeZone": "UTC", "durationMinutes": 30}]}, S8, {}, {}),
        (
            {"freezeWindows": [{"schedule": "0 15 * * *", "durationMinutes": 10, "action": "requireApproval"}]},
            S8,
            {},
            {"freezeWindow": "approval"},
        ),
    ],
)
def test_gates(wire: dict[str, Any], target: Candidate, kw: dict[str, Any], expected: dict[str, str]) -> None:
    wire.setdefault("minConfidence", 0.0)
    assert gates(rules(**wire), S4, target, **kw) == expected


BOUNDS = Bounds(scale_down_stabilization_seconds=300, scale_up_stabilization_seconds=60)


@pytest.mark.parametrize(
    ("agreed", "current", "recent", "expected", "capped"),
    [
        (5, 10, [(NOW - 100, 9), (NOW - 200, 7)], 9, True),  # down: highest recent recommendation
        (5, 10, [(NOW - 400, 12)], 5, False),  # outside the window
        (5, 10, [(NOW - 100, 15)], 10, True),  # never above current when scaling down
        (12, 10, [(NOW - 30, 11)], 11, True),  # up: lowest recent recommendation
        (12, 10, [(NOW - 30, 8)], 10, True),
        (12, 10, [(NOW - 90, 8)], 12, False),
        (10, 10, [(NOW - 30, 2)], 10, False),
    ],
)
def test_stabilization(agreed: int, current: int, recent: list[tuple[float, int]], expected: int, capped: bool) -> None:
    target, gate = stabilize(
        agreed=agreed, current=current, now=NOW, bounds=BOUNDS, history=History(recommendations=tuple(recent))
    )
    assert target == expected
    assert (gate is not None) == capped


@pytest.mark.parametrize(
    ("agreed", "current", "expected"),
    [
        (19, 20, 20),  # 5%: within the tolerance, not made
        (18, 20, 20),  # 10%: still within
        (17, 20, 17),  # 15%: made
        (4, 5, 4),  # one pod of five is 20%
        (30, 20, 30),  # scale-ups are never held back
        (19, 19, 19),
    ],
)
def test_a_scale_down_within_the_tolerance_is_not_made(agreed: int, current: int, expected: int) -> None:
    bounds = Bounds(scale_down_stabilization_seconds=0, scale_down_tolerance=0.1)
    target, gate = stabilize(agreed=agreed, current=current, now=NOW, bounds=bounds, history=History())
    assert target == expected
    assert (gate is not None and gate.rule == "tolerance") == (expected == current != agreed)


def test_a_scale_down_cut_short_by_the_step_limit_is_made_whatever_the_tolerance() -> None:
    """Held at maxStepDown, the agreement may stand for a larger wish: holding it would ratchet a
    workload at its peak for good (200 pods, steps of 20, tolerance 10%)."""
    bounds = Bounds(max_step_down=20, scale_down_stabilization_seconds=0, scale_down_tolerance=0.1)
    target, gate = stabilize(agreed=180, current=200, now=NOW, bounds=bounds, history=History())
    assert (target, gate) == (180, None)
    target, gate = stabilize(agreed=185, current=200, now=NOW, bounds=bounds, history=History())
    assert target == 200 and gate is not None


def test_no_tolerance_by_default() -> None:
    target, gate = stabilize(
        agreed=19, current=20, now=NOW, bounds=Bounds(scale_down_stabilization_seconds=0), history=History()
    )
    assert (target, gate) == (19, None)


@pytest.mark.parametrize(
    ("wire", "current", "expected", "effect"),
    [
        ({"action": "hold"}, 6, 6, "hold"),
        ({"action": "fallback", "fallbackReplicas": 3}, 6, 3, "cap"),
        ({"action": "currentIfHigher", "fallbackReplicas": 3}, 6, 6, "cap"),
        ({"action": "currentIfHigher", "fallbackReplicas": 9}, 6, 9, "cap"),
        ({"action": "currentIfLower", "fallbackReplicas": 3}, 6, 3, "cap"),
        ({"action": "currentIfLower", "fallbackReplicas": 9}, 6, 6, "cap"),
    ],
)
def test_missing_metrics(wire: dict[str, Any], current: int, expected: int, effect: str) -> None:
    target, gate = missing_metrics_target(MissingMetrics.model_validate(wire), current)
    assert (target, gate.effect) == (expected, effect)


def test_history_forgets_old_entries() -> None:
    h = History(recommendations=((NOW - 1000, 3), (NOW - 10, 4)), changes=(NOW - 4000, NOW - 10))
    h2 = h.remember(now=NOW, recommendation=5, changed=True, keep_seconds=300)
    assert h2.recommendations == ((NOW - 10, 4), (NOW, 5))
    assert h2.changes == (NOW - 10, NOW)
