"""The security agent: hardened pools for sensitive workloads, a replica and zone floor while a signal is active."""

from __future__ import annotations

from typing import Any

import pytest

from accord.agents.base import Candidate, Pool, QueryKind
from accord.agents.security import MOVE_PENALTY, SecurityAgent
from accord.metrics.evidence import Evidence, EvidenceSet, Source
from accord.models.settings import SecuritySettings
from tests.factories import NOW, pools, situation

SENSITIVE = {"app": "web", "accord.dev/sensitivity": "high"}
ORDINARY = {"app": "web"}
HARDENED = {"accord.dev/hardened": "true"}
SIGNAL_QUERY = "max(falco_alerts_active)"


def agent(**settings: Any) -> SecurityAgent:
    return SecurityAgent("security", SecuritySettings.model_validate(settings))


def grid(*replicas: int, placements: tuple[str, ...] = ("standard", "spot")) -> list[Candidate]:
    return [Candidate(r, p) for r in replicas for p in placements]


def signal(value: float | None, *, age: float = 0.0) -> EvidenceSet:
    if value is None:
        return {"security_signal": Evidence.absent("security_signal", Source.PROMETHEUS, SIGNAL_QUERY)}
    return {
        "security_signal": Evidence(
            name="security_signal",
            source=Source.PROMETHEUS,
            query=SIGNAL_QUERY,
            value=value,
            timestamp=NOW - age,
            samples=1,
        )
    }


def vetoed_pools(proposal_vetoes: dict[Candidate, str]) -> set[str]:
    return {c.placement for c in proposal_vetoes}


# --- sensitive workloads -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "settings", "expected_vetoed"),
    [
        pytest.param(SENSITIVE, {"requiredNodeLabels": HARDENED}, {"spot"}, id="sensitive-unhardened-spot"),
        pytest.param(SENSITIVE, {}, {"spot"}, id="sensitive-spot-forbidden-by-default"),
        pytest.param(SENSITIVE, {"forbidSpotForSensitive": False}, set(), id="sensitive-spot-allowed"),
        pytest.param(
            SENSITIVE,
            {"requiredNodeLabels": {"accord.dev/hardened": "true", "cis": "level2"}},
            {"standard", "spot"},
            id="sensitive-label-missing-everywhere",
        ),
        pytest.param(
            SENSITIVE,
            {"requiredNodeLabels": {"accord.dev/hardened": "false"}},
            {"standard", "spot"},
            id="sensitive-label-with-wrong-value",
        ),
        pytest.param(ORDINARY, {"requiredNodeLabels": HARDENED}, set(), id="ordinary-anywhere"),
        pytest.param(
            {"app": "web", "accord.dev/sensitivity": "low"},
            {"requiredNodeLabels": HARDENED},
            set(),
            id="low-sensitivity",
        ),
        pytest.param(
            {"tier": "pci"},
            {"requiredNodeLabels": HARDENED, "sensitiveSelector": {"matchLabels": {"tier": "pci"}}},
            {"spot"},
            id="custom-selector-matches",
        ),
        pytest.param(
            SENSITIVE,
            {"requiredNodeLabels": HARDENED, "sensitiveSelector": {"matchLabels": {"tier": "pci"}}},
            set(),
            id="custom-selector-replaces-default",
        ),
        pytest.param(
            {"data": "cardholder"},
            {"sensitiveSelector": {"matchExpressions": [{"key": "data", "operator": "In", "values": ["cardholder"]}]}},
            {"spot"},
            id="selector-expression",
        ),
    ],
)
def test_sensitive_workloads_only_on_acceptable_pools(
    labels: dict[str, str], settings: dict[str, Any], expected_vetoed: set[str]
) -> None:
    proposal = agent(**settings).propose(situation(labels=labels), grid(2, 4), {})
    assert vetoed_pools(dict(proposal.vetoes)) == expected_vetoed
    # a pool is vetoed or not for every replica count alike
    assert len(proposal.vetoes) == 2 * len(expected_vetoed)
    assert set(proposal.utilities) == set(grid(2, 4)) - set(proposal.vetoes)


@pytest.mark.parametrize(
    ("settings", "fragments"),
    [
        pytest.param(
            {"requiredNodeLabels": HARDENED},
            [
                "pool spot lacks node labels accord.dev/hardened=true required for sensitive workloads",
                "pool spot is spot capacity, not allowed for sensitive workloads",
            ],
            id="both-reasons",
        ),
        pytest.param({}, ["pool spot is spot capacity"], id="spot-only"),
    ],
)
def test_veto_reasons_say_what_is_wrong(settings: dict[str, Any], fragments: list[str]) -> None:
    proposal = agent(**settings).propose(situation(labels=SENSITIVE), grid(3), {})
    reason = proposal.vetoes[Candidate(3, "spot")]
    for fragment in fragments:
        assert fragment in reason


def test_hardened_spot_pool_is_fine_when_spot_is_allowed() -> None:
    pool_map = pools(spot=Pool(name="spot", capacity_type="spot", node_labels=HARDENED, zones=frozenset({"a", "b"})))
    settings = {"requiredNodeLabels": HARDENED, "forbidSpotForSensitive": False}
    proposal = agent(**settings).propose(situation(labels=SENSITIVE, pool_map=pool_map), grid(3), {})
    assert proposal.vetoes == {}


