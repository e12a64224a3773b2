"""The decision lifecycle: what becomes of an outcome, an approval, an execution and time (pure)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.agents.base import Candidate
from accord.models.negotiation import Phase, Verdict, WorkloadRef
from accord.models.policy import NegotiationPolicySpec
from accord.negotiation import lifecycle
from accord.negotiation.engine import Outcome, negotiate
from accord.negotiation.lifecycle import (
    Approval,
    Command,
    Decisions,
    Delete,
    Done,
    Emit,
    Execute,
    Failed,
    Live,
    Record,
    Refused,
    SetPhase,
    Step,
    Write,
)
from tests.factories import NOW, policy, situation
from tests.negotiation.conftest import ScriptedAgent, seated

WORKLOAD = WorkloadRef(kind="Deployment", namespace="shop", name="web", uid="u-1")
KEY = "shop/default"


def wants(replicas: int, *, confidence: float = 1.0, veto_all: bool = False) -> ScriptedAgent:
    return ScriptedAgent(
        "perf",
        lambda c: 1.0 / (1.0 + abs(c.replicas - replicas)) * (1.0 if c.placement == "standard" else 0.5),
        confidence=confidence,
        veto=(lambda c: True) if veto_all else (lambda c: False),
    )


def decide_with(
    spec: NegotiationPolicySpec,
    state: Decisions,
    *,
    current: int,
    want: int,
    now: float,
    confidence: float = 1.0,
    veto_all: bool = False,
    autoscaler: str | None = None,
) -> tuple[Outcome, Step]:
    outcome = negotiate(
        policy=spec,
        situation=situation(replicas=current, now=now),
        agents=seated(wants(want, confidence=confidence, veto_all=veto_all)),
        evidence={},
        history=state.history,
    )
    context = lifecycle.Context(policy=spec, policy_key=KEY, workload=WORKLOAD, autoscaler=autoscaler)
    return outcome, lifecycle.decide(state, outcome, context=context, now=now)


def kinds(step: Step) -> list[str]:
    return [type(i).__name__ for i in step.intents]


def gated(**rules: Any) -> NegotiationPolicySpec:
    return policy(rules={"requireApproval": {"placementChange": False, **rules}})


APPROVALS = gated(stepReplicasAbove=3)
APPROVALS_SPEC = policy(
    rules={"requireApproval": {"placementChange": False, "stepReplicasAbove": 3}},
    approval={"approvers": ["alice"], "approverGroups": ["sre"], "expirySeconds": 600},
)


# -- decide ----------------------------------------------------------------------------------------------
def test_an_applied_decision_is_recorded_then_handed_to_the_executor() -> None:
    _, step = decide_with(policy(), Decisions(), current=4, want=6, now=NOW)
    assert kinds(step) == ["Write", "Execute"]
    write, execute = step.intents
    assert isinstance(write, Write)
    assert isinstance(execute, Execute)
    assert write.record.phase is Phase.PROPOSED
    assert write.spec().outcome.target.replicas == 6
    assert execute.command == Command(
        record=write.record.name,
        workload=WORKLOAD,
        policy=KEY,
        current=Candidate(4, "standard"),
        target=Candidate(6, "standard"),
    )
    assert step.state.latest == write.record
    assert step.state.history.recommendations == ((NOW, 6),)
    assert step.state.history.changes == ()  # counted when applied, not when decided


def test_no_change_writes_nothing() -> None:
    _, step = decide_with(policy(), Decisions(), current=4, want=4, now=NOW)
    assert step.intents == ()
    assert step.state.records == ()


def test_a_repeated_hold_is_recorded_once() -> None:
    spec = policy(rules={"minConfidence": 0.5, "requireApproval": {"placementChange": False}})
    _, first = decide_with(spec, Decisions(), current=4, want=8, now=NOW, confidence=0.2)
    assert kinds(first) == ["Write", "Emit"]
    assert first.state.latest is not None
    assert first.state.latest.phase is Phase.HELD
    _, again = decide_with(spec, first.state, current=4, want=8, now=NOW + 30, confidence=0.2)
    assert again.intents == ()
    _, other = decide_with(spec, again.state, current=4, want=9, now=NOW + 60, confidence=0.2)
    assert kinds(other) == ["Write", "Emit"]  # a different hold is a new record


def test_an_impasse_is_recorded_with_a_warning() -> None:
    _, step = decide_with(policy(), Decisions(), current=4, want=8, now=NOW, veto_all=True)
    assert kinds(step) == ["Write", "Emit"]
    emit = step.intents[1]
    assert isinstance(emit, Emit)
    assert emit.warning
    assert emit.reason == "Impasse"


def test_a_pending_decision_stands_against_a_wobble_and_is_superseded_by_a_real_change() -> None:
    _, first = decide_with(APPROVALS, Decisions(), current=4, want=10, now=NOW)
    assert kinds(first) == ["Write", "Emit"]
    pending = first.state.pending
    assert pending is not None
    assert pending.expires_at == NOW + APPROVALS.approval.expiry_seconds
    # 11 is within a replica of 10: the person keeps looking at the first decision
    _, wobble = decide_with(APPROVALS, first.state, current=4, want=11, now=NOW + 30)
    assert wobble.intents == ()
    assert wobble.state.pending == pending
    # 14 is not: a new pending decision replaces it
    _, moved = decide_with(APPROVALS, wobble.state, current=4, want=14, now=NOW + 60)
    assert kinds(moved) == ["Write", "Emit", "SetPhase"]
    superseded = moved.intents[2]
    assert isinstance(superseded, SetPhase)
    assert (superseded.name, superseded.phase) == (pending.name, Phase.SUPERSEDED)
    assert superseded.superseded_by == moved.state.pending.name if moved.state.pending else False


def test_an_agreement_on_the_status_quo_retires_a_pending_decision() -> None:
    _, first = decide_with(APPROVALS, Decisions(), current=4, want=10, now=NOW)
    _, same = decide_with(APPROVALS, first.state, current=4, want=4, now=NOW + 30)
    assert kinds(same) == ["SetPhase"]
    assert same.state.pending is None


def test_an_applied_decision_supersedes_the_pending_one() -> None:
    _, first = decide_with(APPROVALS, Decisions(), current=4, want=10, now=NOW)
    _, small = decide_with(APPROVALS, first.state, current=4, want=6, now=NOW + 30)
    assert kinds(small) == ["Write", "SetPhase", "Execute"]
    assert small.state.pending is None


def test_audit_mode_records_once_and_never_executes() -> None:
    spec = policy(mode="audit")
    _, first = decide_with(spec, Decisions(), current=4, want=6, now=NOW)
    assert kinds(first) == ["Write"]
    _, again = decide_with(spec, first.state, current=4, want=6, now=NOW + 30)
    assert again.intents == ()


def test_an_hpa_without_coordination_is_reported_and_held_once() -> None:
    _, first = decide_with(policy(), Decisions(), current=4, want=6, now=NOW, autoscaler="web-hpa")
    assert kinds(first) == ["Conflict", "Write", "Emit"]
    assert first.state.latest is not None
    assert first.state.latest.phase is Phase.HELD
    _, again = decide_with(policy(), first.state, current=4, want=6, now=NOW + 30, autoscaler="web-hpa")
    assert kinds(again) == ["Conflict"]  # still reported on the policy, no new record
    _, coordinated = decide_with(
        policy(coordinateAutoscalers=True), Decisions(), current=4, want=6, now=NOW, autoscaler="web-hpa"
    )
    assert kinds(coordinated) == ["Write", "Execute"]


@pytest.mark.parametrize(("limit", "deleted"), [(3, ["web-deploy-c", "web-deploy-a"]), (5, ["web-deploy-a"]), (6, [])])
def test_the_history_limit_keeps_the_newest_and_everything_still_waiting(limit: int, deleted: list[str]) -> None:
    old = NOW - 2 * 3600  # changes older than the budget's window
    phases = [Phase.APPLIED, Phase.PENDING_APPROVAL, Phase.APPLIED, Phase.SUPERSEDED, Phase.HELD]
    state = Decisions()
    for i, phase in enumerate(phases):
        record = record_at(
            f"web-deploy-{'abcde'[i]}", old + i, phase, applied_at=old + i if phase is Phase.APPLIED else None
        )
        state = state.put(record)
    _, step = decide_with(policy(historyLimit=limit), state, current=4, want=6, now=NOW)
    assert [i.name for i in step.intents if isinstance(i, Delete)] == deleted
    assert len(step.state.records) == 6 - len(deleted)


def test_the_history_limit_keeps_the_changes_the_budget_still_counts() -> None:
    inside = record_at("web-deploy-in", NOW - 3599, Phase.APPLIED, applied_at=NOW - 3599)
    outside = record_at("web-deploy-out", NOW - 3601, Phase.APPLIED, applied_at=NOW - 3601)
    state = Decisions().put(outside).put(inside)
    _, step = decide_with(policy(historyLimit=1), state, current=4, want=6, now=NOW)
    assert [i.name for i in step.intents if isinstance(i, Delete)] == ["web-deploy-out"]


# -- execution ------------------------------------------------------------------------------------------
def record_at(
    name: str, created: float, phase: Phase, *, applied_at: float | None = None, expires_at: float | None = None
) -> Record:
    return Record(
        name=name,
        phase=phase,
        created=created,
        current=Candidate(4, "standard"),
        target=Candidate(10, "standard"),
        verdict=Verdict.PENDING_APPROVAL,
        policy=KEY,
        signature=name,
        fingerprint=f"fp-{name}",
        expires_at=expires_at,
        applied_at=applied_at,
    )


def applied_once(state: Decisions, name: str, now: float) -> Step:
    return lifecycle.executed(state, name, Done(10, "standard", "scale"), now=now)


def test_an_applied_change_counts_once_against_the_budget() -> None:
    state = Decisions().put(record_at("r", NOW, Phase.PROPOSED))
    first = applied_once(state, "r", NOW)
    assert kinds(first) == ["SetPhase", "Emit", "Emit"]
    assert first.state.history.changes == (NOW,)
    again = applied_once(first.state, "r", NOW + 5)
    assert again.intents == ()
    assert again.state.history.changes == (NOW,)


@pytest.mark.parametrize(
    ("result", "phase", "event"),
    [
        (Refused("moved on", stale=True), Phase.SUPERSEDED, None),
        (Refused("paused"), Phase.FAILED, "Refused"),
        (Failed("API error 500"), Phase.FAILED, "ApplyFailed"),
    ],
)
def test_what_acting_did_is_recorded(result: lifecycle.Result, phase: Phase, event: str | None) -> None:
    state = Decisions().put(record_at("r", NOW, Phase.PROPOSED))
    step = lifecycle.executed(state, "r", result, now=NOW)
    assert step.state.find("r") is not None
    assert step.state.find("r").phase is phase  # type: ignore[union-attr]
    assert step.state.history.changes == ()
    assert [i.reason for i in step.intents if isinstance(i, Emit)] == ([event] if event else [])


# -- approvals ------------------------------------------------------------------------------------------
def pending_state(expires_at: float = NOW + 600) -> Decisions:
    return Decisions().put(record_at("r", NOW, Phase.PENDING_APPROVAL, expires_at=expires_at))


def approve(approval: Approval, *, state: Decisions | None = None, now: float = NOW + 60, fp: str = "fp-r") -> Step:
    return lifecycle.approve(
        state or pending_state(), "r", approval, policy=APPROVALS_SPEC, workload=WORKLOAD, fingerprint=fp, now=now
    )


def test_an_approval_by_an_approver_executes_the_decision_as_it_was_made() -> None:
    step = approve(Approval("approved", "alice"))
    assert kinds(step) == ["SetPhase", "Execute"]
    execute = step.intents[1]
    assert isinstance(execute, Execute)
    assert execute.command.target == Candidate(10, "standard")
    assert execute.command.approved
    assert step.state.find("r").phase is Phase.APPROVED  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("approval", "phase"),
    [
        (Approval("approved", "bob", groups=("sre",)), Phase.APPROVED),
        (Approval("approved", "mallory", groups=("dev",)), Phase.REJECTED),
        (Approval("rejected", "alice"), Phase.REJECTED),
        (Approval("approved", "alice", verified=False), Phase.REJECTED),
    ],
)
def test_who_may_approve_is_checked_again_at_execution(approval: Approval, phase: Phase) -> None:
    step = approve(approval)
    assert step.state.find("r").phase is phase  # type: ignore[union-attr]
    assert any(isinstance(i, Execute) for i in step.intents) is (phase is Phase.APPROVED)


def test_an_unverified_approval_passes_only_where_the_policy_allows_it() -> None:
    spec = APPROVALS_SPEC.model_copy(
        update={"approval": APPROVALS_SPEC.approval.model_copy(update={"allow_unverified": True})}
    )
    step = lifecycle.approve(
        pending_state(),
        "r",
        Approval("approved", "someone", verified=False),
        policy=spec,
        workload=WORKLOAD,
        fingerprint="fp-r",
        now=NOW,
    )
    assert kinds(step) == ["SetPhase", "Execute"]
    change = step.intents[0]
    assert isinstance(change, SetPhase)
    assert "unverified" in change.message


def test_an_edited_record_is_never_executed() -> None:
    step = approve(Approval("approved", "alice"), fp="fp-of-an-edited-spec")
    assert step.state.find("r").phase is Phase.FAILED  # type: ignore[union-attr]
    assert not any(isinstance(i, Execute) for i in step.intents)


@pytest.mark.parametrize(("now", "phase"), [(NOW + 599, Phase.APPROVED), (NOW + 600, Phase.EXPIRED)])
def test_an_approval_after_the_deadline_is_too_late(now: float, phase: Phase) -> None:
    step = approve(Approval("approved", "alice"), now=now)
    assert step.state.find("r").phase is phase  # type: ignore[union-attr]


def test_a_decision_whose_policy_is_gone_fails() -> None:
    step = lifecycle.approve(
        pending_state(), "r", Approval("approved", "alice"), policy=None, workload=WORKLOAD, fingerprint="fp-r", now=NOW
    )
    assert step.state.find("r").phase is Phase.FAILED  # type: ignore[union-attr]


@pytest.mark.parametrize(("now", "expired"), [(NOW + 599, False), (NOW + 600, True)])
def test_pending_and_approved_decisions_expire_at_their_deadline(now: float, expired: bool) -> None:
    for phase in (Phase.PENDING_APPROVAL, Phase.APPROVED):
        state = Decisions().put(record_at("r", NOW, phase, expires_at=NOW + 600))
        step = lifecycle.expire(state, now=now)
        assert (step.state.find("r").phase is Phase.EXPIRED) is expired  # type: ignore[union-attr]


# -- re-validation ---------------------------------------------------------------------------------------
COMMAND = Command(
    record="r", workload=WORKLOAD, policy=KEY, current=Candidate(4, "standard"), target=Candidate(10, "standard")
)
LIVE = Live(replicas=4, placement="standard", uid="u-1")


def check(command: Command = COMMAND, live: Live | None = LIVE, **overrides: Any) -> Refused | None:
    spec = policy(**overrides)
    return lifecycle.revalidate(command, live, policy=spec, state=Decisions(), now=NOW)


def test_a_command_still_valid_passes() -> None:
    assert check() is None
    assert check(live=replace(LIVE, replicas=10)) is None  # already there


@pytest.mark.parametrize(
    ("live", "stale"),
    [
        (None, True),
        (replace(LIVE, uid="u-2"), True),
        (replace(LIVE, replicas=5), True),
        (replace(LIVE, paused=True), False),
        (replace(LIVE, selected=False), False),
    ],
)
def test_a_command_the_workload_no_longer_fits_is_refused(live: Live | None, stale: bool) -> None:
    refused = check(live=live)
    assert refused is not None
    assert refused.stale is stale


@pytest.mark.parametrize(("high", "ok"), [(10, True), (9, False)])
def test_the_target_must_be_within_the_policys_bounds_now(high: int, ok: bool) -> None:
    bounds = {"minReplicas": 1, "maxReplicas": high, "maxStepUp": 10, "maxStepDown": 5}
    assert (check(bounds=bounds) is None) is ok


@pytest.mark.parametrize(("step_up", "ok"), [(6, True), (5, False)])
def test_the_target_must_be_within_the_policys_step_limits_now(step_up: int, ok: bool) -> None:
    bounds = {"minReplicas": 1, "maxReplicas": 50, "maxStepUp": step_up, "maxStepDown": 5}
    assert (check(bounds=bounds) is None) is ok


def test_audit_mode_or_a_placement_gone_refuses() -> None:
    assert check(mode="audit") is not None
    moved = replace(COMMAND, target=Candidate(4, "gpu"))
    assert check(command=moved) is not None


@pytest.mark.parametrize(("changes", "ok"), [(1, True), (2, False)])
def test_the_change_budget_is_checked_again(changes: int, ok: bool) -> None:
    spec = policy(rules={"budget": {"maxChangesPerHour": 2}, "requireApproval": {"placementChange": False}})
    state = Decisions(history=lifecycle.History((), tuple(NOW - 60 * i for i in range(changes))))
    assert (lifecycle.revalidate(COMMAND, LIVE, policy=spec, state=state, now=NOW) is None) is ok


def test_a_blocking_freeze_window_refuses_even_an_approved_command() -> None:
    window = {"name": "always", "schedule": "* * * * *", "durationMinutes": 5, "action": "block"}
    spec = policy(rules={"freezeWindows": [window], "requireApproval": {"placementChange": False}})
    approved = replace(COMMAND, approved=True)
    assert lifecycle.revalidate(approved, LIVE, policy=spec, state=Decisions(), now=NOW) is not None
    gate = {**window, "action": "requireApproval"}
    spec = policy(rules={"freezeWindows": [gate], "requireApproval": {"placementChange": False}})
    assert lifecycle.revalidate(approved, LIVE, policy=spec, state=Decisions(), now=NOW) is None
    assert lifecycle.revalidate(COMMAND, LIVE, policy=spec, state=Decisions(), now=NOW) is not None


# -- rebuilt after a restart ------------------------------------------------------------------------------
def test_the_state_is_rebuilt_from_the_records_and_the_workload() -> None:
    applied = record_at("a", NOW - 100, Phase.APPLIED, applied_at=NOW - 90)
    old = record_at("b", NOW - 5000, Phase.APPLIED, applied_at=NOW - 4990)
    waiting = record_at("c", NOW - 50, Phase.PENDING_APPROVAL, expires_at=NOW + 500)
    state = Decisions()
    twin = replace(applied, name="a2")  # another change applied in the same second
    for record in (waiting, applied, old, applied, twin):  # in any order, one seen twice
        state = lifecycle.observe(state, record, now=NOW)
    assert [r.name for r in state.records] == ["b", "a", "a2", "c"]
    assert state.history.changes == (NOW - 90, NOW - 90)  # the budget's hour only, each record once
    assert state.pending == waiting
    spec = policy(bounds={"minReplicas": 1, "maxReplicas": 50, "scaleDownStabilizationSeconds": 300})
    seeded = lifecycle.seed(state, replicas=7, policy=spec, now=NOW)
    assert seeded.history.recommendations == ((NOW, 7),)
    assert lifecycle.seed(seeded, replicas=3, policy=spec, now=NOW + 1) == seeded


def test_a_seeded_history_holds_a_scale_down_for_the_window_the_restart_forgot() -> None:
    spec = policy(bounds={"minReplicas": 1, "maxReplicas": 50, "scaleDownStabilizationSeconds": 300})
    state = lifecycle.seed(Decisions(), replicas=8, policy=spec, now=NOW)
    outcome, _ = decide_with(spec, state, current=8, want=4, now=NOW + 299)
    assert outcome.target.replicas == 8
    outcome, _ = decide_with(spec, state, current=8, want=4, now=NOW + 301)
    assert outcome.target.replicas < 8


def test_a_records_fingerprint_is_what_it_does() -> None:
    _, step = decide_with(policy(), Decisions(), current=4, want=6, now=NOW)
    write = step.intents[0]
    assert isinstance(write, Write)
    spec = write.spec()
    assert lifecycle.fingerprint_of(spec) == write.record.fingerprint
    edited = spec.model_copy(
        update={
            "outcome": spec.outcome.model_copy(
                update={"target": spec.outcome.target.model_copy(update={"replicas": 57})}
            )
        }
    )
    assert lifecycle.fingerprint_of(edited) != write.record.fingerprint
    moved = spec.model_copy(update={"policy": "other/open"})
    assert lifecycle.fingerprint_of(moved) != write.record.fingerprint


# -- properties ------------------------------------------------------------------------------------------
RESULTS = st.sampled_from(["done", "stale", "failed"])
EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("decide"), st.integers(1, 30), st.floats(0.0, 1.0), RESULTS),
        st.tuples(st.just("approve"), st.sampled_from(["alice", "mallory"]), st.booleans(), RESULTS),
        st.tuples(st.just("wait"), st.integers(1, 900), st.just(0.0), RESULTS),
    ),
    max_size=25,
)
CLOSED = (Phase.SUPERSEDED, Phase.EXPIRED, Phase.REJECTED, Phase.FAILED)


@settings(max_examples=150, deadline=None)
@given(events=EVENTS)
def test_lifecycle_properties(events: list[tuple[str, Any, Any, str]]) -> None:
    """Over any sequence of outcomes, approvals (by approvers or not, of intact or edited records),
    execution results and waiting: nothing closed is executed, no approved decision after its
    deadline, each applied change is counted once, and an outcome repeated at once writes no record."""
    spec = APPROVALS_SPEC.model_copy(update={"rules": APPROVALS_SPEC.rules.model_copy(update={"min_confidence": 0.5})})
    context = lifecycle.Context(policy=spec, policy_key=KEY, workload=WORKLOAD)
    state, now, current = Decisions(), NOW, 4
    applied: set[str] = set()
    for kind, a, b, outcome_of_acting in events:
        if kind == "decide":
            outcome, step = decide_with(spec, state, current=current, want=a, now=now, confidence=0.2 + b)
            again = lifecycle.decide(step.state, outcome, context=context, now=now + 0.001)
            assert not any(isinstance(i, Write) for i in again.intents), outcome
        elif kind == "approve":
            pending = state.pending
            if pending is None:
                continue
            approval = Approval("approved", a, verified=True)
            fingerprint = pending.fingerprint if b else "edited"
            step = lifecycle.approve(
                state, pending.name, approval, policy=spec, workload=WORKLOAD, fingerprint=fingerprint, now=now
            )
        else:
            now += a
            step = lifecycle.expire(state, now=now)
        state = step.state
        for intent in step.intents:
            if not isinstance(intent, Execute):
                continue
            command = intent.command
            record = state.find(command.record)
            assert record is not None
            assert record.phase not in CLOSED, record
            if command.approved:
                assert record.expires_at is not None
                assert now < record.expires_at  # never executed after its deadline
            result: lifecycle.Result = {
                "done": Done(command.target.replicas, command.target.placement, "scale"),
                "stale": Refused("moved", stale=True),
                "failed": Failed("boom"),
            }[outcome_of_acting]
            for _ in range(2):  # a result reported twice (a retried step) changes nothing the second time
                state = lifecycle.executed(state, command.record, result, now=now).state
            if isinstance(result, Done):
                applied.add(command.record)
                current = command.target.replicas
        now += 1.0
    assert len(state.history.changes) == len(applied)  # each applied change counted once


def test_a_decision_that_failed_is_tried_again_on_its_own_record() -> None:
    _, first = decide_with(policy(), Decisions(), current=4, want=6, now=NOW)
    write = first.intents[0]
    assert isinstance(write, Write)
    failed = lifecycle.executed(first.state, write.record.name, Failed("API error 500"), now=NOW)
    _, again = decide_with(policy(), failed.state, current=4, want=6, now=NOW + 30)
    assert kinds(again) == ["SetPhase", "Execute"]
    execute = again.intents[1]
    assert isinstance(execute, Execute)
    assert execute.command.record == write.record.name
    _, other = decide_with(policy(), failed.state, current=4, want=7, now=NOW + 30)
    assert kinds(other) == ["Write", "Execute"]  # a different decision gets its own record


def test_audit_mode_proposals_are_bounded_by_the_history_limit() -> None:
    """Audit mode's records stay Proposed forever: only the newest is kept beyond the limit."""
    spec = policy(mode="audit", historyLimit=3)
    state = Decisions()
    for i in range(12):
        _, step = decide_with(spec, state, current=4, want=5 + i % 6, now=NOW + 30 * i)
        state = step.state
    assert len(state.records) == 3
    assert {r.phase for r in state.records} == {Phase.PROPOSED}
    assert state.latest is not None
    assert state.latest.created == NOW + 30 * 11


