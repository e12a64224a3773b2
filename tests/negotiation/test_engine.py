"""The engine end to end with the real built-in agents: what a user would read in a decision."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.agents.base import Candidate, Proposal, Situation
from accord.metrics.evidence import Evidence, EvidenceSet, Source
from accord.models.negotiation import NegotiationSpec, Verdict, WorkloadRef
from accord.models.policy import Protocol
from accord.negotiation.engine import Case, Outcome, Seat, negotiate, negotiate_each, negotiate_many
from accord.negotiation.record import build_record
from accord.negotiation.rules import History
from accord.negotiation.table import seat_agents
from tests.factories import NOW, agent_specs, demand, policy, situation
from tests.negotiation.conftest import ScriptedAgent, seated


def run(
    *,
    spec: Any = None,
    specs: Any = None,
    sit: Any = None,
    ev: dict[str, Any] | None = None,
    trust: dict[str, float] | None = None,
    secrets: dict[str, bytes] | None = None,
    **kw: Any,
) -> Outcome:
    spec = spec or policy()
    table = seat_agents(spec, specs or agent_specs(), trust=trust, secrets=secrets)
    evidence = ev if ev is not None else {"performance": {"demand": demand(level=900, slope=10)}}
    return negotiate(policy=spec, situation=sit or situation(replicas=4), agents=table.seated, evidence=evidence, **kw)


def test_rising_demand_is_met_by_a_scale_up_all_four_agents_agree_to() -> None:
    outcome = run()
    assert outcome.verdict is Verdict.APPLY
    # not sensitive, so security lets it go to the cheaper spot pool (placement changes need no approval here)
    assert outcome.target.placement == "spot"
    # 900/s rising 10/s a minute: ~13-14 pods at 70% of 100/s each; cost pulls it to the lower end
    assert 12 <= outcome.target.replicas <= 14
    assert [p.agent for p in outcome.proposals] == ["performance", "cost", "security", "compliance"]
    assert all(0 <= p.confidence <= 1 and p.rationale for p in outcome.proposals)


def test_the_record_tells_the_whole_story() -> None:
    outcome = run()
    record = build_record(
        outcome,
        workload=WorkloadRef(kind="Deployment", namespace="shop", name="web"),
        policy="shop/default",
        mode="enforce",
        now=NOW,
    )
    again = NegotiationSpec.model_validate(record.to_wire())
    assert again == record
    perf = next(p for p in record.proposals if p.agent == "performance")
    assert perf.ideal is not None and perf.ideal.replicas >= record.outcome.target.replicas
    assert perf.evidence[0].source == "prometheus" and perf.evidence[0].samples == 30
    assert "forecast to peak" in perf.rationale
    cost = next(p for p in record.proposals if p.agent == "cost")
    assert cost.ideal == record.proposals[1].ideal and cost.ideal is not None and cost.ideal.replicas == 1
    assert record.outcome.verdict is Verdict.APPLY
    assert {c.agent for c in record.concessions} == {"performance", "cost", "security", "compliance"}
    assert record.candidates == len(outcome.candidates)


def test_a_sensitive_workload_is_kept_off_spot_and_unhardened_pools() -> None:
    specs = agent_specs(cost={"type": "cost", "weight": 50})
    outcome = run(specs=specs, sit=situation(labels={"accord.dev/sensitivity": "high"}))
    assert outcome.target.placement == "standard"
    security = next(p for p in outcome.proposals if p.agent == "security")
    assert all(c.placement == "spot" for c in security.vetoes)
    # The same workload without the label moves to the cheaper pool.
    assert run(specs=specs).target.placement == "spot"


def test_every_candidate_vetoed_is_an_impasse() -> None:
    specs = agent_specs(
        compliance={"type": "compliance", "veto": True, "compliance": {"allowedRegions": ["us-east-1"]}}
    )
    outcome = run(specs=specs)
    assert outcome.verdict is Verdict.IMPASSE
    assert outcome.target == outcome.current
    assert "a person must resolve" in outcome.reason


def test_a_veto_from_an_agent_without_veto_right_only_scores_zero() -> None:
    specs = agent_specs(
        compliance={"type": "compliance", "veto": False, "compliance": {"allowedRegions": ["us-east-1"]}}
    )
    outcome = run(specs=specs)
    assert outcome.verdict is Verdict.APPLY
    assert outcome.feasible


@pytest.mark.parametrize(
    ("rule", "expected_verdict", "expected_replicas"),
    [
        ({"action": "hold"}, Verdict.NO_CHANGE, 4),
        ({"action": "fallback", "fallbackReplicas": 7}, Verdict.APPLY, 7),
        ({"action": "currentIfHigher", "fallbackReplicas": 2}, Verdict.NO_CHANGE, 4),
    ],
)
def test_missing_metrics_follow_the_policy_rule(
    rule: dict[str, Any], expected_verdict: Verdict, expected_replicas: int
) -> None:
    spec = policy(rules={"missingMetrics": rule, "requireApproval": {"placementChange": False}})
    outcome = run(spec=spec, ev={})
    assert outcome.verdict is expected_verdict
    assert outcome.target.replicas == expected_replicas
    assert any(g.rule == "missingMetrics" for g in outcome.gates)


def test_stale_metrics_hold_below_the_confidence_threshold() -> None:
    spec = policy(rules={"minConfidence": 0.9, "requireApproval": {"placementChange": False}})
    stale = {"performance": {"demand": demand(level=900, slope=10, age=170)}}
    outcome = run(spec=spec, ev=stale)
    assert outcome.verdict is Verdict.HOLD
    assert outcome.target == outcome.current
    assert outcome.agreed is not None and outcome.agreed.replicas > 4
    assert [g.rule for g in outcome.gates] == ["minConfidence"]


def test_a_large_step_waits_for_approval() -> None:
    spec = policy(rules={"requireApproval": {"stepReplicasAbove": 3, "placementChange": False}})
    outcome = run(spec=spec)
    assert outcome.verdict is Verdict.PENDING_APPROVAL
    assert outcome.target.replicas > 7
    assert not outcome.enforceable


def test_a_dropped_external_answer_lowers_only_its_own_say() -> None:
    specs = agent_specs(
        oracle={"type": "external", "external": {"url": "https://oracle.example", "secretRef": {"name": "oracle"}}}
    )
    spec = policy(agents=[{"name": n} for n in ("performance", "cost", "security", "compliance", "oracle")])
    ev = {
        "performance": {"demand": demand(level=900, slope=10)},
        "oracle": {
            "response": Evidence(
                name="response",
                source=Source.EXTERNAL,
                text='{"confidence": 1}',
                labels={"status": "ok", "signature": "sha256=bogus"},
            )
        },
    }
    outcome = run(spec=spec, specs=specs, ev=ev, secrets={"oracle": b"shared-key"})
    baseline = run()
    oracle = next(p for p in outcome.proposals if p.agent == "oracle")
    assert oracle.dropped is not None and "signature" in oracle.dropped
    assert (outcome.verdict, outcome.target) == (baseline.verdict, baseline.target)
    assert outcome.confidence == baseline.confidence


def test_trust_scales_an_agents_say() -> None:
    up = ScriptedAgent("up", lambda c: c.replicas / 20)
    down = ScriptedAgent("down", lambda c: 1 - c.replicas / 20)
    spec = policy(
        agents=[{"name": "up"}, {"name": "down"}],
        protocol="weighted",
        bounds={
            "minReplicas": 1,
            "maxReplicas": 20,
            "maxStepUp": 20,
            "maxStepDown": 20,
            "scaleDownStabilizationSeconds": 0,
        },
    )
    agents = seated(up, down, weights=[1.0, 1.0])
    trusted_up = negotiate(policy=spec, situation=situation(replicas=10), agents=agents, evidence={})
    distrusted = [(Seat("up", trust=0.2), up), (Seat("down"), down)]
    distrusted_up = negotiate(policy=spec, situation=situation(replicas=10), agents=distrusted, evidence={})
    assert distrusted_up.target.replicas < trusted_up.target.replicas


def test_the_concession_protocol_records_its_rounds() -> None:
    up = ScriptedAgent("up", lambda c: c.replicas / 20)
    down = ScriptedAgent("down", lambda c: 1 - c.replicas / 20)
    spec = policy(
        agents=[{"name": "up"}, {"name": "down"}],
        protocol="concession",
        placements=[],
        bounds={
            "minReplicas": 1,
            "maxReplicas": 20,
            "maxStepUp": 20,
            "maxStepDown": 20,
            "scaleDownStabilizationSeconds": 0,
        },
    )
    outcome = negotiate(policy=spec, situation=situation(replicas=10), agents=seated(up, down), evidence={})
    assert len(outcome.rounds) > 3
    first = outcome.rounds[0]
    assert {o.agent: o.candidate.replicas for o in first.offers} == {"up": 20, "down": 1}
    assert all(r.conceded for r in outcome.rounds[:-1])
    # equal weights, symmetric utilities: they meet in the middle
    assert 9 <= outcome.target.replicas <= 12


def test_lexicographic_puts_the_first_tier_first() -> None:
    up = ScriptedAgent("up", lambda c: c.replicas / 20)
    down = ScriptedAgent("down", lambda c: 1 - c.replicas / 20)
    bounds = {
        "minReplicas": 1,
        "maxReplicas": 20,
        "maxStepUp": 20,
        "maxStepDown": 20,
        "scaleDownStabilizationSeconds": 0,
    }
    spec = policy(
        agents=[{"name": "up", "tier": 0}, {"name": "down", "tier": 1}],
        protocol="lexicographic",
        lexicographicTolerance=0.1,
        placements=[],
        bounds=bounds,
    )
    outcome = negotiate(
        policy=spec, situation=situation(replicas=10), agents=seated(up, down, weights=[1, 100]), evidence={}
    )
    assert outcome.protocol is Protocol.LEXICOGRAPHIC
    # tier 0 keeps 18..20 (within 0.1 of its best); tier 1 then picks the lowest of those
    assert outcome.target == Candidate(18, "standard")


def test_stabilization_caps_a_scale_down() -> None:
    spec = policy(
        bounds={
            "minReplicas": 1,
            "maxReplicas": 50,
            "maxStepUp": 10,
            "maxStepDown": 10,
            "scaleDownStabilizationSeconds": 300,
        }
    )
    history = History(recommendations=((NOW - 60, 9),))
    outcome = run(
        spec=spec, sit=situation(replicas=10), ev={"performance": {"demand": demand(level=200)}}, history=history
    )
    assert outcome.agreed is not None and outcome.agreed.replicas < 9
    assert outcome.target.replicas == 9
    assert any(g.rule == "stabilization" for g in outcome.gates)


ONE_POOL = {"placements": [{"name": "standard", "pricePerPodHour": 0.10}]}


@pytest.mark.parametrize("level", [3_600.0, 10_000.0, 100_000.0])
def test_demand_beyond_the_largest_count_gets_the_largest_count(level: float) -> None:
    """Demand no allowed count can serve is the moment capacity matters most: never a reason to shed it."""
    outcome = run(
        spec=policy(**ONE_POOL),
        sit=situation(replicas=45),
        ev={"performance": {"demand": demand(level=level)}},
    )
    assert outcome.verdict is Verdict.APPLY
    assert outcome.target.replicas == 50


@settings(max_examples=150, deadline=None)
@given(
    low=st.floats(min_value=0.0, max_value=20_000.0),
    rise=st.floats(min_value=0.0, max_value=20_000.0),
    replicas=st.integers(min_value=1, max_value=50),
)
def test_more_demand_never_gets_fewer_replicas(low: float, rise: float, replicas: int) -> None:
    spec = policy(**ONE_POOL)
    quiet, busy = (
        run(spec=spec, sit=situation(replicas=replicas), ev={"performance": {"demand": demand(level=level)}})
        for level in (low, low + rise)
    )
    assert busy.target.replicas >= quiet.target.replicas


def test_a_distrusted_performance_agent_still_gets_the_capacity_it_needs() -> None:
    """Its track record moves its say, never hands its objective to the cost agent."""
    spec = policy(**ONE_POOL)
    trusted = run(spec=spec, sit=situation(replicas=10), ev={"performance": {"demand": demand(level=900.0)}})
    distrusted = run(
        spec=spec,
        sit=situation(replicas=10),
        ev={"performance": {"demand": demand(level=900.0)}},
        trust={"performance": 0.05},
    )
    assert trusted.target.replicas >= 13  # 900/s at 70% of 100/s
    assert distrusted.target.replicas >= 13


# --- many workloads at once --------------------------------------------------------------------------------------


def varied_cases(count: int) -> list[Case]:
    """Workloads unlike each other: counts, pools, sensitivity, demand (rising, falling, noisy, none), history."""
    cases = []
    for i in range(count):
        level = 50.0 + 97.0 * (i % 13)
        values = [level + (i % 5 - 2) * 7.0 * k + (31.0 if k % (2 + i % 3) == 0 else 0.0) for k in range(30 + i % 7)]
        evidence: dict[str, dict[str, Evidence]] = {"performance": {"demand": demand(values)}} if i % 6 else {}
        labels = {"app": f"w{i}", "data": "pii"} if i % 4 == 0 else {"app": f"w{i}"}
        history = History(recommendations=((NOW - 30.0, 1 + i % 9),)) if i % 3 == 0 else History()
        cases.append(
            Case(
                situation(replicas=1 + (i * 7) % 40, placement="spot" if i % 5 == 0 else "standard", labels=labels),
                evidence,
                history,
            )
        )
    return cases


@pytest.mark.parametrize("protocol", list(Protocol))
def test_a_workloads_decision_does_not_depend_on_the_workloads_negotiated_beside_it(protocol: Protocol) -> None:
    """The operator negotiates a policy's workloads in one batch; each must get what it would alone."""
    spec = policy(
        protocol=protocol.value,
        rules={"requireApproval": {"placementChange": False, "stepReplicasAbove": 6}, "minConfidence": 0.2},
    )
    specs = agent_specs(
        security={
            "type": "security",
            "veto": True,
            "security": {
                "sensitiveSelector": {"matchLabels": {"data": "pii"}},
                "requiredNodeLabels": {"accord.dev/hardened": "true"},
            },
        }
    )
    table = seat_agents(spec, specs, trust={"performance": 0.6, "cost": 0.9})
    cases = varied_cases(40)
    together = negotiate_many(policy=spec, cases=cases, agents=table.seated)
    ref = WorkloadRef(kind="Deployment", namespace="shop", name="web")
    for case, outcome in zip(cases, together, strict=True):
        alone = negotiate(
            policy=spec, situation=case.situation, agents=table.seated, evidence=case.evidence, history=case.history
        )
        assert (outcome.verdict, outcome.target, outcome.reason) == (alone.verdict, alone.target, alone.reason)
        assert outcome.confidence == alone.confidence
        records = [build_record(o, workload=ref, policy="shop/p", mode="enforce", now=NOW) for o in (outcome, alone)]
        assert records[0] == records[1]
    assert {o.verdict for o in together} >= {Verdict.APPLY, Verdict.PENDING_APPROVAL, Verdict.NO_CHANGE}


