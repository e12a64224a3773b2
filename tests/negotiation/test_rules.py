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


DOWN = {"scale_down_tolerance": 0.1}
UP = {"scale_up_tolerance": 0.1}


@pytest.mark.parametrize(
    ("tolerance", "agreed", "current", "expected"),
    [
        (DOWN, 19, 20, 20),  # 5%: within the tolerance, not made
        (DOWN, 18, 20, 20),  # 10%: still within
        (DOWN, 17, 20, 17),  # 15%: made
        (DOWN, 4, 5, 4),  # one pod of five is 20%
        (DOWN, 30, 20, 30),  # scale-ups are not its business
        (DOWN, 19, 19, 19),
        (UP, 21, 20, 20),  # 5%: within the tolerance, not made
        (UP, 22, 20, 20),  # 10%: still within
        (UP, 23, 20, 23),  # 15%: made
        (UP, 6, 5, 6),  # one pod of five is 20%
        (UP, 17, 20, 17),  # scale-downs are not its business
        (UP, 20, 20, 20),
    ],
)
def test_a_change_within_the_tolerance_is_not_made(
    tolerance: dict[str, float], agreed: int, current: int, expected: int
) -> None:
    bounds = Bounds(scale_down_stabilization_seconds=0, **tolerance)
    target, gate = stabilize(agreed=agreed, current=current, now=NOW, bounds=bounds, history=History())
    assert target == expected
    assert (gate is not None and gate.rule == "tolerance") == (expected == current != agreed)


@pytest.mark.parametrize(
    ("earlier", "expected"),
    [
        (22, 20),  # the window limits 30 to 22, 10% above 20: within the tolerance, not made
        (23, 23),  # limited to 23, 15%: made
    ],
)
def test_the_scale_up_tolerance_judges_the_step_the_stabilization_leaves(earlier: int, expected: int) -> None:
    bounds = Bounds(scale_down_stabilization_seconds=0, scale_up_stabilization_seconds=120, scale_up_tolerance=0.1)
    history = History(recommendations=((NOW - 60, earlier),))
    target, gate = stabilize(agreed=30, current=20, now=NOW, bounds=bounds, history=history)
    assert target == expected
    assert gate is not None
    assert ("tolerance" in gate.message) == (expected == 20)


def test_a_scale_down_cut_short_by_the_step_limit_is_made_whatever_the_tolerance() -> None:
    """Held at maxStepDown, the agreement may stand for a larger wish: holding it would ratchet a
    workload at its peak for good (200 pods, steps of 20, tolerance 10%)."""
    bounds = Bounds(max_step_down=20, scale_down_stabilization_seconds=0, scale_down_tolerance=0.1)
    target, gate = stabilize(agreed=180, current=200, now=NOW, bounds=bounds, history=History())
    assert (target, gate) == (180, None)
    target, gate = stabilize(agreed=185, current=200, now=NOW, bounds=bounds, history=History())
    assert target == 200 and gate is not None


def test_no_tolerance_by_default() -> None:
    for agreed in (19, 21):
        target, gate = stabilize(
            agreed=agreed, current=20, now=NOW, bounds=Bounds(scale_down_stabilization_seconds=0), history=History()
        )
        assert (target, gate) == (agreed, None)


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


DWELL = Bounds(scale_down_stabilization_seconds=0, scale_down_dwell_seconds=300)


@pytest.mark.parametrize(
    ("since", "agreed", "expected"),
    [
        (299.0, 15, 20),  # the last change 299 s ago: within the 300 s dwell, the scale-down is not made
        (300.0, 15, 15),  # 300 s ago: the count has dwelt long enough
        (299.0, 25, 25),  # scale-ups are never held back
        (None, 15, 15),  # no change in the last hour
    ],
)
def test_no_scale_down_within_the_dwell_time_after_a_change(since: float | None, agreed: int, expected: int) -> None:
    history = History(changes=() if since is None else (NOW - 1000.0, NOW - since))
    target, gate = stabilize(agreed=agreed, current=20, now=NOW, bounds=DWELL, history=history)
    assert target == expected
    assert (gate is not None and gate.rule == "dwell") == (expected == 20 != agreed)


def test_no_dwell_time_by_default() -> None:
    history = History(changes=(NOW - 10.0,))
    bounds = Bounds(scale_down_stabilization_seconds=0)
    assert stabilize(agreed=15, current=20, now=NOW, bounds=bounds, history=history) == (15, None)


@pytest.mark.parametrize(
    ("headroom", "agreed", "current", "expected"),
    [
        (0.1, 20, 10, 22),
        (0.1, 19, 10, 21),  # 20.9 rounds up
        (0.1, 10, 5, 11),  # exactly 11: not 12
        (0.25, 20, 10, 25),
        (0.1, 20, 20, 20),  # no scale-up, no headroom
        (0.1, 15, 20, 15),  # nor on a scale-down
    ],
)
def test_a_scale_up_goes_the_headroom_above_the_agreement(
    headroom: float, agreed: int, current: int, expected: int
) -> None:
    bounds = Bounds(max_step_up=100, scale_down_stabilization_seconds=0, scale_up_headroom=headroom)
    target, gate = stabilize(agreed=agreed, current=current, now=NOW, bounds=bounds, history=History())
    assert target == expected
    assert (gate is not None and gate.rule == "headroom") == (expected > agreed)


def test_the_headroom_stays_within_the_bounds_and_the_step_limit() -> None:
    bounds = Bounds(max_replicas=21, max_step_up=30, scale_down_stabilization_seconds=0, scale_up_headroom=0.5)
    assert stabilize(agreed=20, current=10, now=NOW, bounds=bounds, history=History())[0] == 21
    bounds = Bounds(max_replicas=100, max_step_up=12, scale_down_stabilization_seconds=0, scale_up_headroom=0.5)
    assert stabilize(agreed=20, current=10, now=NOW, bounds=bounds, history=History())[0] == 22


def test_no_headroom_by_default() -> None:
    bounds = Bounds(scale_down_stabilization_seconds=0)
    assert stabilize(agreed=20, current=10, now=NOW, bounds=bounds, history=History()) == (20, None)


def test_the_headroom_is_added_to_what_the_scale_up_stabilization_leaves() -> None:
    bounds = Bounds(
        max_step_up=100, scale_down_stabilization_seconds=0, scale_up_stabilization_seconds=60, scale_up_headroom=0.1
    )
    history = History(recommendations=((NOW - 30.0, 15),))
    target, gate = stabilize(agreed=20, current=10, now=NOW, bounds=bounds, history=history)
    assert target == 17  # the window's lowest, 15, and 10% above it
    assert gate is not None and gate.rule == "headroom" and "limited to 15" in gate.message
