"""What becomes of a decision once the engine has made it (negotiation layer, pure).

The engine says what should happen to a workload; this module says, once for the operator and the
replay, what Accord does about it: whether the decision is recorded, whether it replaces one that
waits for a person or a small wobble leaves that one standing, what the stabilization history
remembers, when a change counts against the change budget, when a waiting decision expires, which
records the history limit prunes, and when a decision becomes a `Command` for the executor.

Every step takes a workload's `Decisions` (its state) and the time and returns a `Step`: the new
state and the `Intent`s its shell carries out in order (write a record, set a record's phase,
delete one, execute a command, post an Event, report a conflict). The shell feeds what acting did
back through `executed`. Before acting, the shell re-validates the command against what it reads
live (`revalidate`): decide, re-check, then act. Nothing here reads a clock or does I/O; the
operator (`operator/loop.py`) and the replay (`sim/negotiated.py`) are its two shells. The state
is rebuilt from the records after a restart (`observe` each record, then `seed` with the workload).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import pairwise
from typing import Literal

from accord.agents.base import Candidate
from accord.models.negotiation import NegotiationSpec, Phase, Verdict, WorkloadRef
from accord.models.policy import FreezeAction, Mode, NegotiationPolicySpec
from accord.negotiation.candidates import replica_range
from accord.negotiation.engine import Outcome
from accord.negotiation.record import build_record
from accord.negotiation.rules import History, close_enough

# Phases a person's decision can still act on: the history limit never deletes them.
OPEN = frozenset({Phase.PENDING_APPROVAL, Phase.APPROVED})
# A decision the executor could not carry out; the same decision again is retried on the same record.
RETRY = frozenset({Phase.PROPOSED, Phase.FAILED})
VERDICT_PHASE = {Verdict.HOLD: Phase.HELD, Verdict.IMPASSE: Phase.IMPASSE}
BUDGET_WINDOW = 3600.0  # the change budget counts the changes of the last hour
KIND_SHORT = {"Deployment": "deploy", "StatefulSet": "sts"}
AUTOSCALER_HELD = "|autoscaler"
ROLLOUT_HELD = "rolloutInProgress"
ROLLOUT_FAILED = "|rolloutFailed"
ROLLOUT_BACKOFF = 3600.0  # a target whose rollout failed is not tried again for an hour
WRITER_HELD = "|writer"


# -- state ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Record:
    """What the lifecycle knows of one Negotiation record it (or an earlier run) wrote."""

    name: str
    phase: Phase
    created: float  # the decision's time (the record's spec.decidedAt)
    current: Candidate
    target: Candidate
    verdict: Verdict
    policy: str
    signature: str  # what makes two decisions the same, for de-duplication
    fingerprint: str  # what the decision does, so an edited record is never acted on
    rules: tuple[str, ...] = ()  # the gates that capped, held or gated it
    expires_at: float | None = None
    applied_at: float | None = None
    audit: bool = False  # recorded in audit mode: Proposed for good, never acted on
    generation: int | None = None  # the workload generation a placement change wrote (RollingOut)
    failure: str | None = None  # why its rollout failed, while the rollback is carried out


@dataclass(frozen=True, slots=True)
class Decisions:
    """One workload's decision state: its stabilization history and budget, and its records (oldest first)."""

    history: History = field(default_factory=History)
    records: tuple[Record, ...] = ()
    seeded: bool = False  # the history has been seeded from the workload (after a start)

    @property
    def latest(self) -> Record | None:
        return self.records[-1] if self.records else None

    @property
    def rolling(self) -> Record | None:
        """The record whose rollout Accord follows: the workload is not negotiated until it ends."""
        return next((r for r in reversed(self.records) if r.phase is Phase.ROLLING_OUT), None)

    @property
    def pending(self) -> Record | None:
        return next((r for r in reversed(self.records) if r.phase is Phase.PENDING_APPROVAL), None)

    def find(self, name: str) -> Record | None:
        return next((r for r in self.records if r.name == name), None)

    def put(self, record: Record) -> Decisions:
        """The state with `record` added or replaced, records kept in decision order."""
        others = [r for r in self.records if r.name != record.name]
        records = sorted([*others, record], key=lambda r: (r.created, r.name))
        return replace(self, records=tuple(records))

    def without(self, name: str) -> Decisions:
        return replace(self, records=tuple(r for r in self.records if r.name != name))


# -- what the shell is asked to do ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Command:
    """A decision handed to the executor: make the workload `target`, if it is still `current`."""

    record: str
    workload: WorkloadRef
    policy: str
    current: Candidate
    target: Candidate
    rules: tuple[str, ...] = ()
    approved: bool = False
    rollback: bool = False  # back to where the record found the workload: no step limit, freeze or budget


@dataclass(frozen=True, slots=True)
class Write:
    """Create a Negotiation record for `record`, in its phase, with this message; `spec()` builds its spec."""

    record: Record
    message: str
    build: Callable[[], NegotiationSpec] = field(compare=False, repr=False)

    def spec(self) -> NegotiationSpec:
        return self.build()