class Brittle(ScriptedAgent):
    """An agent that fails on one workload's input."""

    def propose(self, situation: Situation, candidates: Sequence[Candidate], evidence: EvidenceSet) -> Proposal:
        if situation.name == "bad":
            raise ValueError("cannot read this workload's evidence")
        return super().propose(situation, candidates, evidence)


def test_a_workload_an_agent_fails_on_costs_only_that_workload_its_round() -> None:
    spec = policy(agents=[{"name": "likes-more"}, {"name": "brittle"}])
    agents = seated(ScriptedAgent("likes-more", lambda c: c.replicas / 50), Brittle("brittle", lambda c: 1.0))
    cases = [Case(replace(situation(replicas=3 + i), name="bad" if i == 2 else f"w{i}"), {}) for i in range(5)]
    with pytest.raises(ValueError, match="cannot read"):
        negotiate_many(policy=spec, cases=cases, agents=agents)
    found = negotiate_each(policy=spec, cases=cases, agents=agents)
    assert isinstance(found[2], ValueError)
    for i in (0, 1, 3, 4):
        outcome = found[i]
        assert isinstance(outcome, Outcome)
        alone = negotiate(policy=spec, situation=cases[i].situation, agents=agents, evidence={})
        assert (outcome.verdict, outcome.target, outcome.reason) == (alone.verdict, alone.target, alone.reason)
        assert outcome.target.replicas > cases[i].situation.current.replicas  # it did decide: more, as asked


