"""The policy's rules applied to an agreement (negotiation layer, pure).

Each rule looks at the agreed candidate and returns gates: `cap` changes the target
(stabilization), `hold` keeps the workload as it is (low confidence, a blocking freeze window,
the change budget), `approval` sends the decision to a person.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from accord.agents.base import Candidate, Pool
from accord.models.policy import Bounds, FreezeAction, MissingMetrics, MissingMetricsAction, Rules

Effect = Literal["hold", "cap", "approval"]


@dataclass(frozen=True, slots=True)
class Gate:
    rule: str
    effect: Effect
    message: str


@dataclass(frozen=True, slots=True)
class History:
    """What the caller remembers about a workload between rounds (kept by the operator or the replay).

    `recommendations`: (unix time, replicas) the protocol agreed in earlier rounds, for stabilization.
    `changes`: unix times at which changes were applied, for the change budget.
    """

    recommendations: tuple[tuple[float, int], ...] = ()
    changes: tuple[float, ...] = ()

    def remember(self, *, now: float, recommendation: int, changed: bool, keep_seconds: float) -> History:
        horizon = now - keep_seconds
        recs = tuple((t, r) for t, r in self.recommendations if t >= horizon) + ((now, recommendation),)  # noqa: RUF005
        changes = tuple(t for t in self.changes if t >= now - 3600) + ((now,) if changed else ())
        return History(recs, changes)


def stabilize(*, agreed: int, current: int, now: float, bounds: Bounds, history: History) -> tuple[int, Gate | None]:
    """HPA-style: no scale-down within the tolerance (unless the step limit holds it) nor within the
    dwell time after a change; scale down only to the highest, up only to the lowest, recommendation
    of the window; no scale-up within the scale-up tolerance of the current count (judged on the step
    the window leaves); then a scale-up goes the policy's headroom above that. The engine raises what
    comes out to the observed-demand floor: no rule here holds a workload below it."""
    target, gate = _settle(agreed=agreed, current=current, now=now, bounds=bounds, history=history)
    raised = headroom(target, current, bounds)
    if raised == target:
        return target, gate
    why = f"scale-up to {target} taken to {raised}: {bounds.scale_up_headroom:.0%} headroom for a demand still rising"
    return raised, Gate("headroom", "cap", why if gate is None else f"{gate.message}; {why}")


def _settle(*, agreed: int, current: int, now: float, bounds: Bounds, history: History) -> tuple[int, Gate | None]:
    target, gate = _settle_steps(agreed=agreed, current=current, now=now, bounds=bounds, history=history)
    # The scale-up tolerance judges the step that would be made, after the scale-up stabilization.
    if target > current and target - current <= bounds.scale_up_tolerance * current + 1e-9:
        why = f"scale-up to {target} not made: within the {bounds.scale_up_tolerance:.0%} tolerance of {current}"
        return current, Gate("tolerance", "cap", why if gate is None else f"{gate.message}; {why}")
    return target, gate


def _settle_steps(
    *, agreed: int, current: int, now: float, bounds: Bounds, history: History
) -> tuple[int, Gate | None]:
    # Only a scale-down the step limit does not cut short: one held at `maxStepDown` may stand for a
    # larger wish, and holding it would ratchet the workload at its peak for good.
    within_step = agreed > current - bounds.max_step_down
    if agreed < current and within_step and current - agreed <= bounds.scale_down_tolerance * current + 1e-9:
        return current, Gate(
            "tolerance",
            "cap",
            f"scale-down to {agreed} not made: within the {bounds.scale_down_tolerance:.0%} tolerance of {current}",
        )
    dwell = bounds.scale_down_dwell_seconds
    if agreed < current and dwell > 0 and history.changes and now - max(history.changes) < dwell:
        return current, Gate(
            "dwell",
            "cap",
            f"scale-down to {agreed} not made: the last change was {now - max(history.changes):.0f}s ago, "
            f"within the {dwell}s dwell time",
        )
    if agreed < current and bounds.scale_down_stabilization_seconds > 0:
        since = now - bounds.scale_down_stabilization_seconds
        highest = max([agreed, *(r for t, r in history.recommendations if t >= since)])
        target = min(current, highest)
        if target != agreed:
            return target, Gate(
                "stabilization",
                "cap",
                f"scale-down to {agreed} limited to {target}: the highest recommendation of the last "
                f"{bounds.scale_down_stabilization_seconds}s",
            )
    if agreed > current and bounds.scale_up_stabilization_seconds > 0:
        since = now - bounds.scale_up_stabilization_seconds
        lowest = min([agreed, *(r for t, r in history.recommendations if t >= since)])
        target = max(current, lowest)
        if target != agreed:
            return target, Gate(
                "stabilization",
                "cap",
                f"scale-up to {agreed} limited to {target}: the lowest recommendation of the last "
                f"{bounds.scale_up_stabilization_seconds}s",
            )
    return agreed, None


def headroom(agreed: int, current: int, bounds: Bounds) -> int:
    """A scale-up's count with the policy's headroom above it, within the bounds and the step limit."""
    if agreed <= current or bounds.scale_up_headroom <= 0:
        return agreed
    wanted = math.ceil(agreed * (1.0 + bounds.scale_up_headroom) - 1e-9)
    return max(agreed, min(wanted, bounds.max_replicas, current + bounds.max_step_up))


def missing_metrics_target(rule: MissingMetrics, current: int) -> tuple[int, Gate]:
    """The replica count the missing-metrics rule sets, and the gate that records it."""
    fallback = rule.fallback_replicas if rule.fallback_replicas is not None else current
    if rule.action is MissingMetricsAction.HOLD:
        return current, Gate("missingMetrics", "hold", "demand metrics are missing: holding the current replicas")
    if rule.action is MissingMetricsAction.FALLBACK:
        target = fallback
    elif rule.action is MissingMetricsAction.CURRENT_IF_HIGHER:
        target = max(current, fallback)
    else:
        target = min(current, fallback)
    return target, Gate(
        "missingMetrics", "cap", f"demand metrics are missing: {rule.action.value} gives {target} replicas"
    )


def spend(candidate: Candidate, pools: Mapping[str, Pool]) -> float | None:
    pool = pools.get(candidate.placement)
    if pool is None or pool.price_per_pod_hour is None:
        return None
    return candidate.replicas * pool.price_per_pod_hour


def gates_for_change(
    *,
    rules: Rules,
    current: Candidate,
    target: Candidate,
    now: float,
    confidence: float,
    history: History,
    pools: Mapping[str, Pool],
    concessions: Mapping[str, float],
) -> list[Gate]:
    """Holds and approval conditions for a change from `current` to `target`."""
    gates: list[Gate] = []
    if confidence < rules.min_confidence:
        gates.append(
            Gate(
                "minConfidence",
                "hold",
                f"confidence {confidence:.2f} is below the policy's {rules.min_confidence:.2f}",
            )
        )
    limit = rules.budget.max_changes_per_hour
    if limit is not None:
        recent = sum(1 for t in history.changes if t >= now - 3600)
        if recent >= limit:
            gates.append(Gate("changeBudget", "hold", f"{recent} changes in the last hour; the budget is {limit}"))
    moment = datetime.fromtimestamp(now, tz=UTC) if rules.freeze_windows else None
    for window in rules.freeze_windows:
        assert moment is not None
        opened = window.opened_at(moment)
        if opened is None:
            continue
        effect: Effect = "hold" if window.action is FreezeAction.BLOCK else "approval"
        gates.append(
            Gate(
                "freezeWindow",
                effect,
                f"freeze window {window.name!r} opened {opened:%Y-%m-%d %H:%M} UTC "
                f"for {window.duration_minutes} minutes",
            )
        )
    cond = rules.require_approval
    step = abs(target.replicas - current.replicas)
    if cond.step_replicas_above is not None and step > cond.step_replicas_above:
        gates.append(
            Gate("stepReplicas", "approval", f"a change of {step} replicas exceeds {cond.step_replicas_above}")
        )
    if cond.step_percent_above is not None and current.replicas > 0:
        percent = 100.0 * step / current.replicas
        if percent > cond.step_percent_above:
            gates.append(
                Gate(
                    "stepPercent",
                    "approval",
                    f"a change of {percent:.0f}% exceeds {cond.step_percent_above:g}%",
                )
            )
    elif cond.step_percent_above is not None and current.replicas == 0 and step > 0:
        gates.append(Gate("stepPercent", "approval", "scaling up from zero replicas"))
    if cond.placement_change and target.placement != current.placement:
        gates.append(
            Gate(
                "placementChange",
                "approval",
                f"placement moves from {current.placement} to {target.placement}",
            )
        )
    before, after = spend(current, pools), spend(target, pools)
    rise_limit = cond.cost_increase_per_hour_above
    if rise_limit is not None and before is not None and after is not None and after - before > rise_limit:
        gates.append(
            Gate("costIncrease", "approval", f"spend rises by {after - before:.2f}/h, above {rise_limit:.2f}/h")
        )
    if cond.disagreement_above is not None and concessions:
        agent, given = max(concessions.items(), key=lambda kv: kv[1])
        if given > cond.disagreement_above:
            gates.append(
                Gate(
                    "disagreement",
                    "approval",
                    f"{agent} concedes {given:.2f} utility, above {cond.disagreement_above:.2f}",
                )
            )
    if cond.confidence_below is not None and rules.min_confidence <= confidence < cond.confidence_below:
        gates.append(
            Gate(
                "lowConfidence",
                "approval",
                f"confidence {confidence:.2f} is below {cond.confidence_below:.2f}",
            )
        )
    return gates


def close_enough(pending: tuple[int, str], new: tuple[int, str]) -> bool:
    """A pending decision stands while newer ones differ by a replica or 10%, on the same pool: a
    forecast that wobbles must not keep replacing what a person is about to approve."""
    return pending[1] == new[1] and abs(pending[0] - new[0]) <= max(1, round(0.1 * pending[0]))
