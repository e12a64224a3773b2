"""The compliance agent: data residency, an availability floor and change-freeze windows."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from accord.agents.base import Candidate, Pool
from accord.agents.compliance import ComplianceAgent
from accord.metrics.evidence import Source
from accord.models.settings import ComplianceSettings
from tests.factories import NOW, pools, situation

# factories.NOW is Sunday 2025-06-15 15:06:40 UTC, 17:06:40 in Berlin, 11:06:40 in New York.
OPEN_AT_NOW = [
    {"name": "sunday-afternoon", "schedule": "0 15 * * 0", "durationMinutes": 60},
    {"name": "weekend", "schedule": "0 18 * * 5", "durationMinutes": 3 * 24 * 60},
    {"name": "berlin-evening", "schedule": "0 17 * * 0", "timeZone": "Europe/Berlin", "durationMinutes": 30},
    {"name": "new-york-morning", "schedule": "0 11 * * *", "timeZone": "America/New_York", "durationMinutes": 7},
    {"name": "opens-this-minute", "schedule": "6 15 * * *", "durationMinutes": 1},
]
CLOSED_AT_NOW = [
    {"name": "monday-morning", "schedule": "0 9 * * 1", "durationMinutes": 60},
    {"name": "utc-17", "schedule": "0 17 * * 0", "durationMinutes": 30},  # 17:00 Berlin opens; 17:00 UTC not yet
    {"name": "just-closed", "schedule": "0 15 * * 0", "durationMinutes": 6},
    {"name": "new-york-evening", "schedule": "0 18 * * 0", "timeZone": "America/New_York", "durationMinutes": 60},
]


def agent(**settings: Any) -> ComplianceAgent:
    return ComplianceAgent("compliance", ComplianceSettings.model_validate(settings))


def grid(*replicas: int, placements: tuple[str, ...] = ("standard", "spot")) -> list[Candidate]:
    return [Candidate(r, p) for r in replicas for p in placements]


POOLS = pools(
    us=Pool(name="us", regions=frozenset({"us-east-1"}), zones=frozenset({"us-east-1a"}), nodes=2),
    mixed=Pool(name="mixed", regions=frozenset({"eu-west-1", "us-east-1"}), zones=frozenset({"eu-west-1a"}), nodes=2),
    bare=Pool(name="bare"),
)
ALL_POOLS = ("standard", "spot", "us", "mixed", "bare", "ghost")


# --- residency -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "expected_vetoed"),
    [
        pytest.param({}, set(), id="no-restriction"),
        pytest.param({"allowedRegions": ["eu-west-1"]}, {"us", "mixed", "bare", "ghost"}, id="eu-only"),
        pytest.param({"allowedRegions": ["us-east-1"]}, {"standard", "spot", "mixed", "bare", "ghost"}, id="us-only"),
        pytest.param({"allowedRegions": ["eu-west-1", "us-east-1"]}, {"bare", "ghost"}, id="eu-and-us"),
        pytest.param({"allowedZones": ["eu-west-1a"]}, {"standard", "us", "bare", "ghost"}, id="one-zone"),
        pytest.param(
            {"allowedZones": ["eu-west-1a", "eu-west-1b", "us-east-1a"]}, {"bare", "ghost"}, id="zones-everywhere"
        ),
        pytest.param(
            {"allowedRegions": ["eu-west-1"], "allowedZones": ["eu-west-1a"]},
            {"standard", "us", "mixed", "bare", "ghost"},
            id="region-and-zone",
        ),
    ],
)
def test_residency_vetoes_pools_outside_or_unknown(settings: dict[str, Any], expected_vetoed: set[str]) -> None:
    proposal = agent(**settings).propose(situation(pool_map=POOLS), grid(3, placements=ALL_POOLS), {})
    assert {c.placement for c in proposal.vetoes} == expected_vetoed
    assert {c.placement for c in proposal.utilities} == set(ALL_POOLS) - expected_vetoed
    assert set(proposal.utilities.values()) <= {1.0}


@pytest.mark.parametrize(
    ("settings", "pool", "reason"),
    [
        pytest.param(
            {"allowedRegions": ["eu-west-1"]}, "us", "data residency: pool us has nodes in us-east-1", id="us"
        ),
        pytest.param(
            {"allowedRegions": ["eu-west-1"]}, "mixed", "data residency: pool mixed has nodes in us-east-1", id="mixed"
        ),
        pytest.param(
            {"allowedRegions": ["eu-west-1"]},
            "bare",
            "pool bare has no nodes with a known region: residency cannot be shown",
            id="no-region",
        ),
        pytest.param(
            {"allowedRegions": ["eu-west-1"]},
            "ghost",
            "pool ghost has no nodes with a known region: residency cannot be shown",
            id="unknown-pool",
        ),
        pytest.param(
            {"allowedZones": ["eu-west-1a"]},
            "standard",
            "data residency: pool standard has nodes in zones eu-west-1b",
            id="zone",
        ),
        pytest.param(
            {"allowedZones": ["eu-west-1a"]},
            "bare",
            "pool bare has no nodes with a known zone: residency cannot be shown",
            id="no-zone",
        ),
    ],
)
def test_residency_reasons(settings: dict[str, Any], pool: str, reason: str) -> None:
    proposal = agent(**settings).propose(situation(pool_map=POOLS), grid(3, placements=(pool,)), {})
    assert proposal.vetoes == {Candidate(3, pool): reason}


# --- availability --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("floor", "allowed"),
    [(0, [0, 1, 2, 3]), (1, [1, 2, 3]), (2, [2, 3]), (3, [3]), (4, [])],
    ids=["no-floor", "floor-1", "floor-2", "floor-3", "floor-above-all"],
)
def test_min_replicas_vetoes_fewer(floor: int, allowed: list[int]) -> None:
    proposal = agent(minReplicas=floor).propose(situation(), grid(0, 1, 2, 3, placements=("standard",)), {})
    assert sorted(c.replicas for c in proposal.utilities) == allowed
    for candidate, reason in proposal.vetoes.items():
        assert candidate.replicas < floor
        assert reason == f"availability commitment: at least {floor} replicas"


def test_residency_and_floor_reasons_combine() -> None:
    proposal = agent(allowedRegions=["eu-west-1"], minReplicas=2).propose(situation(pool_map=POOLS), grid(1), {})
    assert proposal.vetoes[Candidate(1, "standard")] == "availability commitment: at least 2 replicas"
    assert proposal.vetoes[Candidate(1, "spot")] == "availability commitment: at least 2 replicas"
    proposal = agent(allowedRegions=["eu-west-1"], minReplicas=2).propose(
        situation(pool_map=POOLS), grid(1, placements=("us",)), {}
    )
    assert proposal.vetoes[Candidate(1, "us")] == (
        "data residency: pool us has nodes in us-east-1; availability commitment: at least 2 replicas"
    )


# --- freeze windows ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("window", OPEN_AT_NOW, ids=[w["name"] for w in OPEN_AT_NOW])
def test_open_freeze_window_vetoes_every_change(window: dict[str, Any]) -> None:
    current = Candidate(4, "standard")
    candidates = grid(2, 3, 4, 5, 6)
    proposal = agent(freezeWindows=[window]).propose(situation(replicas=4, placement="standard"), candidates, {})
    assert set(proposal.vetoes) == set(candidates) - {current}
    assert proposal.utilities == {current: 1.0}
    assert proposal.ideal == current
    assert all(f"change freeze {window['name']!r} is open" in reason for reason in proposal.vetoes.values())
    assert f"freeze window {window['name']!r} open" in proposal.rationale


@pytest.mark.parametrize("window", CLOSED_AT_NOW, ids=[w["name"] for w in CLOSED_AT_NOW])
def test_closed_freeze_window_vetoes_nothing(window: dict[str, Any]) -> None:
    candidates = grid(2, 3, 4, 5, 6)
    proposal = agent(freezeWindows=[window]).propose(situation(), candidates, {})
    assert proposal.vetoes == {}
    assert set(proposal.utilities) == set(candidates)
    assert "freeze" not in proposal.rationale


def test_the_first_open_window_is_named() -> None:
    windows = [CLOSED_AT_NOW[0], OPEN_AT_NOW[1], OPEN_AT_NOW[0]]
    proposal = agent(freezeWindows=windows).propose(situation(), grid(5), {})
    assert proposal.vetoes[Candidate(5, "standard")] == "change freeze 'weekend' is open"


def test_freeze_does_not_rescue_a_current_state_that_breaks_the_floor() -> None:
    proposal = agent(freezeWindows=[OPEN_AT_NOW[0]], minReplicas=5).propose(situation(replicas=4), grid(4, 5), {})
    assert proposal.vetoes[Candidate(4, "standard")] == "availability commitment: at least 5 replicas"
    assert proposal.utilities == {}


def test_freeze_follows_the_clock_of_the_situation() -> None:
    monday = NOW + 86400 + 6 * 3600  # Monday 21:06 UTC: the weekend window closed at 18:00
    proposal = agent(freezeWindows=[OPEN_AT_NOW[1]]).propose(situation(now=monday), grid(3, 5), {})
    assert proposal.vetoes == {}


# --- confidence and evidence ---------------------------------------------------------------------------------------


def test_confidence_is_full_and_clock_is_recorded() -> None:
    proposal = agent(freezeWindows=[OPEN_AT_NOW[2]], allowedRegions=["eu-west-1"]).propose(
        situation(pool_map=POOLS), grid(4), {}
    )
    assert proposal.confidence == 1.0
    clock, locations = proposal.evidence
    assert clock.source is Source.CLOCK
    assert clock.timestamp == NOW
    assert clock.text == "2025-06-15 15:06 UTC"
    assert clock.query == "berlin-evening: 0 17 * * 0 Europe/Berlin 30m"
    assert locations.source is Source.NODES
    assert locations.text == "spot: eu-west-1 / eu-west-1a; standard: eu-west-1 / eu-west-1a,eu-west-1b"
    assert locations.samples == 5


def test_rationale_counts_vetoes() -> None:
    proposal = agent(allowedRegions=["eu-west-1"], minReplicas=2).propose(situation(pool_map=POOLS), grid(1, 3), {})
    assert proposal.rationale == "residency eu-west-1; availability floor 2; 2 of 4 candidates vetoed"


def test_a_window_that_never_fires_is_refused_before_it_reaches_the_agent() -> None:
    with pytest.raises(ValidationError, match="never fires"):
        agent(freezeWindows=[{"schedule": "0 0 30 2 *", "durationMinutes": 60}])
