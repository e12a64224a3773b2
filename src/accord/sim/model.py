"""The replay's model of a workload and its pods, and the tick loop that drives a policy (sim layer, pure).

docs/benchmark.md section 1, as code. Every 1-minute tick t:

1. pods asked for at tick t - startup become ready;
2. the policy sees a `View`: demand and utilisation up to tick t - 1 (metrics lag one minute),
   the requested count and the ready count, and names the count it wants (clamped to
   [min_replicas, max_replicas]);
3. a scale-up asks for new pods, ready at t + startup; a scale-down removes pods at once, those
   still starting first (newest first), then ready ones;
4. the tick is scored with the ready count after the change: u(t) = demand(t) / (ready(t) ×
   capacity), infinite with no ready pod; u(t) > slo is an SLO-violation minute; the demand above
   capacity is unserved for 60 seconds; `requested(t) / 60` pod-hours are paid; a tick where the
   requested count changes is a scaling action.

The replica count starts at what the first sample needs at utilisation 0.7, all ready.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from accord.sim.trace import TICK_SECONDS, Trace

# Ticks a preparing policy is handed ahead at a time.
LOOKAHEAD = 1024

INITIAL_UTILISATION = 0.7


@dataclass(frozen=True, slots=True)
class ReplayModel:
    """The model's parameters, with docs/benchmark.md's defaults. `startup` is in ticks (minutes)."""

    capacity: float = 100.0
    peak_pods: float = 20.0
    startup: int = 2
    slo: float = 0.85
    min_replicas: int = 1
    max_replicas: int = 200
    initial_utilisation: float = INITIAL_UTILISATION

    def __post_init__(self) -> None:
        problems = []
        if self.capacity <= 0:
            problems.append("capacity must be above 0")
        if self.peak_pods <= 0:
            problems.append("peak_pods must be above 0")
        if self.startup < 0:
            problems.append("startup must be 0 or more ticks")
        if not self.slo > 0:
            problems.append("slo must be above 0")
        if not 0 <= self.min_replicas <= self.max_replicas:
            problems.append("min_replicas must be between 0 and max_replicas")
        if not self.initial_utilisation > 0:
            problems.append("initial_utilisation must be above 0")
        if problems:
            raise ValueError("; ".join(problems))

    def clamp(self, replicas: int) -> int:
        return min(self.max_replicas, max(self.min_replicas, replicas))

    def pods_for(self, demand: float, utilisation: float) -> int:
        """The fewest pods that serve `demand` at no more than `utilisation` each."""
        if demand <= 0:
            return 0
        count = math.ceil(demand / (self.capacity * utilisation))
        while demand / (count * self.capacity) > utilisation:  # floating point may round the quotient down
            count += 1
        return count

    def initial(self, demand: float) -> int:
        return self.clamp(self.pods_for(demand, self.initial_utilisation))

    def utilisation(self, demand: float, ready: int) -> float:
        return math.inf if ready <= 0 else demand / (ready * self.capacity)

    def violated(self, demand: float, ready: int) -> bool:
        return self.utilisation(demand, ready) > self.slo

    def unserved(self, demand: float, ready: int) -> float:
        """Requests not served during one tick."""
        return max(0.0, demand - ready * self.capacity) * TICK_SECONDS


class Past:
    """The demand a policy may see at one tick: ticks 0..tick - 1.

    Reading demand at or after `tick` raises, so a policy cannot see the future even by mistake.
    """

    __slots__ = ("_demand", "now", "start", "tick")

    def __init__(self, *, tick: int, start: float, demand: Sequence[float]) -> None:
        self.tick = tick
        self.start = start
        self.now = start + TICK_SECONDS * tick
        self._demand = demand

    def _check(self, k: int) -> None:
        if not 0 <= k < self.tick:
            raise IndexError(f"tick {k} is not visible at tick {self.tick}: only ticks 0..{self.tick - 1} are")

    def time(self, k: int) -> float:
        return self.start + TICK_SECONDS * k

    def demand(self, k: int) -> float:
        """Demand at tick k < tick, in requests per second."""
        self._check(k)
        return self._demand[k]

    def series(self, since: float, until: float) -> tuple[tuple[float, float], ...]:
        """(unix seconds, demand) of the visible ticks whose time lies in [since, until], oldest first."""
        first = max(0, math.ceil((since - self.start) / TICK_SECONDS - 1e-9))
        last = min(self.tick - 1, math.floor((until - self.start) / TICK_SECONDS + 1e-9))
        start, demand = self.start, self._demand
        return tuple((start + TICK_SECONDS * k, demand[k]) for k in range(first, last + 1))


class View(Past):
    """What a policy may see at one tick: the past up to tick - 1, and the present counts."""

    __slots__ = ("_capacity", "_ready", "ready", "requested")

    def __init__(
        self,
        *,
        tick: int,
        start: float,
        requested: int,
        ready: int,
        demand: Sequence[float],
        ready_history: Sequence[int],
        capacity: float,
    ) -> None:
        super().__init__(tick=tick, start=start, demand=demand)
        self.requested = requested
        self.ready = ready
        self._ready = ready_history
        self._capacity = capacity

    def ready_at(self, k: int) -> int:
        """Ready pods at tick k < tick (after that tick's change)."""
        self._check(k)
        return self._ready[k]

    def utilisation(self, k: int) -> float:
        """Utilisation at tick k < tick: infinite with no ready pod."""
        ready = self.ready_at(k)
        return math.inf if ready <= 0 else self._demand[k] / (ready * self._capacity)


class Policy(Protocol):
    """Anything that names a replica count at every tick from what it may see."""

    @property
    def name(self) -> str: ...

    def decide(self, view: View) -> int: ...


@runtime_checkable
class Preparing(Protocol):
    """A policy that can do work ahead: it is handed the pasts of the coming ticks, `LOOKAHEAD` at a
    time, before deciding the first of them. It may only prepare what each of those ticks will
    need from its own past (its forecasts); what it decides must not change (a test replays with
    and without it, tick by tick)."""

    def prepare(self, pasts: Sequence[Past]) -> None: ...


@runtime_checkable
class Annotated(Protocol):
    """A policy that counts what happened while it decided (for instance each verdict of the engine)."""

    def notes(self) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class Figures:
    """The figures docs/benchmark.md compares, for one policy on one trace."""

    pod_hours: float
    slo_minutes: int
    unserved: float
    actions: int
    ticks: int

    def ratio(self, oracle: Figures) -> float | None:
        """Pod-hours relative to the oracle's."""
        return self.pod_hours / oracle.pod_hours if oracle.pod_hours > 0 else None


@dataclass(frozen=True, slots=True)
class Run:
    """One policy replayed over one trace: the per-tick series and the figures kept while replaying."""

    policy: str
    trace: Trace
    model: ReplayModel
    initial: int
    requested: tuple[int, ...]
    ready: tuple[int, ...]
    figures: Figures
    seconds: float = 0.0
    notes: dict[str, int] = field(default_factory=dict)


Progress = Callable[[str, int, int], None]


def replay(trace: Trace, policy: Policy, model: ReplayModel, *, progress: Progress | None = None) -> Run:
    """Drive `policy` over `trace` tick by tick and keep the figures as the ticks go."""
    demand = trace.demand
    n = len(demand)
    if n == 0:
        raise ValueError(f"{trace.name} has no ticks")
    started = time.perf_counter()
    initial = model.initial(demand[0])
    pods = [0] * initial  # the tick each pod is (or was) ready at, in the order they were asked for
    requested_series: list[int] = []
    ready_series: list[int] = []
    previous = initial
    pod_ticks = 0
    slo_minutes = 0
    unserved = 0.0
    actions = 0
    step = -(-n // 10)  # progress every tenth of the ticks
    preparing = policy if isinstance(policy, Preparing) else None
    for t in range(n):
        if preparing is not None and t % LOOKAHEAD == 0:
            preparing.prepare([Past(tick=k, start=trace.start, demand=demand) for k in range(t, min(n, t + LOOKAHEAD))])
        ready = bisect_right(pods, t)
        view = View(
            tick=t,
            start=trace.start,
            requested=previous,
            ready=ready,
            demand=demand,
            ready_history=ready_series,
            capacity=model.capacity,
        )
        wanted = model.clamp(int(policy.decide(view)))
        if wanted > len(pods):
            pods.extend([t + model.startup] * (wanted - len(pods)))
        elif wanted < len(pods):
            del pods[wanted:]  # the newest pods go first: those still starting, then ready ones
        ready = bisect_right(pods, t)
        requested_series.append(wanted)
        ready_series.append(ready)
        pod_ticks += wanted
        if model.violated(demand[t], ready):
            slo_minutes += 1
        unserved += model.unserved(demand[t], ready)
        if wanted != previous:
            actions += 1
        previous = wanted
        if progress is not None and ((t + 1) % step == 0 or t + 1 == n):
            progress(policy.name, t + 1, n)
    return Run(
        policy=policy.name,
        trace=trace,
        model=model,
        initial=initial,
        requested=tuple(requested_series),
        ready=tuple(ready_series),
        figures=Figures(
            pod_hours=pod_ticks / 60.0, slo_minutes=slo_minutes, unserved=unserved, actions=actions, ticks=n
        ),
        seconds=time.perf_counter() - started,
        notes=policy.notes() if isinstance(policy, Annotated) else {},
    )


def score(demand: Sequence[float], requested: Sequence[int], ready: Sequence[int], *, model: ReplayModel) -> Figures:
    """The figures recomputed from a per-tick series alone (what anyone can do with the CSV)."""
    if not demand:
        return Figures(0.0, 0, 0.0, 0, 0)
    previous = model.initial(demand[0])
    slo_minutes = 0
    unserved = 0.0
    actions = 0
    for d, want, up in zip(demand, requested, ready, strict=True):
        u = math.inf if up <= 0 else d / (up * model.capacity)
        slo_minutes += u > model.slo
        unserved += max(0.0, d - up * model.capacity) * 60.0
        actions += want != previous
        previous = want
    return Figures(
        pod_hours=sum(requested) / 60.0,
        slo_minutes=slo_minutes,
        unserved=unserved,
        actions=actions,
        ticks=len(demand),
    )