@dataclass(frozen=True, slots=True)
class Approval:
    """A person's decision on a pending record, as the shell read it."""

    decision: Literal["approved", "rejected"]
    user: str
    groups: tuple[str, ...] = ()
    verified: bool = True  # the identity was stamped from the admission request's user info
    time: float | None = None


@dataclass(frozen=True, slots=True)
class SetPhase:
    name: str
    phase: Phase
    message: str
    applied_at: float | None = None
    superseded_by: str | None = None
    approval: Approval | None = None
    generation: int | None = None  # the rollout to follow (RollingOut)


@dataclass(frozen=True, slots=True)
class Delete:
    """The history limit drops this record."""

    name: str


@dataclass(frozen=True, slots=True)
class Execute:
    command: Command


@dataclass(frozen=True, slots=True)
class Emit:
    """An Event on the workload, or on the record `record` when it is set."""

    reason: str
    message: str
    warning: bool = False
    record: str | None = None


@dataclass(frozen=True, slots=True)
class Conflict:
    """Another autoscaler holds the workload, or another writer keeps resetting it: reported on the
    policy's condition (AutoscalerConflict, WriterConflict)."""

    message: str
    writer: bool = False  # another writer overwrote what Accord applied, not an autoscaler


Intent = Write | SetPhase | Delete | Execute | Emit | Conflict


@dataclass(frozen=True, slots=True)
class Step:
    state: Decisions
    intents: tuple[Intent, ...] = ()


# -- what acting did ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Done:
    replicas: int
    placement: str
    via: str  # "scale", "placement", "hpa", "already applied"
    generation: int | None = None  # the workload's generation after a write that rolls the pod template


@dataclass(frozen=True, slots=True)
class Refused:
    """Not acted on. `stale`: the workload moved on (the decision is superseded); otherwise a rule
    of the policy no longer allows it (the decision failed, and says why)."""

    reason: str
    stale: bool = False


@dataclass(frozen=True, slots=True)
class Failed:
    reason: str


Result = Done | Refused | Failed


@dataclass(frozen=True, slots=True)
class Context:
    """What a decision step needs besides the outcome: the policy that made it and the workload."""

    policy: NegotiationPolicySpec
    policy_key: str
    workload: WorkloadRef
    autoscaler: str | None = None  # the HorizontalPodAutoscaler that manages the replicas, if any
    autoscaler_owner: str | None = None  # what owns that HPA and reconciles it (a KEDA ScaledObject)


@dataclass(frozen=True, slots=True)
class Live:
    """The workload as the shell read it right before acting."""

    replicas: int
    placement: str
    uid: str | None = None
    paused: bool = False
    selected: bool = True  # the policy still selects it


@dataclass(frozen=True, slots=True)
class Rollout:
    """A Deployment's rollout as the shell read it: its status, the Progressing condition, and the
    oldest of its pods the scheduler could not place (PodScheduled=False) with the scheduler's words."""

    generation: int
    observed_generation: int
    replicas: int  # spec.replicas
    updated: int  # status.updatedReplicas
    available: int  # status.availableReplicas
    total: int  # status.replicas: old pods still count here until they are gone
    progressing: tuple[str, str, str] | None = None  # (status, reason, message) of the Progressing condition
    unschedulable_since: float | None = None
    unschedulable: str = ""  # "Unschedulable: 0/4 nodes are available: ..."
    # A StatefulSet's (currentRevision, updateRevision): its pods are created one by one, each once
    # the one before is Ready, so fewer updated replicas than wanted may be a scale-up, not a rollout.
    revisions: tuple[str, str] | None = None

    @property
    def unsettled(self) -> str | None:
        """Why the workload is in the middle of a rollout, or None when it has settled."""
        if self.observed_generation < self.generation:
            return f"its controller has not yet seen generation {self.generation} (observed {self.observed_generation})"
        if self.revisions is not None:
            current, update = self.revisions
            if current != update:
                return f"revision {update} replaces {current}"
            return None
        if self.updated < self.replicas:
            return f"{self.updated} of {self.replicas} replicas are updated"
        return None

    @property
    def complete(self) -> bool:
        return (
            self.observed_generation >= self.generation
            and self.updated == self.replicas
            and self.available >= self.replicas
            and self.total == self.replicas
        )


# -- helpers ------------------------------------------------------------------------------------------
def record_name(workload: WorkloadRef, now: float) -> str:
    """A record's name: the workload's, its kind, and the decision's time in milliseconds (base 36)."""
    value, digits, out = int(now * 1000), "0123456789abcdefghijklmnopqrstuvwxyz", ""
    while value:
        value, rem = divmod(value, 36)
        out = digits[rem] + out
    return f"{workload.name[:200]}-{KIND_SHORT.get(workload.kind, 'w')}-{out or '0'}"


def signature(
    verdict: Verdict, current: Candidate, agreed: Candidate | None, target: Candidate, rules: Iterable[str]
) -> str:
    """What makes two decisions the same for de-duplication: verdict, agreement, target and gating rules."""
    agreed = agreed or target
    return (
        f"{verdict.value}|{current.replicas}@{current.placement}|{agreed.replicas}@{agreed.placement}|"
        f"{target.replicas}@{target.placement}|{','.join(sorted(set(rules)))}"
    )


