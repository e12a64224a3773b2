"""Accord in the replay: the operator's agents and engine, what they are shown, and how they fare."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from accord.agents.performance import UPPER_ALLOWANCE
from accord.models.policy import NegotiationPolicySpec
from accord.negotiation import engine
from accord.sim import model as model_module
from accord.sim import negotiated
from accord.sim.baselines import Hpa
from accord.sim.model import ReplayModel, replay
from accord.sim.negotiated import (
    Negotiated,
    PolicyFileError,
    default_documents,
    default_policy,
    default_policy_yaml,
    parse_documents,
)
from accord.sim.trace import make_trace
from tests.sim.conftest import sinusoid, steps_and_spikes, trace

MODEL = ReplayModel()


def accord(model: ReplayModel = MODEL) -> Negotiated:
    spec, agents = default_policy(model)
    return Negotiated(policy=spec, agents=agents, model=model)


def test_the_policy_sees_no_future(monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[tuple[float, float, float]] = []  # (now, latest demand sample, earliest)

    def spy(**kwargs: Any) -> engine.Outcome:
        now = kwargs["situation"].now
        stamps = [t for ev in kwargs["evidence"].values() for e in ev.values() for t, _ in e.series]
        shown.append((now, max(stamps, default=-1.0), min(stamps, default=-1.0)))
        return engine.negotiate(**kwargs)

    monkeypatch.setattr(negotiated, "negotiate", spy)
    t = trace([100.0 + 10 * (i % 7) for i in range(40)])
    replay(t, accord(), MODEL)
    assert len(shown) == 40  # one negotiation a tick (interval 60 s)
    assert shown[0][1] == -1.0  # nothing to see at the first tick
    for now, latest, _ in shown[1:]:
        assert latest == now - 60.0  # demand up to the previous tick, never this one's


def test_evidence_is_answered_from_the_trace_as_the_agents_ask() -> None:
    policy = accord()
    t = trace([float(i) for i in range(200)])
    seen: list[dict[str, Any]] = []
    original = policy.evidence

    def record(view: Any) -> Any:
        found = original(view)
        seen.append(found)
        return found

    policy.evidence = record  # type: ignore[method-assign]
    replay(t, policy, MODEL)
    last = seen[-1]["performance"]
    assert last["demand"].source.value == "trace"
    assert last["demand"].samples == 60  # the last hour up to the previous tick, a sample a minute
    assert last["demand"].series[-1] == (t.time(198), 198.0)
    assert last["demand_day_ago"].missing  # the trace is shorter than a day
    assert seen[-1]["cost"] == {}


def test_outcomes_are_counted_and_history_kept_as_the_operator_keeps_it() -> None:
    policy = accord()
    run = replay(trace([300.0] * 30 + [900.0] * 30), policy, MODEL)
    assert sum(run.notes.values()) == 60
    assert run.notes.get("verdict:Apply", 0) >= 1
    assert policy.decisions.history.changes  # applied changes are remembered, for the change budget
    # recommendations are kept for the longest stabilization window: none in the default, so the latest only
    assert len(policy.decisions.history.recommendations) == 1


def test_an_interval_longer_than_a_tick_negotiates_every_interval() -> None:
    spec, agents = default_policy(MODEL)
    slow = spec.model_copy(update={"interval_seconds": 180})
    policy = Negotiated(policy=slow, agents=agents, model=MODEL)
    run = replay(trace([300.0] * 30), policy, MODEL)
    assert sum(run.notes.values()) == 10


def test_the_default_policy_round_trips_through_yaml() -> None:
    text = default_policy_yaml(MODEL)
    spec, agents = parse_documents(list(yaml.safe_load_all(text)), origin="yaml")
    assert (spec, agents) == default_policy(MODEL)
    assert sorted(agents) == ["compliance", "cost", "performance", "security"]
    perf = agents["performance"].performance
    assert perf is not None
    assert perf.capacity_per_pod == MODEL.capacity
    assert perf.startup_seconds == MODEL.startup * 60
    assert perf.target_utilisation * (1 + UPPER_ALLOWANCE) == pytest.approx(MODEL.slo, abs=1e-3)
    assert spec.protocol.value == "nash"
    assert spec.interval_seconds == 60
    assert (spec.bounds.min_replicas, spec.bounds.max_replicas) == (MODEL.min_replicas, MODEL.max_replicas)
    assert spec.rules.require_approval.step_replicas_above is None


@pytest.mark.parametrize(
    ("documents", "message"),
    [
        pytest.param([], "expected one NegotiationPolicy, found 0", id="no-policy"),
        pytest.param(["policy", "policy"], "expected one NegotiationPolicy, found 2", id="two-policies"),
        pytest.param(["policy"], "no Agent document: performance", id="missing-agents"),
        pytest.param(["bad-agent"], "Agent/performance is invalid", id="invalid-agent"),
    ],
)
def test_policy_files_that_cannot_be_replayed(documents: list[str], message: str) -> None:
    docs = default_documents(MODEL)
    policy_doc = docs[-1]
    made: list[Any] = []
    for d in documents:
        if d == "policy":
            made.append(policy_doc)
        elif d == "bad-agent":
            made.append({"kind": "Agent", "metadata": {"name": "performance"}, "spec": {"type": "nope"}})
    with pytest.raises(PolicyFileError, match=message):
        parse_documents(made, origin="file.yaml")


def test_a_policy_without_placements_negotiates_on_the_default_pool() -> None:
    spec, _agents = default_policy(MODEL)
    assert isinstance(spec, NegotiationPolicySpec)
    assert not spec.placements
    assert accord().placement == "default"


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda seed: sinusoid(seed=seed), id="sinusoid-with-noise"),
        pytest.param(lambda seed: steps_and_spikes(seed=seed), id="steps-and-spikes"),
    ],
)
def test_accord_beats_hpa_at_0_7_on_synthetic_traces(make: Any) -> None:
    """Generality: traces the policy was not developed on, four seeds each, eight hours a trace."""
    violations = {"accord": 0, "hpa": 0}
    for seed in range(1, 5):
        t = make_trace("synthetic", make(seed), peak_pods=20, capacity=100)
        ours = replay(t, accord(), MODEL).figures
        hpa = replay(t, Hpa(0.7, MODEL), MODEL).figures
        assert ours.pod_hours < hpa.pod_hours, seed
        assert ours.slo_minutes <= hpa.slo_minutes, seed
        violations["accord"] += ours.slo_minutes
        violations["hpa"] += hpa.slo_minutes
    assert violations["accord"] < violations["hpa"]


def gated(*, expiry_seconds: int = 3600) -> tuple[NegotiationPolicySpec, dict[str, Any]]:
    """The default replay policy, but every change waits for a person."""
    documents = default_documents(MODEL)
    rules = documents[-1]["spec"]["rules"]
    rules["requireApproval"] = {"placementChange": True, "stepReplicasAbove": 0}
    documents[-1]["spec"]["approval"] = {"expirySeconds": expiry_seconds}
    return parse_documents(documents, origin="test")


RISING = [300.0] * 60 + [900.0] * 60


def test_without_a_person_a_gated_change_is_never_applied() -> None:
    spec, agents = gated()
    run = replay(trace(RISING), Negotiated(policy=spec, agents=agents, model=MODEL), MODEL)
    assert run.notes.get("verdict:PendingApproval", 0) >= 1
    assert set(run.requested) == {run.initial}  # requested never moves
    assert "approval:Approved" not in run.notes


def test_a_person_approving_after_five_minutes_applies_the_decision_then() -> None:
    spec, agents = gated()
    policy = Negotiated(policy=spec, agents=agents, model=MODEL, approve_after=300.0)
    run = replay(trace(RISING), policy, MODEL)
    requested = run.requested
    first_change = next(i for i, r in enumerate(requested) if r != requested[0])
    assert first_change >= 60 + 5  # the demand rises at tick 60; nothing moves before a person approves
    assert requested[-1] > requested[0]  # the scale-up the agents wanted is in place by the end
    assert run.notes["approval:Approved"] >= 1
    assert policy.decisions.history.changes  # an approved change counts against the change budget like any other


def test_a_decision_nobody_approves_in_time_expires() -> None:
    spec, agents = gated(expiry_seconds=120)
    policy = Negotiated(policy=spec, agents=agents, model=MODEL, approve_after=600.0)
    run = replay(trace(RISING), policy, MODEL)
    assert run.notes["approval:Expired"] >= 1
    assert "approval:Approved" not in run.notes
    assert set(run.requested) == {run.initial}


def test_trust_is_learnt_in_a_replay_as_the_operator_learns_it() -> None:
    steady = accord()
    replay(trace([600.0] * 240), steady, MODEL)
    assert steady.trust["replay/performance"].trust == 1.0
    assert steady.trust["replay/performance"].samples > 50  # every prediction checked once due
    erratic = accord()
    replay(trace([600.0 if (i * 7919) % 13 < 9 else 2400.0 for i in range(240)]), erratic, MODEL)
    assert erratic.trust["replay/performance"].trust < 1.0
    seat = next(seat for seat, _ in erratic.seated if seat.name == "performance")
    assert seat.trust == erratic.trust["replay/performance"].trust  # and the engine weighs it so


class Unprepared:
    """The same policy, never handed the coming ticks ahead: it builds each tick's evidence then."""

    def __init__(self, policy: Negotiated) -> None:
        self.policy = policy
        self.name = policy.name

    def decide(self, view: Any) -> int:
        return self.policy.decide(view)

    def notes(self) -> dict[str, int]:
        return self.policy.notes()


