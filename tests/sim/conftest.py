"""Helpers for the replay's tests: small traces made in code, and policies whose answers are scripted."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

from accord.sim.model import View
from accord.sim.trace import Trace

START = 1_750_000_000.0  # 2025-06-15 15:06:40 UTC


def trace(demand: Sequence[float], *, name: str = "test") -> Trace:
    """A trace of the given demand per 1-minute tick, unscaled."""
    return Trace(name=name, start=START, demand=tuple(float(d) for d in demand), samples=len(demand))


class Scripted:
    """Asks for `plan(view)` replicas at every tick, and remembers what it saw."""

    def __init__(self, plan: Callable[[View], int], name: str = "scripted") -> None:
        self.plan = plan
        self.name = name
        self.views: list[tuple[int, int, int]] = []  # (tick, requested, ready) as shown

    def decide(self, view: View) -> int:
        self.views.append((view.tick, view.requested, view.ready))
        return self.plan(view)


def at_ticks(changes: dict[int, int]) -> Callable[[View], int]:
    """A plan that asks for `changes[t]` at tick t and keeps the current count otherwise."""
    return lambda view: changes.get(view.tick, view.requested)


def sinusoid(
    *, hours: float = 8, period_hours: float = 4, step_minutes: int = 5, noise: float = 0.05, seed: int = 1
) -> list[tuple[float, float]]:
    """Samples of a sinusoid between 400 and 1600 with multiplicative noise, one every `step_minutes`."""
    rng = random.Random(seed)
    n = int(hours * 60 / step_minutes) + 1
    return [
        (
            START + 60.0 * step_minutes * i,
            1000.0
            * (1 + 0.6 * math.sin(2 * math.pi * i * step_minutes / (60 * period_hours)))
            * (1 + rng.gauss(0, noise)),
        )
        for i in range(n)
    ]


def steps_and_spikes(*, hours: float = 8, seed: int = 2) -> list[tuple[float, float]]:
    """One sample a minute: a level that jumps every hour or so, with short spikes, and 3% noise."""
    rng = random.Random(seed)
    level = 500.0
    samples = []
    spike = 0
    factor = 1.0
    for i in range(int(hours * 60) + 1):
        if rng.random() < 1 / 60:
            level = rng.choice([200.0, 500.0, 1000.0, 1500.0])
        if spike == 0 and rng.random() < 1 / 90:
            spike, factor = rng.randint(2, 6), rng.uniform(1.5, 3.0)
        value = level * (1 + rng.gauss(0, 0.03))
        if spike:
            value *= factor
            spike -= 1
        samples.append((START + 60.0 * i, value))
    return samples