def test_a_policy_with_no_agent_seated_keeps_the_workload_as_it_is() -> None:
    outcome = negotiate(policy=policy(), situation=situation(replicas=4), agents=[], evidence={})
    assert outcome.verdict is Verdict.NO_CHANGE
    assert outcome.target == Candidate(4, "standard")


def test_a_nan_score_from_a_custom_agent_neither_wins_nor_passes_a_veto() -> None:
    """A custom agent's infinite utility times a weight of 0 scores NaN: no utility, not a winner; the
    vetoed candidate stays vetoed and the other agent decides."""
    spec = policy(agents=[{"name": "odd"}, {"name": "judge"}], protocol="weighted")
    odd = ScriptedAgent("odd", lambda c: math.inf if c.replicas < 6 else 0.5)
    judge = ScriptedAgent("judge", lambda c: c.replicas / 20, veto=lambda c: c.replicas == 1)
    agents = seated(odd, judge, weights=[0.0, 1.0])
    outcome = negotiate(policy=spec, situation=situation(replicas=3), agents=agents, evidence={})
    assert outcome.target.replicas != 1
    assert outcome.verdict is not Verdict.IMPASSE
    assert outcome.target.replicas == max(c.replicas for c in outcome.feasible)


def test_an_outcomes_stances_say_in_brief_what_its_proposals_say() -> None:
    """What the operator logs and exports per agent each round, read without writing every proposal."""
    for outcome in [run(), run(sit=situation(replicas=30)), run(ev={})]:
        assert [(s.agent, s.ideal, s.confidence, s.target_utility) for s in outcome.stances] == [
            (p.agent, p.ideal, p.confidence, p.utility(outcome.target)) for p in outcome.proposals
        ]