def fingerprint(
    *, workload: WorkloadRef, policy: str, current: Candidate, target: Candidate, verdict: Verdict, decided: float
) -> str:
    """What the decision does, hashed: kept by the operator (in the record's status, which only it
    writes) so that a record whose spec was edited afterwards is never acted on."""
    text = "|".join(
        [
            workload.kind,
            workload.namespace,
            workload.name,
            workload.uid or "",
            policy,
            f"{current.replicas}@{current.placement}",
            f"{target.replicas}@{target.placement}",
            verdict.value,
            f"{decided:.3f}",
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def fingerprint_of(spec: NegotiationSpec) -> str:
    """The fingerprint of a record as it reads now."""
    return fingerprint(
        workload=spec.workload,
        policy=spec.policy,
        current=Candidate(spec.current.replicas, spec.current.placement),
        target=Candidate(spec.outcome.target.replicas, spec.outcome.target.placement),
        verdict=spec.outcome.verdict,
        decided=spec.decided_at.timestamp(),
    )


def moment(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _failed_rollout(state: Decisions, current: Candidate, target: Candidate, now: float) -> Record | None:
    """The newest record whose rollout to `target`'s pool failed within the back-off, if the decision
    moves the workload to that pool (whatever the replicas: the pool could not take it)."""
    if target.placement == current.placement:
        return None
    for record in reversed(state.records):
        failed = (
            record.phase is Phase.FAILED
            and record.generation is not None
            and record.target.placement == target.placement
        )
        if failed and (record.applied_at or record.created) > now - ROLLOUT_BACKOFF:
            return record
    return None


@dataclass(frozen=True, slots=True)
class Overwrite:
    """A change Accord applied that was found overwritten: `applied` by Accord, `found` at `seen`."""

    seen: float
    applied: Candidate
    found: Candidate


def overwrites(state: Decisions, live: Candidate, *, now: float, window: float) -> list[Overwrite]:
    """Accord's applied changes that someone else overwrote, seen within the window (oldest first): an
    applied record whose successor found the workload elsewhere than it left it, and the newest one
    when the workload is not where it left it now. Read from the records alone (the applied records of
    the last hour are kept), so a restart forgets none."""
    applied = sorted(
        (r for r in state.records if r.phase is Phase.APPLIED and not r.audit and r.applied_at is not None),
        key=lambda r: (r.applied_at or 0.0, r.name),
    )
    found = [
        Overwrite(after.created, before.target, after.current)
        for before, after in pairwise(applied)
        if after.current != before.target and after.created >= now - window
    ]
    if applied and live != applied[-1].target:
        found.append(Overwrite(now, applied[-1].target, live))
    return found


def _keep_seconds(policy: NegotiationPolicySpec) -> float:
    return float(max(policy.bounds.scale_down_stabilization_seconds, policy.bounds.scale_up_stabilization_seconds))


def _recent_changes(history: History, now: float) -> int:
    return sum(1 for t in history.changes if t >= now - BUDGET_WINDOW)


# -- the steps ----------------------------------------------------------------------------------------
def decide(state: Decisions, outcome: Outcome, *, context: Context, now: float) -> Step:
    """What Accord does with the engine's outcome for one workload."""
    policy = context.policy
    recommendation = outcome.recommendation if outcome.recommendation is not None else outcome.current.replicas
    history = state.history.remember(
        now=now, recommendation=recommendation, changed=False, keep_seconds=_keep_seconds(policy)
    )
    state = replace(state, history=history)
    pending = state.pending
    verdict = outcome.verdict
    if verdict is Verdict.NO_CHANGE or (verdict is Verdict.APPLY and not outcome.changes):
        # Only a real agreement on the status quo retires a pending decision; "no change because
        # metrics are missing" or "held back by stabilization" says nothing against it.
        if pending is not None and not outcome.gates:
            return _supersede(state, pending, "the agents now agree to keep the current state")
        return Step(state)
    rules = tuple(g.rule for g in outcome.gates)
    sig = signature(verdict, outcome.current, outcome.agreed, outcome.target, rules)
    latest = state.latest

    def new(phase: Phase, expires_in: float | None = None, suffix: str = "") -> Record:
        record = _new_record(outcome, context=context, now=now, phase=phase, signature=sig + suffix, rules=rules)
        return replace(record, expires_at=None if expires_in is None else now + expires_in)

    def build() -> NegotiationSpec:
        return build_record(
            outcome, workload=context.workload, policy=context.policy_key, mode=policy.mode.value, now=now
        )

    def held_in_conflict(suffix: str, reason: str, message: str, conflict: Conflict) -> Step:
        """Held because something else owns the workload's replicas: one record and one Warning for
        the whole conflict, and the conflict reported on the policy every round."""
        if latest is not None and latest.signature == sig + suffix and latest.phase is Phase.HELD:
            return Step(state, (conflict,))
        write = Write(new(Phase.HELD, suffix=suffix), message, build)
        step = _written(state, write, Emit(reason, message, warning=True), policy=policy, now=now)
        return Step(step.state, (conflict, *step.intents))

    if verdict in VERDICT_PHASE:
        phase = VERDICT_PHASE[verdict]
        if latest is not None and latest.signature == sig and latest.phase is phase:
            return Step(state)  # the same hold as last time: one record says it
        record = new(phase)
        warning = verdict is Verdict.IMPASSE
        return _written(
            state,
            Write(record, outcome.reason, build),
            Emit(phase.value, f"{record.name}: {outcome.reason}", warning=warning),
            policy=policy,
            now=now,
        )
    if verdict is Verdict.PENDING_APPROVAL:
        target = (outcome.target.replicas, outcome.target.placement)
        if pending is not None and close_enough((pending.target.replicas, pending.target.placement), target):
            return Step(state)  # the person is already looking at (nearly) this; don't pull it from under them
        record = new(Phase.PENDING_APPROVAL, expires_in=float(policy.approval.expiry_seconds))
        step = _written(
            state,
            Write(record, outcome.reason, build),
            Emit(
                "ApprovalRequired",
                f"{record.name} waits for approval: "
                f"kubectl annotate negotiation {record.name} accord.dev/approval=approved",
            ),
            policy=policy,
            now=now,
        )
        return _then(step, _supersede(step.state, pending, f"superseded by {record.name}", by=record.name))
    if policy.mode is Mode.AUDIT:
        if latest is not None and latest.signature == sig:
            return Step(state)
        return _written(
            state,
            Write(replace(new(Phase.PROPOSED), audit=True), f"audit mode, not applied: {outcome.reason}", build),
            policy=policy,
            now=now,
        )
    if context.autoscaler is not None and (context.autoscaler_owner is not None or not policy.coordinate_autoscalers):
        if context.autoscaler_owner is not None:
            # KEDA reconciles the HPA it owns back: patching it would be an endless fight.
            message = (
                f"HorizontalPodAutoscaler {context.autoscaler} is owned by KEDA {context.autoscaler_owner}, "
                "which reverts any change to it; not applied. "
                "Set the ScaledObject's minReplicaCount, or opt the workload out."
            )
        else:
            message = (
                f"HorizontalPodAutoscaler {context.autoscaler} manages the replicas; not applied. "
                "Set spec.coordinateAutoscalers to work through its minReplicas."
            )
        conflict = Conflict(
            f"{context.workload.kind} {context.workload.namespace}/{context.workload.name} "
            f"is managed by HPA {context.autoscaler}"
            + (f" (owned by KEDA {context.autoscaler_owner})" if context.autoscaler_owner else "")
        )
        return held_in_conflict(AUTOSCALER_HELD, "AutoscalerConflict", message, conflict)
    fights = overwrites(state, outcome.current, now=now, window=policy.rules.competing_writer.window_seconds)
    most = policy.rules.competing_writer.max_overwrites
    if most and len(fights) >= most and context.autoscaler is None:
        # Something else keeps putting the workload back: changing it again would only feed the fight.
        last = fights[-1]
        message = (
            f"not applied: what Accord applied was overwritten {len(fights)} times in the last "
            f"{policy.rules.competing_writer.window_seconds}s (the latest: {last.applied.replicas}@"
            f"{last.applied.placement} became {last.found.replicas}@{last.found.placement}); Accord backs off "
            f"until fewer than {most} are in the window. Let one controller own spec.replicas (e.g. drop it "
            "from the GitOps manifest) or opt the workload out."
        )
        conflict = Conflict(
            f"{context.workload.kind} {context.workload.namespace}/{context.workload.name}: "
            f"{len(fights)} changes overwritten by another writer",
            writer=True,
        )
        return held_in_conflict(WRITER_HELD, "CompetingWriter", message, conflict)
    failed = _failed_rollout(state, outcome.current, outcome.target, now)
    if failed is not None:
        # The scheduler could not place this target a moment ago: not tried again until the back-off has run out.
        message = (
            f"not applied: the rollout of {failed.name} to pool {outcome.target.placement} "
            f"failed at {moment(failed.applied_at or failed.created)}; not tried again before "
            f"{moment((failed.applied_at or failed.created) + ROLLOUT_BACKOFF)}"
        )
        if latest is not None and latest.signature == sig + ROLLOUT_FAILED and latest.phase is Phase.HELD:
            return Step(state)
        return _written(
            state,
            Write(new(Phase.HELD, suffix=ROLLOUT_FAILED), message, build),
            Emit("Held", message),
            policy=policy,
            now=now,
        )
    if latest is not None and latest.signature == sig and latest.phase in RETRY:
        # The same decision as the one that could not be carried out: tried again on its own record.
        retry = replace(latest, phase=Phase.PROPOSED)
        return Step(
            state.put(retry),
            (SetPhase(latest.name, Phase.PROPOSED, "applying again"), Execute(_command(retry, context.workload))),
        )
    record = new(Phase.PROPOSED)
    step = _written(state, Write(record, "applying", build), policy=policy, now=now)
    step = _then(step, _supersede(step.state, pending, f"superseded by {record.name}", by=record.name))
    return _then(step, Step(step.state, (Execute(_command(record, context.workload)),)))


def approve(
    state: Decisions,
    name: str,
    approval: Approval,
    *,
    policy: NegotiationPolicySpec | None,
    workload: WorkloadRef,
    fingerprint: str,
    now: float,
) -> Step:
    """A person's decision on a pending record: recorded, and an approved one handed to the executor.

    `fingerprint` is the record's spec as it reads now (`fingerprint_of`): a record edited after
    the decision is never acted on. `policy` is the policy that made the decision (None once it
    is gone); the approver is checked against it again here, whatever the webhook said.
    """
    record = state.find(name)
    if record is None or record.phase not in OPEN:
        return Step(state)
    if record.fingerprint and fingerprint != record.fingerprint:
        return _set(
            state,
            record,
            Phase.FAILED,
            "the record's spec was changed after the decision; it is not acted on",
            Emit("Tampered", f"{name}: the spec was changed after the decision", warning=True, record=name),
        )
    if record.expires_at is not None and record.expires_at <= now:
        return _set(
            state, record, Phase.EXPIRED, f"{approval.decision} after it expired at {moment(record.expires_at)}"
        )
    if policy is None:
        return _set(state, record, Phase.FAILED, f"policy {record.policy} is gone")
    if not approval.verified and not policy.approval.allow_unverified:
        return _set(
            state,
            record,
            Phase.REJECTED,
            "an approval without an identity from the admission webhook is not accepted "
            "(the policy does not set approval.allowUnverified)",
            approval=replace(approval, decision="rejected"),
        )
    if approval.verified and not _is_approver(policy, approval):
        return _set(
            state,
            record,
            Phase.REJECTED,
            f"{approval.user or 'an anonymous user'} is not an approver of policy {record.policy}",
            approval=replace(approval, decision="rejected"),
        )
    if approval.decision == "rejected":
        return _set(
            state,
            record,
            Phase.REJECTED,
            f"rejected by {approval.user}",
            Emit("Rejected", f"rejected by {approval.user}", record=name),
            approval=approval,
        )
    who = approval.user if approval.verified else f"{approval.user} (unverified)"
    step = Step(state)
    if record.phase is Phase.PENDING_APPROVAL:
        step = _set(state, record, Phase.APPROVED, f"approved by {who}", approval=approval)
    return _then(step, Step(step.state, (Execute(_command(record, workload, approved=True)),)))


def _is_approver(policy: NegotiationPolicySpec, approval: Approval) -> bool:
    return approval.user in policy.approval.approvers or bool(
        set(approval.groups) & set(policy.approval.approver_groups)
    )


def executed(
    state: Decisions, name: str, result: Result, *, now: float, policy: NegotiationPolicySpec | None = None
) -> Step:
    """What acting on record `name` did, recorded; an applied change counts once against the budget.

    A write that rolls the pod template (a `Done` with the generation it wrote) leaves the record
    RollingOut while the policy follows rollouts (`policy.rollout.follow`): `follow` turns it
    Applied, or Failed, from what the rollout does next. The change counts against the budget
    from the write: it happened, whatever the rollout makes of it."""
    record = state.find(name)
    if record is None:
        return Step(state)
    if record.failure is not None:
        return _rolled_back(state, record, result)
    if isinstance(result, Refused):
        if result.stale:
            return _set(state, record, Phase.SUPERSEDED, f"not applied: {result.reason}")
        return _set(
            state,
            record,
            Phase.FAILED,
            f"not applied: {result.reason}",
            Emit("Refused", f"{name}: {result.reason}", warning=True),
        )
    if isinstance(result, Failed):
        return _set(
            state, record, Phase.FAILED, result.reason, Emit("ApplyFailed", f"{name}: {result.reason}", warning=True)
        )
    if record.phase in (Phase.APPLIED, Phase.ROLLING_OUT):
        return Step(state)  # already recorded: a change is counted once
    history = state.history
    if record.applied_at is None:
        history = History(history.recommendations, (*history.changes, now))
    message = (
        f"{record.current.replicas}@{record.current.placement} -> {result.replicas}@{result.placement} ({result.via})"
    )
    if result.generation is not None and (policy is None or policy.rollout.follow):
        rolling = replace(record, phase=Phase.ROLLING_OUT, applied_at=now, generation=result.generation)
        message = f"{message}; rolling out generation {result.generation}"
        return Step(
            replace(state, history=history).put(rolling),
            (
                SetPhase(name, Phase.ROLLING_OUT, message, applied_at=now, generation=result.generation),
                Emit("RollingOut", message, record=name),
            ),
        )
    applied = replace(record, phase=Phase.APPLIED, applied_at=now)
    return Step(
        replace(state, history=history).put(applied),
        (
            SetPhase(name, Phase.APPLIED, message, applied_at=now),
            Emit("Negotiated", f"{name}: {message}"),
            Emit("Applied", message, record=name),
        ),
    )


def follow(
    state: Decisions, observed: Rollout, *, policy: NegotiationPolicySpec | None, workload: WorkloadRef, now: float
) -> Step:
    """The rollout of the RollingOut record, as the shell read it this round.

    Complete (the controller saw the written generation, every replica updated and available, the
    old pods gone): Applied. Failed: the Deployment reports Progressing=False with
    ProgressDeadlineExceeded, or a pod has been Unschedulable for `rollout.unschedulableSeconds`
    or more; the record says why in the scheduler's words and, when the policy says so
    (`rollout.rollback`, the default), a rollback command puts the workload back where the
    decision found it. A newer generation written by someone else overtakes the decision
    (Superseded). Otherwise the rollout goes on, and nothing is written."""
    record = state.rolling
    if record is None:
        return Step(state)
    if record.generation is not None and observed.generation > record.generation:
        return _set(
            state,
            record,
            Phase.SUPERSEDED,
            f"the workload changed during the rollout (generation {observed.generation}, {record.generation} written)",
        )
    if record.generation is not None and observed.observed_generation < record.generation:
        return Step(state)  # the controller has not seen the write yet: what the status says is about before it
    if observed.complete:
        message = (
            f"{record.current.replicas}@{record.current.placement} -> {record.target.replicas}@"
            f"{record.target.placement}: rolled out, {observed.available} of {observed.replicas} replicas "
            "updated and available"
        )
        return Step(
            state.put(replace(record, phase=Phase.APPLIED)),
            (
                SetPhase(record.name, Phase.APPLIED, message, applied_at=record.applied_at),
                Emit("Negotiated", f"{record.name}: {message}"),
                Emit("Applied", message, record=record.name),
            ),
        )
    bound = policy.rollout.unschedulable_seconds if policy is not None else None
    failure = None
    if observed.progressing is not None and observed.progressing[:2] == ("False", "ProgressDeadlineExceeded"):
        failure = f"the rollout did not complete: {observed.progressing[2]}"
        if observed.unschedulable:
            failure += f"; {observed.unschedulable}"
    elif bound is not None and observed.unschedulable_since is not None and now - observed.unschedulable_since >= bound:
        failure = (
            f"the rollout cannot complete: pods unschedulable for {now - observed.unschedulable_since:.0f}s "
            f"(bound {bound}s): {observed.unschedulable}"
        )
    if failure is None:
        return Step(state)
    rollback = policy is not None and policy.rollout.rollback
    failed = replace(record, phase=Phase.FAILED, failure=failure if rollback else None)
    intents: list[Intent] = [
        SetPhase(record.name, Phase.FAILED, failure + ("; rolling back" if rollback else "")),
        Emit("RolloutFailed", f"{record.name}: {failure}", warning=True),
    ]
    if rollback:
        back = replace(_command(record, workload), current=record.target, target=record.current, rollback=True)
        intents.append(Execute(back))
    return Step(state.put(failed), tuple(intents))


def _rolled_back(state: Decisions, record: Record, result: Result) -> Step:
    """What the rollback of a failed rollout did: the record stays Failed and says so."""
    settled = replace(record, failure=None)
    back = f"{record.current.replicas}@{record.current.placement}"
    if isinstance(result, Done):
        message = f"{record.failure}; rolled back to {back}"
        return _set(
            state, settled, Phase.FAILED, message, Emit("RolledBack", f"{record.name}: {message}", warning=True)
        )
    message = f"{record.failure}; the rollback to {back} was not applied: {result.reason}"
    return _set(
        state, settled, Phase.FAILED, message, Emit("RollbackFailed", f"{record.name}: {message}", warning=True)
    )


def unsettled(state: Decisions, outcome: Outcome, reason: str, *, context: Context, now: float) -> Step:
    """A workload in the middle of a rollout someone else started is not negotiated until it settles:
    a decision that would change it is recorded as a hold, once for the whole rollout (not once a
    round); one that changes nothing records nothing."""
    if not outcome.changes or outcome.verdict in VERDICT_PHASE or context.policy.mode is Mode.AUDIT:
        return Step(state)
    latest = state.latest
    sig = f"{ROLLOUT_HELD}|{outcome.current.replicas}@{outcome.current.placement}"
    if latest is not None and latest.signature == sig and latest.phase is Phase.HELD:
        return Step(state)
    message = f"not negotiated while the workload is rolling out: {reason}"
    record = _new_record(outcome, context=context, now=now, phase=Phase.HELD, signature=sig, rules=(ROLLOUT_HELD,))

    def build() -> NegotiationSpec:
        return build_record(
            outcome, workload=context.workload, policy=context.policy_key, mode=context.policy.mode.value, now=now
        )

    return _written(
        state,
        Write(record, message, build),
        Emit("RolloutInProgress", message),
        policy=context.policy,
        now=now,
    )


def forget(state: Decisions, name: str) -> Decisions:
    """A record whose write failed: it does not exist, so the state must not keep it."""
    return state.without(name)


def expire(state: Decisions, *, now: float) -> Step:
    """Pending and approved-but-unexecuted decisions past their deadline expire."""
    step = Step(state)
    for record in state.records:
        if record.phase in OPEN and record.expires_at is not None and record.expires_at <= now:
            step = _then(
                step,
                _set(step.state, record, Phase.EXPIRED, f"no decision carried out before {moment(record.expires_at)}"),
            )
    return step


def revalidate(
    command: Command, live: Live | None, *, policy: NegotiationPolicySpec | None, state: Decisions, now: float
) -> Refused | None:
    """Re-check a command against the live workload and the live policy right before acting.

    None when the executor may act (the workload is still where the decision found it, or already
    at its target); otherwise why not.
    """
    ref = command.workload
    if policy is None:
        return Refused(f"the policy {command.policy} is gone")
    if live is None:
        return Refused(f"{ref.kind} {ref.namespace}/{ref.name} no longer exists", stale=True)
    if ref.uid and live.uid and live.uid != ref.uid:
        return Refused(f"{ref.kind} {ref.namespace}/{ref.name} was recreated since the decision", stale=True)
    if not live.selected:
        return Refused(f"the policy {command.policy} no longer selects the workload")
    if live.paused:
        return Refused("the workload is paused")
    if policy.mode is Mode.AUDIT:
        return Refused(f"the policy {command.policy} is in audit mode")
    target, bounds = command.target, policy.bounds
    if not bounds.min_replicas <= target.replicas <= bounds.max_replicas:
        return Refused(
            f"{target.replicas} replicas is outside the policy's bounds {bounds.min_replicas}..{bounds.max_replicas}"
        )
    if (live.replicas, live.placement) == (target.replicas, target.placement):
        return None  # already there: nothing to write but the stamp
    if (live.replicas, live.placement) != (command.current.replicas, command.current.placement):
        return Refused(
            f"the workload is at {live.replicas}@{live.placement}, not {command.current.replicas}@"
            f"{command.current.placement} as when decided",
            stale=True,
        )
    if command.rollback:
        return None  # back to where the decision found it: no step limit, freeze window or budget stops that
    low, high = replica_range(bounds, command.current.replicas)
    if "missingMetrics" not in command.rules and not low <= target.replicas <= high:
        return Refused(f"a step to {target.replicas} is beyond the policy's step limits ({low}..{high} from here)")
    names = {p.name for p in policy.placements}
    if target.placement != command.current.placement and target.placement not in names:
        return Refused(f"placement {target.placement!r} is no longer in the policy")
    when = datetime.fromtimestamp(now, tz=UTC) if policy.rules.freeze_windows else None
    for window in policy.rules.freeze_windows:
        assert when is not None
        if window.opened_at(when) is not None and (window.action is FreezeAction.BLOCK or not command.approved):
            return Refused(f"freeze window {window.name!r} is open")
    limit = policy.rules.budget.max_changes_per_hour
    if limit is not None and _recent_changes(state.history, now) >= limit:
        return Refused(f"the change budget ({limit} an hour) is spent")
    return None


# -- persistence: the state rebuilt from the records and the workload --------------------------------
def observe(state: Decisions, record: Record, *, deleted: bool = False, now: float, follow: bool = False) -> Decisions:
    """A record seen by a watch (or listed after a start). Records this lifecycle wrote are its own:
    it knows their phases better than a late event does, unless it `follow`s another operator that
    writes them now. Unknown ones are taken as they are, and an applied one counts against the
    change budget (once)."""
    if deleted:
        return state.without(record.name)
    known = state.find(record.name)
    if known is not None and not follow:
        return state
    if known is not None and known.applied_at is not None:
        return state.put(replace(record, applied_at=known.applied_at))  # counted when it was first seen applied
    history = state.history
    applied = record.applied_at
    if applied is not None and applied >= now - BUDGET_WINDOW:  # an unknown record was never counted here
        history = History(history.recommendations, tuple(sorted((*history.changes, applied))))
    return replace(state, history=history).put(record)


def resume(state: Decisions, *, live: Candidate) -> Step:
    """Records left Proposed by an interrupted apply (the process died, or the phase could not be
    written, between the executor's write and the record's phase update), closed against the
    workload as it is now: at the record's target, the decision was applied (its change counted at
    its decision time); moved elsewhere, it was overtaken and is superseded; still at the record's
    current state, it stays Proposed and the same decision again is retried on it (`decide`). A
    record whose decision was made again later on another record (its create was reported failed,
    yet stored) is superseded by that one: one decision is applied once."""
    step = Step(state)
    for record in state.records:
        if record.phase is not Phase.PROPOSED or record.audit or record.verdict is not Verdict.APPLY:
            continue
        again = next(
            (
                r
                for r in state.records
                if r.created > record.created
                and (r.current, r.target) == (record.current, record.target)
                and not r.audit
            ),
            None,
        )
        if again is not None:
            # A record whose write was reported failed but was stored after all: the same decision was
            # made again on a record of its own, which carried it out (or will); this one is a duplicate.
            why = f"not applied: the same decision was made again as {again.name}"
            step = _then(step, _set(step.state, record, Phase.SUPERSEDED, why, by=again.name))
        elif live == record.target:
            history = step.state.history
            changes = tuple(sorted((*history.changes, record.created)))
            applied = replace(record, phase=Phase.APPLIED, applied_at=record.created)
            message = f"found applied: the workload is at {live.replicas}@{live.placement}"
            set_phase = SetPhase(record.name, Phase.APPLIED, message, applied_at=record.created)
            closed = replace(step.state, history=History(history.recommendations, changes)).put(applied)
            step = Step(closed, (*step.intents, set_phase))
        elif live != record.current:
            moved = f"not applied: the workload moved to {live.replicas}@{live.placement} meanwhile"
            step = _then(step, _set(step.state, record, Phase.SUPERSEDED, moved))
    return step


def seed(state: Decisions, *, replicas: int, policy: NegotiationPolicySpec, now: float) -> Decisions:
    """The stabilization history after a start: the workload's count stands as this moment's
    recommendation, so that no scale-down is made within the window the restart forgot."""
    if state.seeded:
        return state
    history = state.history
    if _keep_seconds(policy) > 0:
        history = History(((now, replicas),), history.changes)
    return replace(state, history=history, seeded=True)


def record_from(
    *, name: str, spec: NegotiationSpec, status: Mapping[str, object], parse_time: Callable[[object], float | None]
) -> Record:
    """A record as the lifecycle knows it, from a Negotiation's spec and status."""
    phase_text = str(status.get("phase") or Phase.PROPOSED.value)
    try:
        phase = Phase(phase_text)
    except ValueError:
        phase = Phase.PROPOSED
    current = Candidate(spec.current.replicas, spec.current.placement)
    target = Candidate(spec.outcome.target.replicas, spec.outcome.target.placement)
    agreed = spec.outcome.agreed
    rules = tuple(g.rule for g in spec.gates)
    return Record(
        name=name,
        phase=phase,
        created=spec.decided_at.timestamp(),
        current=current,
        target=target,
        verdict=spec.outcome.verdict,
        policy=spec.policy,
        signature=signature(
            spec.outcome.verdict,
            current,
            None if agreed is None else Candidate(agreed.replicas, agreed.placement),
            target,
            rules,
        ),
        fingerprint=str(status.get("fingerprint") or ""),
        rules=rules,
        expires_at=parse_time(status.get("expiresAt")),
        applied_at=parse_time(status.get("appliedAt")),
        audit=spec.mode == Mode.AUDIT.value,
        generation=_int_or_none(status.get("rolloutGeneration")),
    )


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _new_record(
    outcome: Outcome, *, context: Context, now: float, phase: Phase, signature: str, rules: tuple[str, ...]
) -> Record:
    """A new record of `outcome`, decided now."""
    return Record(
        name=record_name(context.workload, now),
        phase=phase,
        created=now,
        current=outcome.current,
        target=outcome.target,
        verdict=outcome.verdict,
        policy=context.policy_key,
        signature=signature,
        fingerprint=fingerprint(
            workload=context.workload,
            policy=context.policy_key,
            current=outcome.current,
            target=outcome.target,
            verdict=outcome.verdict,
            decided=now,
        ),
        rules=rules,
    )


# -- composition ---------------------------------------------------------------------------------------
def _command(record: Record, workload: WorkloadRef, *, approved: bool = False) -> Command:
    return Command(
        record=record.name,
        workload=workload,
        policy=record.policy,
        current=record.current,
        target=record.target,
        rules=record.rules,
        approved=approved,
    )


def _then(first: Step, second: Step) -> Step:
    return Step(second.state, first.intents + second.intents)


def _set(
    state: Decisions,
    record: Record,
    phase: Phase,
    message: str,
    *more: Intent,
    approval: Approval | None = None,
    by: str | None = None,
) -> Step:
    return Step(
        state.put(replace(record, phase=phase)),
        (SetPhase(record.name, phase, message, superseded_by=by, approval=approval), *more),
    )


def _supersede(state: Decisions, pending: Record | None, message: str, *, by: str | None = None) -> Step:
    if pending is None:
        return Step(state)
    return _set(state, pending, Phase.SUPERSEDED, message, by=by)


def counted_changes(policy: NegotiationPolicySpec) -> int:
    """How many of the last hour's applied records the rules read: the change budget counts up to
    `maxChangesPerHour` of them (beyond that every change is held), the competing-writer rule reads
    `maxOverwrites` overwrites, which takes one record more."""
    return max(policy.rules.budget.max_changes_per_hour or 0, policy.rules.competing_writer.max_overwrites + 1)


def _written(state: Decisions, write: Write, *more: Intent, policy: NegotiationPolicySpec, now: float) -> Step:
    """A new record, then the history limit: the newest `historyLimit` records stay, and so does every
    record that still waits or acts, and the newest of the last hour's changes the rules still count
    (`counted_changes`: the budget and the overwrites are rebuilt from them after a restart)."""
    state = state.put(write.record)
    intents: list[Intent] = [write, *more]
    counted = sorted(
        (r for r in state.records if r.applied_at is not None and r.applied_at >= now - BUDGET_WINDOW),
        key=lambda r: (r.applied_at or 0.0, r.name),
        reverse=True,
    )[: counted_changes(policy)]
    newest_first = sorted(state.records, key=lambda r: (r.created, r.name), reverse=True)
    for record in newest_first[policy.history_limit :]:
        # A Proposed record is resumed only while it is a workload's newest (the retry of the same
        # decision); an older one (audit mode's proposals, an abandoned attempt) is history like any other.
        if record.phase in OPEN or record.phase is Phase.ROLLING_OUT:
            continue
        if record in counted:
            continue
        state = state.without(record.name)
        intents.append(Delete(record.name))
    return Step(state, tuple(intents))
