"""Rollout-aware acting (pure): a placement change is Applied once its rollout completes, Failed (and
rolled back) when the scheduler cannot place its pods, and a workload someone else is rolling out is
held until it settles."""

from __future__ import annotations

from dataclasses import replace

import pytest

from accord.agents.base import Candidate
from accord.models.negotiation import Phase, Verdict
from accord.negotiation import lifecycle
from accord.negotiation.engine import negotiate
from accord.negotiation.lifecycle import (
    ROLLOUT_BACKOFF,
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
    Rollout,
    SetPhase,
    Write,
)
from tests.factories import NOW, policy, situation
from tests.negotiation.conftest import ScriptedAgent, seated
from tests.negotiation.test_lifecycle import KEY, WORKLOAD, decide_with, kinds

UNSCHEDULABLE = "pod web-7f-x Unschedulable: 0/6 nodes are available: 2 node(s) had taint {pool: cheap}"


def moving(phase: Phase = Phase.PROPOSED, **more: object) -> Record:
    record = Record(
        name="r",
        phase=phase,
        created=NOW,
        current=Candidate(4, "standard"),
        target=Candidate(4, "spot"),
        verdict=Verdict.APPLY,
        policy=KEY,
        signature="r",
        fingerprint="fp-r",
    )
    return replace(record, **more)  # type: ignore[arg-type]


def rolling(generation: int = 7) -> Decisions:
    return Decisions().put(moving(Phase.ROLLING_OUT, generation=generation, applied_at=NOW))


def rollout(**overrides: object) -> Rollout:
    done = Rollout(generation=7, observed_generation=7, replicas=4, updated=4, available=4, total=4)
    return replace(done, **overrides)  # type: ignore[arg-type]


def follow(state: Decisions, observed: Rollout, now: float = NOW + 30, **spec: object) -> lifecycle.Step:
    return lifecycle.follow(state, observed, policy=policy(**spec), workload=WORKLOAD, now=now)


def phase_of(step: lifecycle.Step, name: str = "r") -> Phase:
    record = step.state.find(name)
    assert record is not None
    return record.phase


# -- executed: a write that rolls the pod template ---------------------------------------------------------
def test_a_placement_write_leaves_the_record_rolling_out_with_the_generation_it_wrote() -> None:
    state = Decisions().put(moving())
    step = lifecycle.executed(state, "r", Done(4, "spot", "placement", generation=7), now=NOW, policy=policy())
    assert kinds(step) == ["SetPhase", "Emit"]
    set_phase = step.intents[0]
    assert isinstance(set_phase, SetPhase)
    assert (set_phase.phase, set_phase.generation, set_phase.applied_at) == (Phase.ROLLING_OUT, 7, NOW)
    assert "rolling out generation 7" in set_phase.message
    assert step.state.rolling == replace(moving(Phase.ROLLING_OUT), generation=7, applied_at=NOW)
    assert step.state.history.changes == (NOW,)  # the write happened: it counts against the budget
    again = lifecycle.executed(step.state, "r", Done(4, "spot", "placement", generation=7), now=NOW + 1)
    assert again.intents == ()


def test_without_a_generation_or_with_following_off_the_write_is_applied_at_once() -> None:
    state = Decisions().put(moving())
    scale = lifecycle.executed(state, "r", Done(4, "spot", "placement"), now=NOW, policy=policy())
    assert phase_of(scale) is Phase.APPLIED
    off = policy(rollout={"follow": False})
    unfollowed = lifecycle.executed(state, "r", Done(4, "spot", "placement", generation=7), now=NOW, policy=off)
    assert phase_of(unfollowed) is Phase.APPLIED


