"""The performance agent: keeps a workload inside its utilisation or latency target (agents layer, pure).

It forecasts the demand peak over the pods' start-up horizon (`forecast.py`: the predictor the
recent history favours, daily seasonality when a day of history is there, and a margin from the
forecast's own recent misses), and asks for the replicas that keep two promises: the expected
peak at or below the target utilisation, and the upper bound of the forecast at or below the
target plus `UPPER_ALLOWANCE` (the headroom a target leaves is there for exactly such misses).
Each candidate is scored by the utilisation it would run at. Confidence falls with stale, thin
or noisy data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

from accord.agents.base import (
    Agent,
    Candidate,
    EvidenceRequest,
    Prediction,
    Proposal,
    QueryKind,
    Situation,
    clamp,
    freshness,
)
from accord.agents.forecast import DAY, forecast_peak
from accord.metrics.evidence import Evidence, EvidenceSet
from accord.models.agent import AgentType
from accord.models.settings import PerformanceSettings

__all__ = ["PerformanceAgent", "PerformanceSettings"]

DEFAULT_DEMAND_QUERY = 'sum(rate(http_requests_total{namespace="$namespace", workload="$workload"}[2m]))'
# How sharply utility falls as utilisation climbs above target: at 20% over target it is about 0.3.
OVERLOAD_STEEPNESS = 6.0
MIN_SAMPLES = 10
# How far above the target the forecast's upper bound may take utilisation: 15% (0.7 -> 0.805).
UPPER_ALLOWANCE = 0.15


class PerformanceAgent(Agent[PerformanceSettings]):
    type = AgentType.PERFORMANCE

    def __init__(self, name: str, settings: PerformanceSettings) -> None:
        super().__init__(name, settings)
        self._last: tuple[tuple[object, ...], tuple[int, str, float] | None] | None = None

    def evidence_needed(self) -> tuple[EvidenceRequest, ...]:
        s = self.settings
        requests = [
            EvidenceRequest(
                name="demand",
                query=s.demand_query or DEFAULT_DEMAND_QUERY,
                kind=QueryKind.RANGE,
                window_seconds=s.history_seconds,
            )
        ]
        if s.seasonality:
            requests.append(
                EvidenceRequest(
                    name="demand_day_ago",
                    query=s.demand_query or DEFAULT_DEMAND_QUERY,
                    kind=QueryKind.RANGE,
                    # Yesterday over the whole history window too, so that its forecasts can be judged.
                    window_seconds=s.history_seconds + 600,
                    offset_seconds=DAY,
                    extend_seconds=self.horizon(30.0) + 600,
                )
            )
        if s.latency_query:
            requests.append(EvidenceRequest(name="latency", query=s.latency_query))
        return tuple(requests)

    def horizon(self, interval_seconds: float) -> float:
        """Capacity asked for now serves from start-up until the next decision has started too."""
        return self.settings.startup_seconds + interval_seconds

    def needed_replicas(self, situation: Situation, evidence: EvidenceSet) -> tuple[int, str, float] | None:
        """Replicas needed, the reason and the expected demand peak; None without data."""
        demand = evidence.get("demand")
        if demand is None or not demand.series:
            return None
        day_ago = evidence.get("demand_day_ago")
        latency = evidence.get("latency")
        # The engine asks for wishes, then for a proposal, with the same inputs: forecast once.
        key = (situation, demand, day_ago, latency)
        last = self._last
        if last is not None and all(a is b for a, b in zip(last[0], key, strict=True)):
            return last[1]
        found = self._needed(situation, demand, day_ago, latency)
        self._last = (key, found)
        return found

    def _needed(
        self, situation: Situation, demand: Evidence, day_ago: Evidence | None, latency: Evidence | None
    ) -> tuple[int, str, float] | None:
        s = self.settings
        horizon = self.horizon(situation.interval_seconds)
        fc = forecast_peak(
            demand.series,
            now=situation.now,
            horizon_seconds=horizon,
            day_ago=day_ago.series if day_ago is not None and s.seasonality else (),
        )
        if fc is None:
            return None
        per_pod = s.capacity_per_pod * s.target_utilisation
        ceiling = s.target_utilisation * (1.0 + UPPER_ALLOWANCE)
        needed = max(
            math.ceil(fc.expected / per_pod - 1e-9),
            math.ceil(fc.peak / (s.capacity_per_pod * ceiling) - 1e-9),
        )
        why = (
            f"demand {fc.level:.1f}/s (trend {fc.trend_per_second * 60:+.1f}/s per min"
            + (f", yesterday's peak {fc.seasonal_peak:.1f}/s" if fc.seasonal_peak is not None else "")
            + f") forecast to peak at {fc.expected:.1f}/s within {horizon:.0f}s ({fc.method}), "
            f"at most {fc.peak:.1f}/s; {needed} pods keep utilisation at or below "
            f"{s.target_utilisation:.0%} at the expected peak and {ceiling:.1%} at the most"
        )
        target = s.latency_target_seconds
        observed = latency.value if latency is not None else None
        if target and observed is not None and observed > target and situation.ready_replicas > 0:
            by_latency = math.ceil(situation.ready_replicas * observed / target)
            if by_latency > needed:
                needed = by_latency
                why += f"; latency {observed * 1000:.0f}ms is above its {target * 1000:.0f}ms target: {needed} pods"

        return needed, why, fc.expected

    def wishes(self, situation: Situation, evidence: EvidenceSet) -> tuple[int, ...]:
        found = self.needed_replicas(situation, evidence)
        return () if found is None else (found[0],)

    def propose(self, situation: Situation, candidates: Sequence[Candidate], evidence: EvidenceSet) -> Proposal:
        s = self.settings
        demand = evidence.get("demand")
        used: list[Evidence] = [e for k, e in evidence.items() if k in {"demand", "demand_day_ago", "latency"}]
        found = self.needed_replicas(situation, evidence)
        if found is None or demand is None:
            return self._proposal(
                utilities=dict.fromkeys(candidates, 1.0),
                vetoes={},
                confidence=0.0,
                rationale="no demand metrics: cannot tell how many pods are needed",
                evidence=used,
                current=situation.current,
                metrics_missing=True,
            )
        needed, why, demand_peak = found
        # When no candidate serves the demand, the most pods on the table are the best there is, and
        # the rest are scored against them: a need beyond reach must pull toward capacity, not leave
        # every candidate scored near zero for the other agents to decide between.
        most = max((c.replicas for c in candidates), default=needed)
        if most < needed:
            why += f"; at most {most} pods can be asked for now: the most on the table is the best there is"
        reachable = min(needed, most)
        utilities = {c: self._utility(c.replicas, reachable) for c in candidates}
        fc_noise = self._noise(demand)
        confidence = (
            freshness(demand.age(situation.now), s.stale_after_seconds)
            * clamp(demand.samples / MIN_SAMPLES)
            * (0.5 + 0.5 / (1.0 + fc_noise))
        )
        return self._proposal(
            utilities=utilities,
            vetoes={},
            confidence=confidence,
            rationale=why,
            evidence=used,
            current=situation.current,
            prediction=Prediction(
                quantity="demand_peak",
                value=demand_peak,
                horizon_seconds=self.horizon(situation.interval_seconds),
            ),
        )

    def _utility(self, replicas: int, needed: int) -> float:
        """1 at or above the replicas needed; falls steeply with the overload below it."""
        if needed <= 0 or replicas >= needed:
            return 1.0
        if replicas <= 0:
            return 0.0
        overload = needed / replicas - 1.0
        return math.exp(-OVERLOAD_STEEPNESS * overload)

    @staticmethod
    def _noise(demand: Evidence) -> float:
        values = [v for _, v in demand.series]
        if len(values) < 3:
            return 1.0
        mean = sum(values) / len(values)
        diffs = [b - a for a, b in pairwise(values)]
        spread = math.sqrt(sum(d * d for d in diffs) / len(diffs))
        return spread / max(mean, 1e-9)