def test_an_hpa_owned_by_keda_is_never_patched_even_when_the_policy_coordinates() -> None:
    spec = policy(coordinateAutoscalers=True)
    outcome = negotiate(
        policy=spec, situation=situation(replicas=4, now=NOW), agents=seated(wants(6)), evidence={}, history=None
    )
    context = lifecycle.Context(
        policy=spec, policy_key=KEY, workload=WORKLOAD, autoscaler="web", autoscaler_owner="ScaledObject web"
    )
    step = lifecycle.decide(Decisions(), outcome, context=context, now=NOW)
    assert kinds(step) == ["Conflict", "Write", "Emit"]
    write = step.intents[1]
    assert isinstance(write, Write)
    assert write.record.phase is Phase.HELD
    assert "KEDA" in write.message
    assert not any(isinstance(i, Execute) for i in step.intents)


# -- a competing writer ------------------------------------------------------------------------------------
def fought(spec: NegotiationPolicySpec, rounds: int, *, every: float = 60.0, reset_to: int = 4) -> tuple[Step, float]:
    """Accord scales 4 -> 6 each round and something else puts the workload back to `reset_to` before
    the next: `rounds` changes applied and overwritten. Returns the next round's step and its time."""
    state, now, current = Decisions(), NOW, 4
    for _ in range(rounds):
        _, step = decide_with(spec, state, current=current, want=6, now=now)
        execute = next(i for i in step.intents if isinstance(i, Execute))
        state = lifecycle.executed(step.state, execute.command.record, Done(6, "standard", "scale"), now=now).state
        current, now = reset_to, now + every  # the other writer resets it between rounds
    return decide_with(spec, state, current=current, want=6, now=now)[1], now