def test_preparing_ahead_changes_no_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forecasts made ahead for the coming ticks, in batches, give the very decisions made tick by tick."""
    monkeypatch.setattr(model_module, "LOOKAHEAD", 50)  # several batches, and ticks at their edges
    t = make_trace("steps", steps_and_spikes(hours=5), peak_pods=20, capacity=100)
    prepared = replay(t, accord(), MODEL)
    alone = replay(t, Unprepared(accord()), MODEL)
    assert prepared.requested == alone.requested
    assert prepared.notes == alone.notes
    assert len(set(prepared.requested)) > 3  # it did scale


@pytest.mark.parametrize("knob", ["scaleDownTolerance", "scaleUpTolerance"])
def test_the_default_tolerance_cuts_scaling_actions_and_stays_cheaper_than_the_hpa(knob: str) -> None:
    """Small dips, and a demand hovering at the target, do not churn the workload: the default policy's
    10% tolerance each way (the HPA's own default) against the same policy without it, on a noisy
    trace it was not developed on."""
    t = make_trace("synthetic", sinusoid(seed=3), peak_pods=20, capacity=100)
    documents = default_documents(MODEL)
    assert documents[-1]["spec"]["bounds"][knob] == 0.1
    documents[-1]["spec"]["bounds"][knob] = 0.0
    spec, agents = parse_documents(documents, origin="test")
    without = replay(t, Negotiated(policy=spec, agents=agents, model=MODEL), MODEL).figures
    ours = replay(t, accord(), MODEL).figures
    hpa = replay(t, Hpa(0.7, MODEL), MODEL).figures
    assert ours.actions < without.actions
    assert ours.pod_hours < hpa.pod_hours
    assert ours.slo_minutes <= hpa.slo_minutes