# -- follow: complete, still going, failed ---------------------------------------------------------------
def test_a_complete_rollout_turns_the_record_applied() -> None:
    step = follow(rolling(), rollout())
    assert phase_of(step) is Phase.APPLIED
    assert [i.reason for i in step.intents if isinstance(i, Emit)] == ["Negotiated", "Applied"]
    set_phase = step.intents[0]
    assert isinstance(set_phase, SetPhase)
    assert set_phase.applied_at == NOW
    assert "rolled out, 4 of 4 replicas updated and available" in set_phase.message
    assert step.state.rolling is None


@pytest.mark.parametrize(
    "observed",
    [
        rollout(observed_generation=6),  # the controller has not seen the write yet
        rollout(updated=3),
        rollout(available=3),
        rollout(total=5),  # an old pod is still there
        rollout(progressing=("True", "ReplicaSetUpdated", "progressing"), available=0),
        rollout(progressing=("False", "ReplicaSetCreateError", "quota"), available=0),
    ],
)
def test_a_rollout_still_going_writes_nothing(observed: Rollout) -> None:
    step = follow(rolling(), observed)
    assert step.intents == ()
    assert phase_of(step) is Phase.ROLLING_OUT


@pytest.mark.parametrize(("stuck_for", "failed"), [(119.0, False), (120.0, True)])
def test_pods_unschedulable_for_the_bound_fail_the_rollout_and_roll_it_back(stuck_for: float, failed: bool) -> None:
    observed = rollout(available=2, updated=2, unschedulable_since=NOW + 30 - stuck_for, unschedulable=UNSCHEDULABLE)
    step = follow(rolling(), observed, now=NOW + 30)
    if not failed:
        assert step.intents == ()
        return
    assert kinds(step) == ["SetPhase", "Emit", "Execute"]
    set_phase, emit, execute = step.intents
    assert isinstance(set_phase, SetPhase)
    assert isinstance(emit, Emit)
    assert isinstance(execute, Execute)
    assert set_phase.phase is Phase.FAILED
    assert UNSCHEDULABLE in set_phase.message
    assert "unschedulable for 120s (bound 120s)" in set_phase.message
    assert (emit.reason, emit.warning) == ("RolloutFailed", True)
    assert execute.command == Command(
        record="r",
        workload=WORKLOAD,
        policy=KEY,
        current=Candidate(4, "spot"),
        target=Candidate(4, "standard"),
        rollback=True,
    )


def test_the_unschedulable_bound_is_the_policys() -> None:
    observed = rollout(available=2, unschedulable_since=NOW, unschedulable=UNSCHEDULABLE)
    assert follow(rolling(), observed, now=NOW + 29, rollout={"unschedulableSeconds": 30}).intents == ()
    assert phase_of(follow(rolling(), observed, now=NOW + 30, rollout={"unschedulableSeconds": 30})) is Phase.FAILED


def test_a_progress_deadline_exceeded_fails_the_rollout_with_the_schedulers_reason() -> None:
    observed = rollout(
        available=2,
        progressing=("False", "ProgressDeadlineExceeded", 'ReplicaSet "web-7f" has timed out progressing.'),
        unschedulable_since=NOW + 29,
        unschedulable=UNSCHEDULABLE,
    )
    step = follow(rolling(), observed)
    set_phase = step.intents[0]
    assert isinstance(set_phase, SetPhase)
    assert set_phase.phase is Phase.FAILED
    assert 'ReplicaSet "web-7f" has timed out progressing.' in set_phase.message
    assert UNSCHEDULABLE in set_phase.message


def test_a_status_from_before_the_write_fails_nothing() -> None:
    stale = rollout(
        observed_generation=6,
        available=2,
        progressing=("False", "ProgressDeadlineExceeded", "an earlier rollout timed out"),
        unschedulable_since=NOW - 500,
        unschedulable=UNSCHEDULABLE,
    )
    assert follow(rolling(), stale).intents == ()


def test_without_rollback_a_failed_rollout_stays_where_it_is() -> None:
    observed = rollout(available=2, unschedulable_since=NOW - 500, unschedulable=UNSCHEDULABLE)
    step = follow(rolling(), observed, rollout={"rollback": False})
    assert kinds(step) == ["SetPhase", "Emit"]
    assert phase_of(step) is Phase.FAILED


