"""Trust learned from an agent's track record (negotiation layer, pure).

An agent that predicts (the performance agent's demand peak, the cost agent's price) is checked
against what was observed once the prediction's horizon has passed. Trust follows a
multiplicative-weights (Hedge) update with a tolerance:

    error  = |predicted - observed| / max(|predicted|, |observed|, scale_floor)     in [0, 1]
    trust' = clamp(trust * exp(-rate * (error - tolerance)), floor, 1)

Errors below the tolerance earn trust back, errors above it cost trust exponentially fast; the
floor keeps a once-wrong agent able to recover.

Trust moves an agent's say, but never silences it: the engine multiplies each agent's weight by
`influence(trust)`, between `INFLUENCE_FLOOR` and 1. Each built-in agent speaks for its own
objective, and nobody else speaks for it: a performance agent that cannot forecast spiky demand
well is still the only one asking for capacity. With weight times trust, replaying
elb_request_count_8c0756 with learned trust let the performance agent's trust sink toward the floor
and the cost agent starve the workload (345 pod-hours, 18,214 SLO-violation minutes, against
3,160 and 2,384 with trust 1); with the floor at half the weight it is 3,045 and 2,624. An agent
that forecasts badly is answered by its own margins (wider when its misses are larger), not by
handing its objective to the others.

`PendingCheck`, `open_checks` and `settle_checks` are the bookkeeping the operator and the replay share:
one open check per agent and workload, settled from the evidence of a later round.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from accord.agents.base import Prediction
from accord.metrics.evidence import EvidenceSet

RATE = 0.5
TOLERANCE = 0.15
FLOOR = 0.05
SCALE_FLOOR = 1e-6
SMOOTHING = 0.2
# The least share of its weight an agent keeps however poor its track record.
INFLUENCE_FLOOR = 0.5


@dataclass(frozen=True, slots=True)
class TrustState:
    trust: float = 1.0
    samples: int = 0
    mean_error: float | None = None


def relative_error(predicted: float, observed: float) -> float:
    scale = max(abs(predicted), abs(observed), SCALE_FLOOR)
    return min(1.0, abs(predicted - observed) / scale)


def update_trust(state: TrustState, *, predicted: float, observed: float) -> TrustState:
    if not (math.isfinite(predicted) and math.isfinite(observed)):
        return state
    error = relative_error(predicted, observed)
    trust = min(1.0, max(FLOOR, state.trust * math.exp(-RATE * (error - TOLERANCE))))
    mean = error if state.mean_error is None else (1 - SMOOTHING) * state.mean_error + SMOOTHING * error
    return TrustState(trust=trust, samples=state.samples + 1, mean_error=mean)


def influence(trust: float) -> float:
    """The share of its weight an agent with this trust has: from `INFLUENCE_FLOOR` (none) to 1 (full)."""
    return INFLUENCE_FLOOR + (1.0 - INFLUENCE_FLOOR) * min(1.0, max(0.0, trust))


@dataclass(frozen=True, slots=True)
class PendingCheck:
    """A prediction to compare with what happens once its horizon has passed."""

    agent_key: str
    workload_key: str
    quantity: str
    predicted: float
    made_at: float
    due: float

    @property
    def agent(self) -> str:
        """The agent's name (the key is `namespace/name`)."""
        return self.agent_key.rsplit("/", 1)[-1]


def open_checks(
    checks: list[PendingCheck],
    agents: Iterable[str],
    predict: Callable[[str], Prediction | None],
    *,
    namespace: str,
    workload_key: str,
    now: float,
) -> None:
    """Open a check for each agent's prediction (`predict(agent)`), one at a time per agent and
    workload (honest and bounded): an agent with a check still open is not asked."""
    for agent in agents:
        agent_key = f"{namespace}/{agent}"
        if any(c.agent_key == agent_key and c.workload_key == workload_key for c in checks):
            continue
        prediction = predict(agent)
        if prediction is None:
            continue
        checks.append(
            PendingCheck(
                agent_key,
                workload_key,
                prediction.quantity,
                prediction.value,
                now,
                now + prediction.horizon_seconds,
            )
        )


def settle_checks(
    checks: list[PendingCheck],
    trust: dict[str, TrustState],
    *,
    workload_key: str,
    evidence: Mapping[str, EvidenceSet],
    now: float,
) -> list[PendingCheck]:
    """Close the workload's checks that are due, updating `trust`; the checks that moved it."""
    moved: list[PendingCheck] = []
    for check in [c for c in checks if c.workload_key == workload_key and c.due <= now]:
        checks.remove(check)
        observed = observe(check, evidence.get(check.agent, {}))
        if observed is None:
            continue
        trust[check.agent_key] = update_trust(
            trust.get(check.agent_key, TrustState()), predicted=check.predicted, observed=observed
        )
        moved.append(check)
    return moved


def observe(check: PendingCheck, evidence: EvidenceSet) -> float | None:
    """What actually happened to a predicted quantity, from the evidence of a later round."""
    if check.quantity == "demand_peak":
        demand = evidence.get("demand")
        if demand is None:
            return None
        window = [v for t, v in demand.series if check.made_at < t <= check.due]
        return max(window) if window else None
    if check.quantity.startswith("price_per_pod_hour:"):
        price = evidence.get(f"price:{check.quantity.split(':', 1)[1]}")
        return None if price is None else price.value
    return None
