"""Trust learned from an agent's track record (negotiation layer, pure).

An agent that predicts (the performance agent's demand peak, the cost agent's price) is checked
against what was observed once the prediction's horizon has passed. Trust follows a
multiplicative-weights (Hedge) update with a tolerance:

    error  = |predicted - observed| / max(|predicted|, |observed|, scale_floor)     in [0, 1]
    trust' = clamp(trust * exp(-rate * (error - tolerance)), floor, 1)

Errors below the tolerance earn trust back, errors above it cost trust exponentially fast; the
floor keeps a once-wrong agent able to recover. The engine multiplies each agent's weight by it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

RATE = 0.5
TOLERANCE = 0.15
FLOOR = 0.05
SCALE_FLOOR = 1e-6
SMOOTHING = 0.2


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