@pytest.mark.parametrize(("most", "rounds", "held"), [(3, 2, False), (3, 3, True), (2, 2, True), (0, 10, False)])
def test_accord_backs_off_once_its_changes_are_overwritten_max_overwrites_times(
    most: int, rounds: int, held: bool
) -> None:
    spec = policy(rules={"competingWriter": {"maxOverwrites": most}})
    step, _ = fought(spec, rounds)
    if not held:
        assert [k for k in kinds(step) if k != "Delete"] == ["Write", "Execute"]  # the history limit may prune
        return
    assert kinds(step) == ["Conflict", "Write", "Emit"]
    conflict, write, emit = step.intents
    assert isinstance(conflict, lifecycle.Conflict) and conflict.writer
    assert f"{rounds} changes overwritten by another writer" in conflict.message
    assert isinstance(write, Write) and write.record.phase is Phase.HELD
    assert isinstance(emit, Emit) and emit.reason == "CompetingWriter" and emit.warning
    assert "6@standard became 4@standard" in emit.message


def test_a_held_fight_is_recorded_once_and_reported_every_round() -> None:
    spec = policy()
    step, now = fought(spec, 3)
    _, again = decide_with(spec, step.state, current=4, want=6, now=now + 60)
    assert kinds(again) == ["Conflict"]