def test_a_newer_generation_written_by_someone_else_supersedes_the_decision() -> None:
    step = follow(rolling(), rollout(generation=8, observed_generation=7, updated=2))
    assert phase_of(step) is Phase.SUPERSEDED


def test_nothing_to_follow_writes_nothing() -> None:
    assert follow(Decisions().put(moving(Phase.APPLIED)), rollout(updated=1)).intents == ()


# -- the rollback ---------------------------------------------------------------------------------------
def failed_with_rollback() -> Decisions:
    observed = rollout(available=2, unschedulable_since=NOW - 500, unschedulable=UNSCHEDULABLE)
    return follow(rolling(), observed).state


def test_the_rollback_done_leaves_the_record_failed_saying_it_was_rolled_back() -> None:
    before = failed_with_rollback()
    step = lifecycle.executed(
        before, "r", Done(4, "standard", "placement", generation=8), now=NOW + 31, policy=policy()
    )
    assert phase_of(step) is Phase.FAILED
    set_phase, emit = step.intents
    assert isinstance(set_phase, SetPhase)
    assert isinstance(emit, Emit)
    assert set_phase.message.endswith("; rolled back to 4@standard")
    assert UNSCHEDULABLE in set_phase.message
    assert (emit.reason, emit.warning) == ("RolledBack", True)
    assert step.state.history == before.history  # the rollback is not a change of its own
    assert step.state.find("r") == replace(moving(Phase.FAILED), generation=7, applied_at=NOW)


@pytest.mark.parametrize("result", [Refused("the workload is paused"), Failed("API error 500")])
def test_a_rollback_that_could_not_be_applied_says_why(result: lifecycle.Result) -> None:
    step = lifecycle.executed(failed_with_rollback(), "r", result, now=NOW + 31)
    set_phase, emit = step.intents
    assert isinstance(set_phase, SetPhase)
    assert isinstance(emit, Emit)
    assert set_phase.phase is Phase.FAILED
    assert f"the rollback to 4@standard was not applied: {result.reason}" in set_phase.message
    assert emit.reason == "RollbackFailed"


def test_a_rollback_is_not_stopped_by_the_budget_a_freeze_or_the_step_limits() -> None:
    back = Command(
        record="r", workload=WORKLOAD, policy=KEY, current=Candidate(4, "spot"), target=Candidate(4, "standard")
    )
    spent = Decisions().put(moving(Phase.FAILED, applied_at=NOW))
    spent = replace(spent, history=replace(spent.history, changes=(NOW,)))
    spec = policy(
        rules={
            "budget": {"maxChangesPerHour": 1},
            "freezeWindows": [{"name": "always", "schedule": "* * * * *", "durationMinutes": 60}],
        }
    )
    live = Live(replicas=4, placement="spot", uid="u-1")
    assert lifecycle.revalidate(back, live, policy=spec, state=spent, now=NOW + 31) is not None
    assert lifecycle.revalidate(replace(back, rollback=True), live, policy=spec, state=spent, now=NOW + 31) is None
    moved = Live(replicas=6, placement="spot", uid="u-1")
    refused = lifecycle.revalidate(replace(back, rollback=True), moved, policy=spec, state=spent, now=NOW + 31)
    assert refused is not None
    assert refused.stale  # a workload someone else moved meanwhile is not rolled back over them


# -- a failed target is not tried again at once ------------------------------------------------------------
def decide_spot(state: Decisions, *, want: int, now: float) -> lifecycle.Step:
    """An agent that wants `want` replicas on the spot pool."""
    spec = policy()
    agent = ScriptedAgent(
        "perf", lambda c: 1.0 / (1.0 + abs(c.replicas - want)) * (1.0 if c.placement == "spot" else 0.5)
    )
    outcome = negotiate(
        policy=spec, situation=situation(replicas=4, now=now), agents=seated(agent), evidence={}, history=state.history
    )
    assert outcome.target == Candidate(want, "spot")
    context = lifecycle.Context(policy=spec, policy_key=KEY, workload=WORKLOAD)
    return lifecycle.decide(state, outcome, context=context, now=now)


