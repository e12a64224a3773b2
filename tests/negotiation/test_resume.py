"""A record an interrupted apply left Proposed is closed against the workload as it is (pure)."""

from __future__ import annotations

from dataclasses import replace

from accord.agents.base import Candidate
from accord.models.negotiation import Phase
from accord.negotiation import lifecycle
from accord.negotiation.lifecycle import Decisions, Execute, SetPhase, Step, Write
from tests.factories import NOW, policy
from tests.negotiation.test_lifecycle import decide_with


def interrupted(**spec: object) -> tuple[Step, str]:
    """A decision 4 -> 10 written Proposed and handed to the executor; the process died before its phase."""
    _, step = decide_with(policy(**spec), Decisions(), current=4, want=10, now=NOW)
    written = [i for i in step.intents if isinstance(i, Write)]
    assert len(written) == 1 and written[0].record.phase is Phase.PROPOSED
    return step, written[0].record.name


def test_a_workload_already_at_the_target_closes_the_record_as_applied_and_counts_the_change_once() -> None:
    step, name = interrupted()
    assert any(isinstance(i, Execute) for i in step.intents)
    target = step.state.find(name)
    assert target is not None
    resumed = lifecycle.resume(step.state, live=target.target)
    assert resumed.intents == (
        SetPhase(name, Phase.APPLIED, "found applied: the workload is at 10@standard", applied_at=NOW),
    )
    record = resumed.state.find(name)
    assert record is not None and record.phase is Phase.APPLIED and record.applied_at == NOW
    assert resumed.state.history.changes.count(NOW) == 1
    again = lifecycle.resume(resumed.state, live=target.target)
    assert again.intents == () and again.state.history.changes == resumed.state.history.changes


def test_a_workload_still_where_the_decision_found_it_is_retried_on_the_same_record() -> None:
    step, name = interrupted()
    resumed = lifecycle.resume(step.state, live=Candidate(4, "standard"))
    assert resumed.intents == ()
    _, retried = decide_with(policy(), resumed.state, current=4, want=10, now=NOW + 30)
    assert [i for i in retried.intents if isinstance(i, Write)] == [], "no second record"
    executes = [i for i in retried.intents if isinstance(i, Execute)]
    assert [e.command.record for e in executes] == [name]


def test_a_workload_that_moved_elsewhere_supersedes_the_record() -> None:
    step, name = interrupted()
    resumed = lifecycle.resume(step.state, live=Candidate(6, "standard"))
    assert [(i.name, i.phase) for i in resumed.intents if isinstance(i, SetPhase)] == [(name, Phase.SUPERSEDED)]
    record = resumed.state.find(name)
    assert record is not None and record.phase is Phase.SUPERSEDED
    assert resumed.state.history.changes == step.state.history.changes, "nothing counted against the budget"


def test_the_same_replicas_on_another_placement_is_not_the_target() -> None:
    step, name = interrupted()
    resumed = lifecycle.resume(step.state, live=Candidate(10, "spot"))
    assert [(i.name, i.phase) for i in resumed.intents if isinstance(i, SetPhase)] == [(name, Phase.SUPERSEDED)]


def test_audit_records_are_never_closed_or_superseded() -> None:
    _, step = decide_with(policy(mode="audit"), Decisions(), current=4, want=10, now=NOW)
    (record,) = step.state.records
    assert record.phase is Phase.PROPOSED and record.audit
    for live in (record.target, Candidate(6, "standard"), record.current):
        assert lifecycle.resume(step.state, live=live).intents == ()


def test_a_record_stored_although_its_create_failed_is_superseded_by_the_same_decision_made_again() -> None:
    """etcd restarts while a record is created: the API server reports a failure, the lifecycle forgets
    the record and nothing is executed; the next round makes the same decision on a new record, which
    is applied. Then the watch shows the first record after all (Proposed, from 4 to 10): it is a
    duplicate, superseded by the one that carried the decision out, and the change counts once."""
    ghost_step, ghost = interrupted()
    forgotten = lifecycle.forget(ghost_step.state, ghost)
    _, again = decide_with(policy(), forgotten, current=4, want=10, now=NOW + 30)
    (write,) = [i for i in again.intents if isinstance(i, Write)]
    applied = lifecycle.executed(again.state, write.record.name, lifecycle.Done(10, "standard", "scale"), now=NOW + 30)
    seen = lifecycle.observe(applied.state, ghost_step.state.find(ghost), now=NOW + 31)  # type: ignore[arg-type]
    resumed = lifecycle.resume(seen, live=Candidate(10, "standard"))
    assert [(i.name, i.phase, i.superseded_by) for i in resumed.intents if isinstance(i, SetPhase)] == [
        (ghost, Phase.SUPERSEDED, write.record.name)
    ]
    assert resumed.state.history.changes == (NOW + 30,), "the change counts once"


def test_an_older_proposed_record_of_another_decision_is_still_found_applied() -> None:
    """Only the same decision made again makes a record a duplicate: a newer record of another decision
    (from where the first one left the workload) does not."""
    step, name = interrupted()
    later = replace(step.state.find(name), name="later", created=NOW + 60, current=Candidate(10, "standard"),  # type: ignore[type-var]
                    target=Candidate(12, "standard"), phase=Phase.HELD)  # fmt: skip
    resumed = lifecycle.resume(step.state.put(later), live=Candidate(10, "standard"))
    assert [(i.name, i.phase) for i in resumed.intents if isinstance(i, SetPhase)] == [(name, Phase.APPLIED)]