def test_unknown_pool_is_vetoed_for_sensitive_workloads_with_required_labels() -> None:
    proposal = agent(requiredNodeLabels=HARDENED).propose(situation(labels=SENSITIVE), grid(3, placements=("gpu",)), {})
    assert "pool gpu lacks node labels" in proposal.vetoes[Candidate(3, "gpu")]


# --- security signal -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "floor", "expected_vetoed"),
    [
        pytest.param(1.0, 3, {"1@standard", "2@standard", "1@spot", "2@spot", "4@spot"}, id="active-floor-3"),
        pytest.param(5.0, 2, {"1@standard", "1@spot", "2@spot", "4@spot"}, id="active-floor-2"),
        pytest.param(1.0, 0, {"1@spot", "2@spot", "4@spot"}, id="active-no-replica-floor"),
        pytest.param(0.0, 3, set(), id="quiet"),
        pytest.param(-1.0, 3, set(), id="negative-is-quiet"),
        pytest.param(None, 3, set(), id="unknown-is-treated-as-quiet"),
    ],
)
def test_active_signal_holds_replica_and_zone_floor(value: float | None, floor: int, expected_vetoed: set[str]) -> None:
    sec = agent(signalQuery=SIGNAL_QUERY, minReplicasDuringSignal=floor, minZonesDuringSignal=2)
    proposal = sec.propose(situation(labels=ORDINARY), grid(1, 2, 4), signal(value))
    assert {str(c) for c in proposal.vetoes} == expected_vetoed


def test_signal_veto_reasons() -> None:
    sec = agent(signalQuery=SIGNAL_QUERY)
    proposal = sec.propose(situation(), grid(1, 4), signal(1.0))
    assert proposal.vetoes[Candidate(1, "standard")] == "security signal active: at least 3 replicas are held"
    assert "pool spot spans 1 zone(s), 2 required" in proposal.vetoes[Candidate(4, "spot")]
    assert "security signal ACTIVE" in proposal.rationale


@pytest.mark.parametrize(
    ("zones", "required", "vetoed"),
    [(2, 2, False), (1, 2, True), (3, 3, False), (2, 3, True), (0, 1, True)],
    ids=["2-of-2", "1-of-2", "3-of-3", "2-of-3", "no-known-zone"],
)
def test_zone_spread_during_signal(zones: int, required: int, vetoed: bool) -> None:
    pool_map = {"pool": Pool(name="pool", zones=frozenset(f"eu-west-1{z}" for z in "abc"[:zones]))}
    sec = agent(signalQuery=SIGNAL_QUERY, minZonesDuringSignal=required, minReplicasDuringSignal=0)
    proposal = sec.propose(situation(placement="pool", pool_map=pool_map), grid(5, placements=("pool",)), signal(1.0))
    assert (Candidate(5, "pool") in proposal.vetoes) is vetoed


def test_sensitivity_and_signal_reasons_combine() -> None:
    sec = agent(signalQuery=SIGNAL_QUERY, requiredNodeLabels=HARDENED)
    reason = sec.propose(situation(labels=SENSITIVE), grid(1), signal(1.0)).vetoes[Candidate(1, "spot")]
    assert reason.count(";") == 3  # labels, spot, zones, replica floor


# --- confidence ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "evidence", "expected"),
    [
        pytest.param(None, {}, 1.0, id="no-signal-configured"),
        pytest.param(SIGNAL_QUERY, {}, 0.5, id="configured-but-not-fetched"),
        pytest.param(SIGNAL_QUERY, signal(None), 0.5, id="configured-but-absent"),
        pytest.param(SIGNAL_QUERY, signal(0.0), 1.0, id="fresh-quiet"),
        pytest.param(SIGNAL_QUERY, signal(1.0), 1.0, id="fresh-active"),
        pytest.param(SIGNAL_QUERY, signal(0.0, age=250.0), 0.5, id="stale-quiet-floors-at-half"),
    ],
)
def test_confidence(query: str | None, evidence: EvidenceSet, expected: float) -> None:
    sec = agent(signalQuery=query) if query else agent()
    assert sec.propose(situation(), grid(4), evidence).confidence == pytest.approx(expected)


def test_missing_signal_is_said_in_the_rationale() -> None:
    proposal = agent(signalQuery=SIGNAL_QUERY).propose(situation(), grid(4), {})
    assert "no security signal" in proposal.rationale
    assert proposal.vetoes == {}


# --- preferences and evidence --------------------------------------------------------------------------------------


def test_staying_put_is_preferred_over_moving() -> None:
    proposal = agent().propose(situation(placement="standard"), grid(2, 4), {})
    assert proposal.utility(Candidate(4, "standard")) == 1.0
    assert proposal.utility(Candidate(4, "spot")) == pytest.approx(1.0 - MOVE_PENALTY)
    assert proposal.ideal == Candidate(4, "standard")  # the current candidate


@pytest.mark.parametrize(("query", "names"), [(None, []), (SIGNAL_QUERY, ["security_signal"])])
def test_evidence_needed_only_with_a_signal_query(query: str | None, names: list[str]) -> None:
    requests = (agent(signalQuery=query) if query else agent()).evidence_needed()
    assert [r.name for r in requests] == names
    assert all(r.query == SIGNAL_QUERY and r.kind is QueryKind.INSTANT for r in requests)


def test_signal_evidence_is_recorded() -> None:
    evidence = signal(1.0)
    proposal = agent(signalQuery=SIGNAL_QUERY).propose(situation(), grid(4), evidence)
    assert proposal.evidence == (evidence["security_signal"],)