@pytest.mark.parametrize(("after", "held"), [(ROLLOUT_BACKOFF - 1, True), (ROLLOUT_BACKOFF, False)])
def test_a_pool_whose_rollout_failed_is_not_moved_to_again_for_the_back_off(after: float, held: bool) -> None:
    failed = replace(moving(Phase.FAILED, applied_at=NOW, generation=7), name="web-deploy-old")
    step = decide_spot(Decisions().put(failed), want=6, now=NOW + after)  # more replicas: the pool is what failed
    if not held:
        assert kinds(step) == ["Write", "Execute"]
        return
    assert kinds(step) == ["Write", "Emit"]
    write = step.intents[0]
    assert isinstance(write, Write)
    assert write.record.phase is Phase.HELD
    assert "the rollout of web-deploy-old to pool spot failed" in write.message
    assert decide_spot(step.state, want=6, now=NOW + after + 0.5).intents == ()  # one record for the back-off
    _, scale = decide_with(policy(), step.state, current=4, want=6, now=NOW + after + 1)
    assert kinds(scale) == ["Write", "Execute"]  # a change that stays on the pool is not held


# -- someone else's rollout ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("observed", "unsettled"),
    [
        (rollout(), None),
        (rollout(observed_generation=6), "its controller has not yet seen generation 7 (observed 6)"),
        (rollout(updated=3), "3 of 4 replicas are updated"),
        (rollout(available=0), None),  # updated but not yet available: settled as far as its template goes
        # A StatefulSet creates its pods one by one: fewer updated than wanted is a scale-up until the revision changes.
        (rollout(updated=1, revisions=("db-1", "db-1")), None),
        (rollout(updated=3, revisions=("db-1", "db-2")), "revision db-2 replaces db-1"),
        (
            rollout(observed_generation=6, revisions=("db-1", "db-1")),
            "its controller has not yet seen generation 7 (observed 6)",
        ),
    ],
)
def test_a_rollout_is_unsettled_until_the_controller_saw_it_and_every_replica_is_updated(
    observed: Rollout, unsettled: str | None
) -> None:
    assert observed.unsettled == unsettled


def test_a_workload_someone_else_rolls_out_is_held_once_not_once_a_round() -> None:
    spec = policy()
    context = lifecycle.Context(policy=spec, policy_key=KEY, workload=WORKLOAD)
    outcome, _ = decide_with(spec, Decisions(), current=4, want=6, now=NOW)
    step = lifecycle.unsettled(Decisions(), outcome, "3 of 4 replicas are updated", context=context, now=NOW)
    assert kinds(step) == ["Write", "Emit"]
    write = step.intents[0]
    assert isinstance(write, Write)
    assert write.record.phase is Phase.HELD
    assert write.message == "not negotiated while the workload is rolling out: 3 of 4 replicas are updated"
    assert write.spec().workload == WORKLOAD
    again = lifecycle.unsettled(step.state, outcome, "4 of 6 replicas are updated", context=context, now=NOW + 30)
    assert again.intents == ()
    unchanged, _ = decide_with(spec, Decisions(), current=4, want=4, now=NOW)
    assert lifecycle.unsettled(Decisions(), unchanged, "x", context=context, now=NOW).intents == ()


def test_the_history_limit_never_drops_a_record_whose_rollout_is_followed() -> None:
    old = replace(moving(Phase.ROLLING_OUT, generation=7), created=NOW - 7200, applied_at=NOW - 7200)
    _, step = decide_with(policy(historyLimit=1), Decisions().put(old), current=4, want=6, now=NOW)
    assert not [i for i in step.intents if isinstance(i, Delete)]