def test_a_scale_up_with_headroom_reaches_its_exact_count_on_a_thinned_board() -> None:
    """On a board of 1..200 (thinned to about 40 counts) the count with headroom is on the table, not a neighbour."""
    bounds = {"minReplicas": 1, "maxReplicas": 200, "maxStepUp": 200, "maxStepDown": 20}
    sit = situation(replicas=4)
    plain = run(spec=policy(bounds=bounds | {"scaleDownStabilizationSeconds": 0}), sit=sit)
    assert plain.agreed is not None and plain.target.replicas > 4
    spec = policy(bounds=bounds | {"scaleDownStabilizationSeconds": 0, "scaleUpHeadroom": 0.3})
    outcome = run(spec=spec, sit=sit)
    assert outcome.agreed == plain.agreed
    assert outcome.target.replicas == math.ceil(plain.agreed.replicas * 1.3 - 1e-9)
    assert outcome.verdict is Verdict.APPLY
    assert any(g.rule == "headroom" for g in outcome.gates)


def test_a_scale_down_within_the_dwell_time_is_not_made_and_the_record_says_why() -> None:
    bounds = {"maxReplicas": 50, "scaleDownStabilizationSeconds": 0, "scaleDownDwellSeconds": 600}
    spec = policy(bounds=bounds, **ONE_POOL)
    sit = situation(replicas=30)
    ev = {"performance": {"demand": demand(level=200)}}
    moved = run(spec=spec, sit=sit, ev=ev, history=History(changes=(NOW - 600.0,)))
    assert moved.target.replicas < 30
    held = run(spec=spec, sit=sit, ev=ev, history=History(changes=(NOW - 599.0,)))
    assert held.verdict is Verdict.NO_CHANGE and held.target.replicas == 30
    assert "dwell" in held.reason


