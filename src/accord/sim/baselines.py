"""The baselines Accord is compared with in a replay: the Kubernetes HPA, the oracle, a static count (sim layer, pure).

As docs/benchmark.md section 1 defines them:

- `hpa@T`: every tick, from the utilisation u of the previous tick over the pods that were
  ready, desired = ceil(ready × u / T); no change while |u / T − 1| ≤ 0.1 (the recommendation is
  then the current count); a scale-up goes at most to max(2 × current, current + 4); a
  scale-down goes only to the highest recommendation of the last 5 minutes (the recommendations
  made strictly after now − 300 s, as the HPA controller's `After(cutoff)` keeps them: with
  1-minute ticks, this tick's and the four before); the result is clamped to the bounds.
- `oracle`: clairvoyant; requested(t) is the most pods any tick from t to t + startup needs at
  the SLO utilisation: the cheapest plan without violations, a bound rather than a policy.
- `static`: the pods the largest demand needs at the SLO utilisation, all the time.
"""

from __future__ import annotations

import math
from collections import deque

from accord.sim.model import ReplayModel, View
from accord.sim.trace import Trace

HPA_TOLERANCE = 0.1
HPA_SCALE_DOWN_WINDOW_TICKS = 5  # 300 s of 60 s ticks; the oldest of them falls on the cutoff and is dropped
HPA_TARGETS = (0.5, 0.6, 0.7, 0.8)


class Hpa:
    """The HorizontalPodAutoscaler's algorithm at target utilisation T, one sync per tick."""

    def __init__(self, target: float, model: ReplayModel) -> None:
        if not target > 0:
            raise ValueError("the HPA's target utilisation must be above 0")
        self.target = target
        self.model = model
        self.recommendations: deque[tuple[int, int]] = deque()

    @property
    def name(self) -> str:
        return f"hpa@{self.target:g}"

    def recommend(self, view: View) -> int:
        """The count the metrics ask for, before stabilization and rate limits."""
        current = view.requested
        k = view.tick - 1
        ready = view.ready_at(k)
        demand = view.demand(k)
        if ready <= 0:
            # Utilisation is infinite: ready × u / T is read as the demand seen over T per pod.
            return math.ceil(demand / (self.target * self.model.capacity)) if demand > 0 else current
        u = view.utilisation(k)
        ratio = u / self.target
        if abs(ratio - 1.0) <= HPA_TOLERANCE:
            return current
        return math.ceil(ready * ratio)

    def decide(self, view: View) -> int:
        current = view.requested
        if view.tick == 0:
            return current  # no metrics yet: the HPA does nothing and records nothing
        recommendation = self.recommend(view)
        self.recommendations.append((view.tick, recommendation))
        while self.recommendations[0][0] <= view.tick - HPA_SCALE_DOWN_WINDOW_TICKS:
            self.recommendations.popleft()
        wanted = current
        if recommendation > current:
            wanted = min(recommendation, max(2 * current, current + 4))
        else:
            highest = max(r for _, r in self.recommendations)
            if highest < current:
                wanted = highest
        return self.model.clamp(wanted)


class Oracle:
    """Knows the whole trace: at every tick, the most pods needed from now until pods asked now are ready."""

    name = "oracle"

    def __init__(self, trace: Trace, model: ReplayModel) -> None:
        needed = [model.pods_for(d, model.slo) for d in trace.demand]
        n = len(needed)
        plan = [0] * n
        window: deque[int] = deque()  # indexes of a decreasing run of `needed`, for a sliding maximum
        for t in range(n - 1, -1, -1):
            while window and needed[window[-1]] <= needed[t]:
                window.pop()
            window.append(t)
            while window[0] > t + model.startup:
                window.popleft()
            plan[t] = model.clamp(needed[window[0]])
        self.plan = tuple(plan)

    def decide(self, view: View) -> int:
        return self.plan[view.tick]


class Static:
    """The count the largest demand of the trace needs at the SLO utilisation, within the bounds."""

    name = "static"

    def __init__(self, trace: Trace, model: ReplayModel) -> None:
        self.count = model.clamp(model.pods_for(max(trace.demand, default=0.0), model.slo))

    def decide(self, view: View) -> int:
        return self.count
