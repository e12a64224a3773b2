"""The observed-demand floor: no protocol, weight or trust takes a workload below what the demand
observed now needs at the SLO utilisation; only a hard veto can, and then a person must approve."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from accord.agents.base import Agent
from accord.agents.performance import PerformanceAgent
from accord.metrics.evidence import Evidence, Source
from accord.models.common import Model
from accord.models.negotiation import Verdict, WorkloadRef
from accord.models.policy import NegotiationPolicySpec, Protocol
from accord.models.settings import PerformanceSettings
from accord.negotiation.candidates import replica_range
from accord.negotiation.engine import FLOOR_RULE, Outcome, Seat, negotiate
from accord.negotiation.record import build_record
from accord.negotiation.rules import History
from accord.negotiation.table import seat_agents
from tests.factories import NOW, agent_specs, demand, policy, situation
from tests.negotiation.conftest import ScriptedAgent, random_scorer, random_veto

PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CAPACITY = 100.0
WEB = WorkloadRef(kind="Deployment", namespace="shop", name="web")


def performance(*, slo: float | None = 0.5, target: float = 0.45, stale_after: int = 180) -> PerformanceAgent:
    return PerformanceAgent(
        "performance",
        PerformanceSettings(
            capacity_per_pod=CAPACITY,
            target_utilisation=target,
            slo_utilisation=slo,
            stale_after_seconds=stale_after,
            seasonality=False,
        ),
    )


def cheapest() -> ScriptedAgent:
    """Scores fewer replicas higher: an agent that would take the workload to its minimum."""
    return ScriptedAgent("cheap", lambda c: 1.0 / (1.0 + c.replicas))


def needed_at(demand_now: float, slo: float) -> int:
    """The fewest pods serving `demand_now` at no more than `slo` utilisation, as the replay counts it."""
    n = 0
    while demand_now > 0 and (n == 0 or demand_now / (n * CAPACITY) > slo):
        n += 1
    return n


def spec(**overrides: Any) -> NegotiationPolicySpec:
    base: dict[str, Any] = {
        "agents": [{"name": "performance"}, {"name": "cheap"}],
        "bounds": {
            "minReplicas": 1,
            "maxReplicas": 60,
            "maxStepUp": 40,
            "maxStepDown": 40,
            "scaleDownStabilizationSeconds": 0,
        },
        "rules": {"minConfidence": 0.0, "requireApproval": {"placementChange": False}},
    }
    base.update(overrides)
    return NegotiationPolicySpec.model_validate(base)


def decide(
    levels: list[float],
    *,
    replicas: int,
    ready: int | None = None,
    policy_spec: NegotiationPolicySpec | None = None,
    others: tuple[tuple[Seat, Agent[Model]], ...] = (),
    perf_weight: float = 1.0,
    perf_trust: float = 1.0,
    age: float = 0.0,
    perf: PerformanceAgent | None = None,
) -> Outcome:
    """One decision where the performance agent sees `levels` (a sample a minute, the last one now)
    and a cheap agent with ten times its weight wants as few replicas as possible."""
    seats: list[tuple[Seat, Agent[Model]]] = [
        (Seat("performance", weight=perf_weight, trust=perf_trust), perf or performance()),
        (Seat("cheap", weight=10.0), cheapest()),
        *others,
    ]
    return negotiate(
        policy=policy_spec or spec(),
        situation=situation(replicas=replicas, ready=ready, placement="standard"),
        agents=seats,
        evidence={"performance": {"demand": demand(levels, age=age)}},
    )


# --- thresholds ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last", "replicas", "ready", "floor"),
    [
        # 50/s per pod at the SLO of 0.5: 500/s needs exactly 10 pods, a hair more needs 11.
        pytest.param(500.0, 30, 30, 10, id="demand-needs-exactly-10"),
        pytest.param(500.0001, 30, 30, 11, id="demand-needs-just-over-10"),
        pytest.param(499.9999, 30, 30, 10, id="demand-needs-just-under-10"),
        # 12 asked for, 10 ready: at 500/s they run at exactly 0.5, not above: down to the 10 needed.
        pytest.param(500.0, 12, 10, 10, id="utilisation-at-the-slo-may-go-down"),
        pytest.param(499.9999, 12, 10, 10, id="utilisation-just-below-the-slo-may-go-down"),
        # a hair above 0.5: no fewer than the 12 asked for (pods still starting), though 11 would serve.
        pytest.param(500.0001, 12, 10, 12, id="utilisation-just-above-the-slo-holds-the-current-count"),
        pytest.param(500.0001, 12, 0, 12, id="no-pod-ready-holds-the-current-count"),
    ],
)
def test_the_floor_is_what_the_latest_demand_needs_at_the_slo(
    last: float, replicas: int, ready: int, floor: int
) -> None:
    outcome = decide([200.0] * 29 + [last], replicas=replicas, ready=ready, perf_weight=0.0)
    assert outcome.floor == floor
    # The performance agent has no say at all (weight 0): the cheap agent takes it as low as the floor lets it.
    assert outcome.target.replicas == floor
    assert outcome.verdict is (Verdict.NO_CHANGE if floor == replicas else Verdict.APPLY)


def test_the_slo_utilisation_defaults_to_the_agents_ceiling() -> None:
    # target 0.4 x 1.15 = 0.46: 460/s needs exactly 10 pods.
    at = decide([460.0] * 30, replicas=30, perf_weight=0.0, perf=performance(slo=None, target=0.4))
    above = decide([460.5] * 30, replicas=30, perf_weight=0.0, perf=performance(slo=None, target=0.4))
    assert (at.floor, above.floor) == (10, 11)


def test_without_a_floor_the_cheap_agent_would_take_it_to_the_minimum() -> None:
    # The control for every test here: what the protocol gives when there is no fresh evidence.
    stale = decide([500.0] * 30, replicas=30, perf_weight=0.0, age=181.0)
    assert stale.floor is None
    assert stale.target.replicas == 30 - 29  # down to minReplicas


@pytest.mark.parametrize(
    ("age", "floor"),
    [pytest.param(180.0, 10, id="sample-180s-old-still-counts"), pytest.param(180.5, None, id="older-is-stale")],
)
def test_a_stale_sample_sets_no_floor(age: float, floor: int | None) -> None:
    outcome = decide([500.0] * 30, replicas=30, perf_weight=0.0, age=age)
    assert outcome.floor == floor


def test_missing_demand_sets_no_floor_and_the_missing_metrics_rule_applies() -> None:
    outcome = negotiate(
        policy=spec(),
        situation=situation(replicas=30, placement="standard"),
        agents=[(Seat("performance"), performance()), (Seat("cheap", weight=10.0), cheapest())],
        evidence={"performance": {"demand": Evidence.absent("demand", Source.PROMETHEUS)}},
    )
    assert outcome.floor is None
    assert [g.rule for g in outcome.gates] == ["missingMetrics"]
    assert outcome.target.replicas == 30  # hold, the policy's default


@pytest.mark.parametrize("protocol", list(Protocol))
@pytest.mark.parametrize("trust", [0.0, 0.05, 1.0])
def test_no_protocol_or_trust_negotiates_the_floor_away(protocol: Protocol, trust: float) -> None:
    outcome = decide([200.0] * 29 + [1240.0], replicas=13, perf_trust=trust, policy_spec=spec(protocol=protocol.value))
    assert outcome.floor == 25  # 1240/s at 50/s a pod
    assert outcome.target.replicas >= 25
    assert outcome.verdict is Verdict.APPLY


def test_below_the_floor_while_pods_start_the_current_count_is_kept() -> None:
    # 30 ready pods would do; 20 of the 40 asked for are ready and run above the SLO: keep the 40.
    outcome = decide([1400.0] * 30, replicas=40, ready=20)
    assert outcome.floor == 40
    assert outcome.target.replicas == 40
    assert outcome.verdict is Verdict.NO_CHANGE


def test_below_the_floor_a_scale_up_may_be_limited_by_the_step_never_reversed() -> None:
    bounds = {"minReplicas": 1, "maxReplicas": 60, "maxStepUp": 5, "maxStepDown": 40}
    outcome = decide([2000.0] * 30, replicas=10, policy_spec=spec(bounds=bounds))
    assert outcome.floor == 15  # 40 needed, but one decision adds at most 5
    assert outcome.target.replicas == 15
    assert outcome.verdict is Verdict.APPLY


def test_a_scale_up_stabilization_window_does_not_hold_it_below_the_floor() -> None:
    bounds = {"minReplicas": 1, "maxReplicas": 60, "maxStepUp": 40, "maxStepDown": 40}
    window = spec(bounds=bounds | {"scaleUpStabilizationSeconds": 300, "scaleDownStabilizationSeconds": 0})
    history = History(recommendations=((NOW - 60, 5), (NOW - 120, 5)))
    outcome = negotiate(
        policy=window,
        situation=situation(replicas=5, placement="standard"),
        agents=[(Seat("performance"), performance()), (Seat("cheap", weight=10.0), cheapest())],
        evidence={"performance": {"demand": demand([1000.0] * 30)}},
        history=history,
    )
    assert outcome.target.replicas == 20
    assert any(g.rule == FLOOR_RULE and "limited to 5" in g.message for g in outcome.gates)


@pytest.mark.parametrize(
    ("last", "target"),
    [
        # 20 pods, a 50% scale-up tolerance: 1500/s needs 30 pods at the SLO of 0.5, a step of exactly
        # 50%, which the tolerance would hold; a hair less needs 30 too; 1000/s needs the 20 there are.
        pytest.param(1500.0, 30, id="floor-at-the-tolerance-edge-is-asked-for"),
        pytest.param(1499.9999, 30, id="floor-just-inside-the-tolerance-is-asked-for"),
        pytest.param(1000.0, 20, id="floor-met-by-the-current-count"),
    ],
)
def test_a_scale_up_tolerance_does_not_hold_it_below_the_floor(last: float, target: int) -> None:
    bounds = {"minReplicas": 1, "maxReplicas": 60, "maxStepUp": 40, "maxStepDown": 40}
    band = spec(bounds=bounds | {"scaleUpTolerance": 0.5, "scaleDownStabilizationSeconds": 0})
    outcome = decide([1000.0] * 29 + [last], replicas=20, policy_spec=band)
    assert outcome.target.replicas >= needed_at(last, 0.5)
    assert outcome.target.replicas == target


@pytest.mark.parametrize("action", ["currentIfLower", "fallback"])
def test_another_agents_missing_metrics_do_not_take_it_below_the_floor(action: str) -> None:
    rules = {"minConfidence": 0.0, "missingMetrics": {"action": action, "fallbackReplicas": 2}}
    blind = ScriptedAgent("blind", lambda c: 1.0, missing=True)
    outcome = decide([1000.0] * 30, replicas=30, policy_spec=spec(rules=rules), others=((Seat("blind"), blind),))
    assert outcome.floor == 20
    assert outcome.target.replicas == 20


# --- hard vetoes -----------------------------------------------------------------------------------------------------


# Every count from 1 to 30 is a candidate (no thinning): the vetoes alone decide how high it may go.
DENSE = {"minReplicas": 1, "maxReplicas": 30, "maxStepUp": 30, "maxStepDown": 30, "scaleDownStabilizationSeconds": 0}


def budget_spec(limit: float) -> NegotiationPolicySpec:
    return spec(
        bounds=DENSE,
        placements=[{"name": "standard", "pricePerPodHour": 0.10}],
        rules={
            "minConfidence": 0.0,
            "budget": {"maxCostPerHour": limit},
            "requireApproval": {"placementChange": False},
        },
    )


def test_a_budget_that_forces_it_below_the_floor_and_the_current_count_needs_approval() -> None:
    # 1000/s needs 20 pods; the budget of 0.8/h pays for 8; the workload runs 12 (over the budget).
    outcome = decide([1000.0] * 30, replicas=12, policy_spec=budget_spec(0.8))
    assert outcome.floor == 20
    assert outcome.verdict is Verdict.PENDING_APPROVAL
    assert outcome.target.replicas == 8  # no lower than the vetoes force it
    assert not outcome.enforceable
    gate = next(g for g in outcome.gates if g.rule == FLOOR_RULE)
    assert gate.effect == "approval"
    assert "over the policy's budget" in gate.message
    assert "1000.0/s" in gate.message and "at least 20" in gate.message
    assert "needs approval" in outcome.reason


def test_a_compliance_veto_that_forces_it_below_the_floor_needs_approval() -> None:
    # A compliance agent with a veto allows no more than 6 replicas on this pool (a quota, say).
    quota = ScriptedAgent("compliance", lambda c: 1.0, veto=lambda c: c.replicas > 6)
    outcome = decide(
        [1000.0] * 30, replicas=10, policy_spec=spec(bounds=DENSE), others=((Seat("compliance", may_veto=True), quota),)
    )
    assert outcome.verdict is Verdict.PENDING_APPROVAL
    assert outcome.target.replicas == 6
    gate = next(g for g in outcome.gates if g.rule == FLOOR_RULE)
    assert gate.effect == "approval" and "compliance says no" in gate.message


def test_a_budget_that_only_keeps_it_short_of_the_floor_lets_it_rise_without_approval() -> None:
    outcome = decide([1000.0] * 30, replicas=5, policy_spec=budget_spec(0.8))
    assert outcome.verdict is Verdict.APPLY
    assert outcome.target.replicas == 8  # as high as the budget allows, toward the 20 needed
    gate = next(g for g in outcome.gates if g.rule == FLOOR_RULE)
    assert gate.effect == "cap" and "over the policy's budget" in gate.message


# --- the collapse, with the built-in agents ------------------------------------------------------------------


def test_a_performance_agent_with_collapsed_trust_still_holds_the_floor_under_nash() -> None:
    # Thirteen replicas, a surge the forecast has barely seen: the latest sample needs 25 pods at the SLO.
    surge = [250.0] * 29 + [2100.0]
    spec_ = policy(bounds={"minReplicas": 1, "maxReplicas": 200, "maxStepUp": 200, "maxStepDown": 20})
    table = seat_agents(
        spec_,
        agent_specs(performance={"type": "performance", "performance": {"sloUtilisation": 0.85}}),
        trust={"performance": 0.05},
    )
    outcome = negotiate(
        policy=spec_,
        situation=situation(replicas=13, placement="standard"),
        agents=table.seated,
        evidence={"performance": {"demand": demand(surge)}},
    )
    assert outcome.floor == 25
    assert outcome.target.replicas >= 25
    record = build_record(outcome, workload=WEB, policy="shop/p", mode="enforce", now=NOW)
    perf = next(p for p in record.proposals if p.agent == "performance")
    assert "2100.0/s, needs 25 pods at the SLO utilisation of 85.0%: no decision goes below that" in perf.rationale


def test_the_record_says_when_the_floor_set_the_agreement_aside() -> None:
    outcome = decide([200.0] * 29 + [1240.0], replicas=13, perf_trust=0.0)
    gate = next(g for g in outcome.gates if g.rule == FLOOR_RULE)
    assert gate.effect == "cap"
    assert gate.message.startswith("the agents agreed on 1@standard, below at least 25")
    assert outcome.agreed is not None and outcome.agreed.replicas == 25
    assert outcome.recommendation == 25  # what stabilization remembers is the floored agreement


def test_a_floor_that_does_not_bind_leaves_no_gate() -> None:
    outcome = decide([200.0] * 30, replicas=13, perf_weight=100.0)
    assert outcome.floor == 4
    assert not [g for g in outcome.gates if g.rule == FLOOR_RULE]


# --- the property ----------------------------------------------------------------------------------------------------


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    low = draw(st.integers(0, 20))
    high = draw(st.integers(max(low, 1), low + 80))
    protocol = draw(st.sampled_from(list(Protocol)))
    placements = draw(st.sets(st.sampled_from(["standard", "spot"])))
    rules: dict[str, Any] = {
        "minConfidence": draw(st.sampled_from([0.0, 0.0, 0.5])),
        "requireApproval": {"placementChange": False},
        "missingMetrics": draw(
            st.sampled_from(
                [
                    {"action": "hold"},
                    {"action": "fallback", "fallbackReplicas": 0},
                    {"action": "currentIfLower", "fallbackReplicas": 1},
                ]
            )
        ),
    }
    if draw(st.booleans()):
        rules["budget"] = {"maxCostPerHour": draw(st.floats(0.0, 6.0))}
    spec_ = NegotiationPolicySpec.model_validate(
        {
            "agents": [{"name": "performance"}],
            "protocol": protocol.value,
            "bounds": {
                "minReplicas": low,
                "maxReplicas": high,
                "maxStepUp": draw(st.integers(1, 60)),
                "maxStepDown": draw(st.integers(1, 60)),
                "scaleUpStabilizationSeconds": draw(st.sampled_from([0, 300])),
                "scaleDownStabilizationSeconds": draw(st.sampled_from([0, 300])),
                "scaleDownTolerance": draw(st.sampled_from([0.0, 0.1])),
                "scaleUpTolerance": draw(st.sampled_from([0.0, 0.1, 0.5])),
            },
            "placements": [{"name": p, "pricePerPodHour": 0.1} for p in placements],
            "rules": rules,
        }
    )
    current = draw(st.integers(low, high))
    n = draw(st.integers(0, 4))
    seeds = draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n))
    rate = draw(st.sampled_from([0.0, 0.2, 0.6]))
    others: list[tuple[Seat, Agent[Model]]] = [
        (
            Seat(
                f"a{i}", weight=draw(st.floats(0.0, 20.0)), tier=draw(st.integers(0, 2)), may_veto=draw(st.booleans())
            ),
            ScriptedAgent(f"a{i}", random_scorer(s), veto=random_veto(s, rate), missing=draw(st.booleans()) and i == 0),
        )
        for i, s in enumerate(seeds)
    ]
    levels = draw(st.lists(st.floats(0.0, 5000.0), min_size=1, max_size=40))
    slo = draw(st.floats(0.3, 1.0))
    perf = performance(slo=slo, target=min(slo, draw(st.floats(0.1, 1.0))))
    seat = Seat(
        "performance",
        weight=draw(st.floats(0.0, 20.0)),
        tier=draw(st.integers(0, 2)),
        trust=draw(st.floats(0.0, 1.0)),
    )
    at = draw(st.integers(0, len(others)))
    agents = [*others[:at], (seat, perf), *others[at:]]
    history = History(
        recommendations=tuple(
            (NOW - 60 * k, draw(st.integers(low, high))) for k in range(1, draw(st.integers(0, 4)) + 1)
        )
    )
    return {
        "spec": spec_,
        "current": current,
        "ready": draw(st.integers(0, current + 5)),
        "agents": agents,
        "levels": levels,
        "age": draw(st.sampled_from([0.0, 30.0, 179.0, 600.0])),
        "slo": slo,
        "history": history,
    }


@PROFILE
@given(cases())
def test_no_decision_goes_below_the_observed_floor_unless_a_hard_veto_forces_it_with_approval(
    case: dict[str, Any],
) -> None:
    spec_, current, ready = case["spec"], case["current"], case["ready"]
    placement = spec_.placements[0].name if spec_.placements else "standard"
    outcome = negotiate(
        policy=spec_,
        situation=situation(replicas=current, ready=ready, placement=placement),
        agents=case["agents"],
        evidence={"performance": {"demand": demand(case["levels"], age=case["age"])}},
        history=case["history"],
    )
    # The floor, worked out here from the evidence alone: the latest sample, fresh, at the SLO;
    # no fewer than the current count while the ready pods run above the SLO; within the bounds.
    last = case["levels"][-1]
    fresh = case["age"] <= 180
    needed = needed_at(last, case["slo"])
    overloaded = last > 0 and (ready == 0 or last / (ready * CAPACITY) > case["slo"])
    observed = max(needed, current) if overloaded else needed
    _, high = replica_range(spec_.bounds, current)
    floor = min(observed, high) if fresh and observed > 0 else None
    assert outcome.floor == floor
    if floor is None or outcome.verdict is Verdict.IMPASSE:
        event("no floor" if floor is None else "impasse")
        return
    lowest = min(current, floor)
    gates = [g for g in outcome.gates if g.rule == FLOOR_RULE]
    event(f"floor gates: {sorted(g.effect for g in gates)}; verdict {outcome.verdict.value}")
    if outcome.target.replicas >= lowest:
        if outcome.verdict is Verdict.APPLY and outcome.target.replicas < floor:
            # short of the floor only where every candidate above the target is vetoed
            assert any(g.effect == "cap" and "vetoed" in g.message for g in gates)
            assert all(c in outcome.vetoed for c in outcome.candidates if c.replicas > outcome.target.replicas)
        return
    # Below the floor and the current count: only a hard veto can force it, and a person must approve.
    assert outcome.verdict is Verdict.PENDING_APPROVAL, outcome
    assert not outcome.enforceable
    assert any(g.effect == "approval" and "vetoed" in g.message for g in gates)
    assert all(c in outcome.vetoed for c in outcome.candidates if c.replicas > outcome.target.replicas)