@pytest.mark.parametrize(("age", "held"), [(3599.0, True), (3601.0, False)])
def test_overwrites_leave_the_window(age: float, held: bool) -> None:
    """Three overwrites, the first two seen `age` seconds (or more) ago: the third alone (the workload
    is still not where Accord left it) is under the bar of three once the others have left the hour."""
    spec = policy()
    step, now = fought(spec, 3, every=1.0)
    _, later = decide_with(spec, step.state, current=4, want=6, now=now - 2 + age)
    assert ("Conflict" in kinds(later)) is held


def test_a_workload_left_where_accord_put_it_is_no_fight() -> None:
    """Accord's own successive changes (each one found where the previous left it) are no overwrite."""
    spec = policy()
    state, now, current = Decisions(), NOW, 4
    for want in (6, 8, 10, 12):
        _, step = decide_with(spec, state, current=current, want=want, now=now)
        execute = next(i for i in step.intents if isinstance(i, Execute))
        done = Done(execute.command.target.replicas, "standard", "scale")
        state = lifecycle.executed(step.state, execute.command.record, done, now=now).state
        current, now = execute.command.target.replicas, now + 60
    assert lifecycle.overwrites(state, Candidate(current, "standard"), now=now, window=3600) == []
    _, step = decide_with(spec, state, current=current, want=current + 2, now=now)
    assert kinds(step) == ["Write", "Execute"]


