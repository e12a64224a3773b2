"""The performance agent: keeps a workload inside its utilisation or latency target (agents layer, pure).

It forecasts the demand peak over the pods' start-up horizon (`forecast.py`: the predictor the
recent history favours, daily seasonality when a day of history is there, and a margin from the
forecast's own recent misses), and asks for the replicas that keep two promises: the expected
peak at or below the target utilisation, and the upper bound of the forecast at or below the
target plus `UPPER_ALLOWANCE` (the headroom a target leaves is there for exactly such misses).
Each candidate is scored by the utilisation it would run at. Confidence falls with stale, thin
or noisy data.

Besides its forecast, the agent reports what the demand observed now needs (`Floor`): the fewest
pods that serve the latest fresh demand sample at the SLO utilisation (`sloUtilisation`), and no
fewer than the current count while the ready pods run above it. That is evidence, not a forecast:
the engine holds every decision at or above it whatever the agent's weight or trust, so a surge the
forecast missed cannot be negotiated away by an agent that prefers fewer pods.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from accord.agents.base import (
    INT_MIN,
    MOST_REPLICAS,
    Agent,
    Board,
    EvidenceRequest,
    Explanation,
    Floats,
    Floor,
    Ints,
    Prediction,
    QueryKind,
    Scores,
    Situation,
    clamp,
    freshness,
)
from accord.agents.forecast import DAY, Forecast, Query, forecast_peaks
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
USED = frozenset({"demand", "demand_day_ago", "latency"})
# What a forecast is made from: the demand series, yesterday's, the time and the horizon.
Asked = tuple[Evidence | None, Evidence | None, float, float]


class PerformanceAgent(Agent[PerformanceSettings]):
    type = AgentType.PERFORMANCE

    def __init__(self, name: str, settings: PerformanceSettings) -> None:
        super().__init__(name, settings)
        # Forecasts made for the last batch, and those prepared ahead, by the demand series' identity,
        # the time and the horizon (the inputs are kept with them and checked on every use).
        self._recent: dict[tuple[int, float, float], tuple[Asked, Forecast | None]] = {}
        self._prepared: dict[tuple[int, float, float], tuple[Asked, Forecast | None]] = {}
        # What the demand observed now needs, for the last batch: asked for its wishes, then its proposals.
        self._observed: tuple[Sequence[Situation], Sequence[EvidenceSet], Observed] | None = None

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

    @property
    def slo_utilisation(self) -> float:
        """The utilisation above which the workload misses its objective: the setting, or by default the
        ceiling the agent plans to at most (`targetUtilisation` plus `UPPER_ALLOWANCE`, rounded so that
        0.4 x 1.15 is 0.46, not the float just below it)."""
        s = self.settings
        return s.slo_utilisation or round(min(1.0, s.target_utilisation * (1.0 + UPPER_ALLOWANCE)), 9)

    def observed(
        self, situations: Sequence[Situation], evidence: Sequence[EvidenceSet], needs: Sequence[Need | None]
    ) -> Observed:
        """What the demand observed now needs, for each workload whose demand the agent knows (`needs`)
        and whose latest sample is fresh (no older than `staleAfterSeconds`); 0 pods for the others."""
        if self._observed is not None and self._observed[0] is situations and self._observed[1] is evidence:
            return self._observed[2]
        s = self.settings
        count = len(situations)
        demand_now = np.full(count, np.nan)
        age = np.full(count, np.nan)
        for i, (sit, ev, need) in enumerate(zip(situations, evidence, needs, strict=True)):
            demand = ev.get("demand") if need is not None else None
            seen = None if demand is None else demand.age(sit.now)
            if demand is not None and demand.value is not None and seen is not None and seen <= s.stale_after_seconds:
                demand_now[i], age[i] = demand.value, seen
        ready = np.fromiter((sit.ready_replicas for sit in situations), np.int64, count)
        current = np.fromiter((sit.current.replicas for sit in situations), np.int64, count)
        slo = self.slo_utilisation
        needed = pods_at(demand_now, s.capacity_per_pod, slo)
        with np.errstate(divide="ignore", invalid="ignore"):
            utilisation = np.where(demand_now > 0, demand_now / (np.maximum(ready, 0) * s.capacity_per_pod), 0.0)
        overloaded = ~np.isnan(demand_now) & (utilisation > slo)
        floor = np.where(overloaded, np.maximum(needed, current), needed)
        found = Observed(demand_now, age, slo, needed, utilisation, ready, current, floor)
        self._observed = (situations, evidence, found)
        return found

    def horizon(self, interval_seconds: float) -> float:
        """Capacity asked for now serves from start-up until the next decision has started too."""
        return self.settings.startup_seconds + interval_seconds

    def needed_replicas(self, situation: Situation, evidence: EvidenceSet) -> tuple[int, str, float] | None:
        """Replicas needed, the reason and the expected demand peak; None without data."""
        need = self.needs([situation], [evidence])[0]
        return None if need is None else (need.replicas, need.reason(self.settings), need.forecast.expected)

    def prepare(self, evidence: Sequence[EvidenceSet], moments: Sequence[float], interval_seconds: float) -> None:
        """Forecasts all of the evidence at once, for the single calls that will ask about it."""
        horizon = self.horizon(interval_seconds)
        asked = [
            (ev.get("demand"), ev.get("demand_day_ago"), now, horizon)
            for ev, now in zip(evidence, moments, strict=True)
        ]
        self._prepared = self._forecasts([a for a in asked if a[0] is not None and a[0].series])

    def needs(self, situations: Sequence[Situation], evidence: Sequence[EvidenceSet]) -> list[Need | None]:
        """What each workload needs, its demand forecast in one batch for all of them."""
        s = self.settings
        asked = [
            (ev.get("demand"), ev.get("demand_day_ago"), sit.now, self.horizon(sit.interval_seconds))
            for sit, ev in zip(situations, evidence, strict=True)
        ]
        # The engine asks for wishes, then for proposals, with the same inputs: forecast once; and
        # what was prepared ahead is not forecast again.
        known = [self._known(a) for a in asked]
        todo = [a for a, fc in zip(asked, known, strict=True) if fc is None and a[0] is not None and a[0].series]
        if todo:
            self._recent = self._forecasts(todo)
        per_pod = s.capacity_per_pod * s.target_utilisation
        most = s.capacity_per_pod * (s.target_utilisation * (1.0 + UPPER_ALLOWANCE))
        found: list[Need | None] = []
        for sit, ev, a, fc in zip(situations, evidence, asked, known, strict=True):
            forecast = fc if fc is not None else self._known(a)
            if forecast is None:
                found.append(None)
                continue
            needed = max(math.ceil(forecast.expected / per_pod - 1e-9), math.ceil(forecast.peak / most - 1e-9))
            latency = ev.get("latency")
            by_latency = None
            target = s.latency_target_seconds
            observed = latency.value if latency is not None else None
            if target and observed is not None and observed > target and sit.ready_replicas > 0:
                by_latency = (observed, math.ceil(sit.ready_replicas * observed / target))
            found.append(Need(needed, forecast, a[3], by_latency))
        return found

    def _forecasts(self, asked: Sequence[Asked]) -> dict[tuple[int, float, float], tuple[Asked, Forecast | None]]:
        """Forecasts of demand series (with yesterday's, when seasonal), by the series' identity, the time
        and the horizon."""
        seasonal = self.settings.seasonality
        queries = []
        for demand, day_ago, now, horizon in asked:
            assert demand is not None
            queries.append(
                Query(demand.series, now, horizon, day_ago.series if day_ago is not None and seasonal else ())
            )
        return {(id(a[0]), a[2], a[3]): (a, fc) for a, fc in zip(asked, forecast_peaks(queries), strict=True)}

    def _known(self, asked: Asked) -> Forecast | None:
        """The forecast already made for these very inputs, if any."""
        for made in (self._recent, self._prepared):
            hit = made.get((id(asked[0]), asked[2], asked[3]))
            if hit is not None:
                (demand, day_ago, now, horizon), fc = hit
                if demand is asked[0] and day_ago is asked[1] and now == asked[2] and horizon == asked[3]:
                    return fc
        return None

    def wishes_many(self, situations: Sequence[Situation], evidence: Sequence[EvidenceSet]) -> list[tuple[int, ...]]:
        needs = self.needs(situations, evidence)
        floors = self.observed(situations, evidence, needs).floor.tolist()
        return [
            () if n is None else (n.replicas,) if floor in (0, n.replicas) else (n.replicas, floor)
            for n, floor in zip(needs, floors, strict=True)
        ]

    def propose_many(self, situations: Sequence[Situation], board: Board, evidence: Sequence[EvidenceSet]) -> Scores:
        s = self.settings
        needs = self.needs(situations, evidence)
        observed = self.observed(situations, evidence, needs)
        count = len(situations)
        known = np.array([n is not None for n in needs], dtype=np.bool_)
        needed = np.array([0 if n is None else min(n.replicas, MOST_REPLICAS) for n in needs], dtype=np.int64)
        # When no candidate serves the demand, the most pods on the table are the best there is, and
        # the rest are scored against them: a need beyond reach must pull toward capacity, not leave
        # every candidate scored near zero for the other agents to decide between.
        lowest = INT_MIN
        most = np.where(board.valid, board.replicas, lowest).max(axis=1, initial=lowest)
        most = np.where(board.counts > 0, most, needed)
        reachable = np.minimum(needed, most)[:, None]
        replicas = board.replicas
        overloaded = np.exp(-OVERLOAD_STEEPNESS * (reachable / np.maximum(replicas, 1) - 1.0))
        utilities = np.where((reachable <= 0) | (replicas >= reachable), 1.0, np.where(replicas <= 0, 0.0, overloaded))
        utilities = np.where(board.valid & known[:, None], utilities, np.where(board.valid, 1.0, np.nan))
        confidence = np.zeros(count)
        for i, (sit, ev, need) in enumerate(zip(situations, evidence, needs, strict=True)):
            demand = ev.get("demand")
            if need is not None and demand is not None:
                confidence[i] = clamp(
                    freshness(demand.age(sit.now), s.stale_after_seconds)
                    * clamp(demand.samples / MIN_SAMPLES)
                    * (0.5 + 0.5 / (1.0 + need.forecast.roughness))
                )

        def explain(row: int) -> Explanation:
            used = tuple(e for k, e in evidence[row].items() if k in USED)
            need = needs[row]
            if need is None:
                return Explanation("no demand metrics: cannot tell how many pods are needed", used)
            why = need.reason(s)
            top = int(most[row])
            if top < need.replicas:
                why += f"; at most {top} pods can be asked for now: the most on the table is the best there is"
            if observed.floor[row] > 0:
                why += f"; {observed.reason(row)}: no decision goes below that"
            return Explanation(why, used, predict(row))

        def predict(row: int) -> Prediction | None:
            need = needs[row]
            return None if need is None else Prediction("demand_peak", need.forecast.expected, need.horizon)

        return Scores(
            utilities=utilities,
            vetoed=np.zeros(board.replicas.shape, dtype=np.bool_),
            confidence=confidence,
            explain=explain,
            why=_no_veto,
            predict=predict,
            metrics_missing=~known,
            dropped=[None] * count,
            floor=Floor(observed.floor, observed.reason),
        )


@dataclass(frozen=True, slots=True)
class Need:
    """The replicas a workload needs, the forecast they rest on over its horizon, and the latency
    (observed, replicas it asks for) when that asks for more than the forecast."""

    forecast_replicas: int
    forecast: Forecast
    horizon: float
    latency: tuple[float, int] | None = None

    @property
    def replicas(self) -> int:
        if self.latency is not None and self.latency[1] > self.forecast_replicas:
            return self.latency[1]
        return self.forecast_replicas

    def reason(self, s: PerformanceSettings) -> str:
        fc = self.forecast
        ceiling = s.target_utilisation * (1.0 + UPPER_ALLOWANCE)
        why = (
            f"demand {fc.level:.1f}/s (trend {fc.trend_per_second * 60:+.1f}/s per min"
            + (f", yesterday's peak {fc.seasonal_peak:.1f}/s" if fc.seasonal_peak is not None else "")
            + f") forecast to peak at {fc.expected:.1f}/s within {self.horizon:.0f}s ({fc.method}), "
            f"at most {fc.peak:.1f}/s; {self.forecast_replicas} pods keep utilisation at or below "
            f"{s.target_utilisation:.0%} at the expected peak and {ceiling:.1%} at the most"
        )
        if self.replicas != self.forecast_replicas and self.latency is not None:
            observed, needed = self.latency
            target = s.latency_target_seconds or 0.0
            why += f"; latency {observed * 1000:.0f}ms is above its {target * 1000:.0f}ms target: {needed} pods"
        return why


@dataclass(frozen=True, slots=True)
class Observed:
    """What the demand observed now needs, per workload (NaN demand: none fresh, and a floor of 0).

    `needed` pods serve `demand` at `slo` utilisation; `utilisation` is the demand over the ready
    pods' capacity; `floor` is `needed`, or the current count if higher while utilisation is above
    `slo`.
    """

    demand: Floats
    age: Floats
    slo: float
    needed: Ints
    utilisation: Floats
    ready: Ints
    current: Ints
    floor: Ints

    def reason(self, row: int) -> str:
        if np.isnan(self.demand[row]):
            return "no fresh demand sample: no floor"
        why = (
            f"demand observed {float(self.age[row]):.0f}s ago, {float(self.demand[row]):.1f}/s, needs "
            f"{int(self.needed[row])} pods at the SLO utilisation of {self.slo:.1%}"
        )
        if self.floor[row] > self.needed[row]:
            u = float(self.utilisation[row])
            busy = "no pod is ready" if math.isinf(u) else f"the {int(self.ready[row])} ready pods run at {u:.0%}"
            why += f", and {busy}, above it: no fewer than the current {int(self.current[row])}"
        return why


def pods_at(demand: Floats, capacity: float, utilisation: float) -> Ints:
    """The fewest pods that serve each demand at no more than `utilisation` each: the least n with
    demand / (n x capacity) <= utilisation, as the utilisation is computed (0 for no demand or NaN)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        wanted = np.where(demand > 0, demand, 0.0)
        n = np.minimum(np.ceil(wanted / (capacity * utilisation)), MOST_REPLICAS)
        n = np.where(wanted > 0, np.maximum(n, 1), 0)  # a demand too small for the quotient still needs a pod
        # The quotient rounds: step to the least count that keeps the utilisation at or below it.
        fewer = np.maximum(n - 1, 1)
        n = np.where((n > 1) & (wanted / (fewer * capacity) <= utilisation), fewer, n)
        n = np.where((n >= 1) & (n < MOST_REPLICAS) & (wanted / (np.maximum(n, 1) * capacity) > utilisation), n + 1, n)
    found: Ints = n.astype(np.int64)
    return found


def _no_veto(row: int, column: int) -> str:
    return ""
