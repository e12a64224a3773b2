"""Properties of the engine that must hold for any agents, policies and workloads."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.agents.base import Candidate
from accord.models.negotiation import Verdict
from accord.models.policy import NegotiationPolicySpec, Protocol
from accord.negotiation.candidates import replica_range
from accord.negotiation.engine import negotiate
from accord.negotiation.protocols import Voter, agree, nash
from tests.factories import NOW, situation
from tests.negotiation.conftest import ScriptedAgent, random_scorer, random_veto, seated

PROFILE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def policies(draw: st.DrawFn, *, protocol: Protocol | None = None) -> NegotiationPolicySpec:
    low = draw(st.integers(0, 30))
    high = draw(st.integers(low, low + 60))
    spec: dict[str, Any] = {
        "agents": [{"name": f"a{i}"} for i in range(4)],
        "protocol": (protocol or draw(st.sampled_from(list(Protocol)))).value,
        "bounds": {
            "minReplicas": low,
            "maxReplicas": high,
            "maxStepUp": draw(st.integers(1, 50)),
            "maxStepDown": draw(st.integers(1, 50)),
            "scaleDownStabilizationSeconds": 0,
        },
        "placements": [{"name": p, "pricePerPodHour": 0.1} for p in draw(st.sets(st.sampled_from(["x", "y"])))],
        "rules": {"minConfidence": 0.0, "requireApproval": {"placementChange": False}},
    }
    return NegotiationPolicySpec.model_validate(spec)


@st.composite
def scenarios(draw: st.DrawFn, *, protocol: Protocol | None = None) -> tuple[NegotiationPolicySpec, int, list[Any]]:
    policy = draw(policies(protocol=protocol))
    current = draw(st.integers(policy.bounds.min_replicas, policy.bounds.max_replicas))
    n = draw(st.integers(1, 4))
    seeds = draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n))
    rate = draw(st.sampled_from([0.0, 0.2, 0.6]))
    agents = [ScriptedAgent(f"a{i}", random_scorer(s), veto=random_veto(s, rate)) for i, s in enumerate(seeds)]
    weights = draw(st.lists(st.floats(0.1, 5.0), min_size=n, max_size=n))
    return policy, current, seated(*agents, weights=weights)


@PROFILE
@given(scenarios())
def test_a_vetoed_candidate_is_never_chosen(scenario: tuple[NegotiationPolicySpec, int, list[Any]]) -> None:
    policy, current, agents = scenario
    outcome = negotiate(policy=policy, situation=situation(replicas=current, placement="x"), agents=agents, evidence={})
    if outcome.verdict is Verdict.IMPASSE:
        assert not outcome.feasible
        assert outcome.target == outcome.current
        return
    for proposal in outcome.proposals:
        assert outcome.target not in proposal.vetoes or outcome.target == outcome.current
        assert outcome.agreed not in proposal.vetoes


@PROFILE
@given(scenarios())
def test_outcomes_stay_within_bounds_and_step_limits(scenario: tuple[NegotiationPolicySpec, int, list[Any]]) -> None:
    policy, current, agents = scenario
    outcome = negotiate(policy=policy, situation=situation(replicas=current, placement="x"), agents=agents, evidence={})
    low, high = replica_range(policy.bounds, current)
    assert policy.bounds.min_replicas <= outcome.target.replicas <= policy.bounds.max_replicas
    assert low <= outcome.target.replicas <= high
    assert current - policy.bounds.max_step_down <= outcome.target.replicas <= current + policy.bounds.max_step_up


@PROFILE
@given(
    st.lists(st.tuples(st.integers(0, 20), st.sampled_from("xyz")), min_size=1, max_size=30, unique=True),
    st.lists(st.integers(0, 10**6), min_size=1, max_size=5),
    st.lists(st.floats(0.01, 10), min_size=5, max_size=5),
)
def test_nash_choice_is_pareto_optimal(raw: list[tuple[int, str]], seeds: list[int], weights: list[float]) -> None:
    feasible = [Candidate(r, p) for r, p in raw]
    voters = [Voter(f"a{i}", weights[i], 0, {c: random_scorer(s)(c) for c in feasible}) for i, s in enumerate(seeds)]
    chosen = nash(feasible, voters, feasible[0]).candidate
    for other in feasible:
        dominates = all(v.u(other) >= v.u(chosen) for v in voters) and any(v.u(other) > v.u(chosen) for v in voters)
        assert not dominates, f"{other} Pareto-dominates the Nash choice {chosen}"


@PROFILE
@given(scenarios(), st.integers(0, 10**6))
def test_with_identical_agents_every_protocol_agrees(
    scenario: tuple[NegotiationPolicySpec, int, list[Any]], seed: int
) -> None:
    policy, current, _ = scenario
    score = random_scorer(seed)
    picks = {}
    for protocol in Protocol:
        same = seated(*(ScriptedAgent(f"a{i}", score) for i in range(3)), weights=[1.0, 2.0, 0.5])
        spec = policy.model_copy(update={"protocol": protocol})
        outcome = negotiate(policy=spec, situation=situation(replicas=current, placement="x"), agents=same, evidence={})
        picks[protocol] = outcome.agreed
    assert len(set(picks.values())) == 1, picks


@PROFILE
@given(scenarios(), st.sampled_from(["block", "requireApproval"]))
def test_no_enforceable_change_comes_out_of_an_active_freeze_window(
    scenario: tuple[NegotiationPolicySpec, int, list[Any]], action: str
) -> None:
    policy, current, agents = scenario
    # NOW is 15:06 UTC on a Sunday: this window opened at 15:00 and lasts an hour.
    rules = policy.rules.model_copy(
        update={
            "freeze_windows": [
                NegotiationPolicySpec.model_validate(
                    {
                        "agents": [{"name": "a"}],
                        "rules": {
                            "freezeWindows": [{"schedule": "0 15 * * 0", "durationMinutes": 60, "action": action}]
                        },
                    }
                ).rules.freeze_windows[0]
            ]
        }
    )
    spec = policy.model_copy(update={"rules": rules})
    outcome = negotiate(
        policy=spec, situation=situation(replicas=current, placement="x", now=NOW), agents=agents, evidence={}
    )
    assert not (outcome.enforceable and outcome.changes)
    if outcome.changes:
        assert outcome.verdict is Verdict.PENDING_APPROVAL
        assert any(g.rule == "freezeWindow" for g in outcome.gates)


@PROFILE
@given(scenarios())
def test_agree_is_deterministic(scenario: tuple[NegotiationPolicySpec, int, list[Any]]) -> None:
    policy, current, agents = scenario
    first = negotiate(policy=policy, situation=situation(replicas=current, placement="x"), agents=agents, evidence={})
    again = negotiate(policy=policy, situation=situation(replicas=current, placement="x"), agents=agents, evidence={})
    assert (first.verdict, first.target, first.agreed) == (again.verdict, again.target, again.agreed)
    if first.feasible:
        voters = [Voter(p.agent, 1.0, 0, p.utilities) for p in first.proposals]
        assert agree(policy.protocol, first.feasible, voters, first.current).candidate in first.feasible