def test_a_fight_is_rebuilt_from_the_records_after_a_restart() -> None:
    step, now = fought(policy(), 3)
    rebuilt = Decisions()
    for record in step.state.records:
        if record.phase is Phase.APPLIED:
            rebuilt = lifecycle.observe(rebuilt, record, now=now)
    assert len(lifecycle.overwrites(rebuilt, Candidate(4, "standard"), now=now, window=3600)) == 3


@pytest.mark.parametrize(
    ("rules", "kept"),
    [
        ({}, 4),  # the competing-writer rule reads 3 overwrites: 4 applied records
        ({"competingWriter": {"maxOverwrites": 5}}, 6),
        ({"budget": {"maxChangesPerHour": 7}}, 7),
        ({"budget": {"maxChangesPerHour": 2}, "competingWriter": {"maxOverwrites": 0}}, 2),
    ],
)
def test_the_history_limit_keeps_only_the_changes_the_rules_still_count(rules: dict[str, Any], kept: int) -> None:
    """Ten changes applied within the hour, a history limit of 1: the newest ones the rules read stay
    (the budget counts up to maxChangesPerHour, the overwrites need maxOverwrites + 1), the rest go, so
    a workload changed every round keeps a bounded number of records."""
    state = Decisions()
    for i in range(10):
        state = state.put(record_at(f"web-deploy-{i:02d}", NOW - 600 + i, Phase.APPLIED, applied_at=NOW - 600 + i))
    spec = policy(historyLimit=1, rules={"requireApproval": {"placementChange": False}, **rules})
    _, step = decide_with(spec, state, current=4, want=6, now=NOW)
    deleted = [i.name for i in step.intents if isinstance(i, Delete)]
    assert deleted == [f"web-deploy-{i:02d}" for i in reversed(range(10 - kept))]