REF = WorkloadRef(kind="Deployment", namespace="shop", name="web")


@pytest.mark.parametrize(("room", "placement"), [(None, "spot"), (14, "spot"), (13, "standard")])
def test_a_move_goes_only_to_a_pool_with_room_for_all_its_pods(room: int | None, placement: str) -> None:
    """The cheap pool wins with 14 pods; with room for 13 there, the move is not made, the workload
    scales where it is, and the record says which candidates the pool could not take and why."""
    from tests.factories import pools

    why = f"room for {room} pods on 2 schedulable nodes"
    spot = replace(pools()["spot"], room=room, room_why=why if room is not None else "")
    outcome = run(specs=agent_specs(cost={"type": "cost", "weight": 50}), sit=situation(pool_map=pools(spot=spot)))
    assert outcome.target == Candidate(14, placement)
    blocked = {c: why for c, why in outcome.vetoed.items() if why.startswith("pool spot cannot take them now")}
    gates = [g for g in outcome.gates if g.rule == "poolCapacity"]
    if room == 13:
        assert Candidate(14, "spot") in blocked and all(c.replicas > 13 for c in blocked)
        assert all(why in reason for reason in blocked.values())
        assert [g.message for g in gates] == [
            f"the agents would have agreed on 14@spot, but pool spot cannot take 14 pods now: {why}"
        ]
        record = build_record(outcome, workload=REF, policy="shop/default", mode="enforce", now=NOW)
        assert any(g.rule == "poolCapacity" and why in g.message for g in record.gates)
    else:
        assert not blocked and not gates


def test_room_never_holds_back_a_scale_up_on_the_workloads_own_pool() -> None:
    """On its own pool a scale-up is not held back by the nodes' room: a node autoscaler adds nodes
    for pending pods; only a move needs the room now."""
    from tests.factories import pools

    standard = replace(pools()["standard"], room=0, room_why="room for 0 pods on 3 schedulable nodes")
    outcome = run(sit=situation(pool_map=pools(standard=standard, spot=replace(pools()["spot"], room=0))))
    assert outcome.target.placement == "standard"
    assert outcome.target.replicas > 4
