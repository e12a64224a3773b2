"""Whether a replay meets the project's goal against the HPA, and how well a tuned policy generalises (sim layer, pure).

The goal, on every trace (docs/benchmark.md, "What is compared"): against hpa@0.7,

- fewer SLO-violation minutes, or none where the HPA has none;
- fewer pod-hours;
- no more scaling actions; where the HPA barely moves (fewer than one action per hour of trace),
  at most one action per hour of trace on average.

`misses` says which of these a replay breaks. `leave_one_out` judges tuning without hoping: for
every trace, the setting of the tunable knobs is chosen on the other traces alone (most goals met
there, then the lowest median pod-hours relative to the oracle), and judged on the one left out.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from accord.sim.model import Figures

TICKS_PER_HOUR = 60


def allowed_actions(baseline: Figures) -> int:
    """The most scaling actions the goal allows: the baseline's, or one per hour of trace where it barely moves."""
    return max(baseline.actions, baseline.ticks // TICKS_PER_HOUR)


def misses(accord: Figures, baseline: Figures) -> list[str]:
    """What `accord` misses of the goal against `baseline` (hpa@0.7), in words; empty when it meets it."""
    found: list[str] = []
    if not (accord.slo_minutes < baseline.slo_minutes or accord.slo_minutes == baseline.slo_minutes == 0):
        found.append(f"SLO-violation minutes {accord.slo_minutes:,} not below {baseline.slo_minutes:,}")
    if not accord.pod_hours < baseline.pod_hours:
        found.append(f"pod-hours {accord.pod_hours:,.1f} not below {baseline.pod_hours:,.1f}")
    most = allowed_actions(baseline)
    if accord.actions > most:
        found.append(f"scaling actions {accord.actions:,} above the {most:,} allowed")
    return found


@dataclass(frozen=True, slots=True)
class Judged:
    """One trace: its source, the figures of each setting tried (by the setting's label), and the baselines."""

    trace: str
    source: str
    settings: Mapping[str, Figures]
    baseline: Figures  # hpa@0.7
    oracle: Figures


@dataclass(frozen=True, slots=True)
class HeldOut:
    """The setting chosen on every trace but `trace`, and what it misses on `trace`."""

    trace: str
    source: str
    chosen: str
    figures: Figures
    misses: tuple[str, ...]


def _merit(judged: Sequence[Judged], setting: str) -> tuple[int, float]:
    """How a setting does on some traces, lower is better: goals missed, then median pod-hours / oracle."""
    missed = sum(bool(misses(j.settings[setting], j.baseline)) for j in judged)
    ratios = [r for j in judged if (r := j.settings[setting].ratio(j.oracle)) is not None]
    return missed, statistics.median(ratios) if ratios else float("inf")


def choose(judged: Sequence[Judged], settings: Sequence[str]) -> str:
    """The setting that meets the goal on most of `judged`, then with the lowest median ratio; first on a tie."""
    if not settings:
        raise ValueError("no settings to choose from")
    return min(settings, key=lambda s: _merit(judged, s))


def leave_one_out(judged: Sequence[Judged], settings: Sequence[str], *, by_source: bool = False) -> list[HeldOut]:
    """For every trace, the setting chosen on the others (on the other sources' traces when `by_source`),
    judged on it. With a single trace (or source) there is nothing to choose on: the first setting is taken."""
    found: list[HeldOut] = []
    for one in judged:
        others = [j for j in judged if (j.source != one.source if by_source else j is not one)]
        chosen = choose(others, settings) if others else settings[0]
        figures = one.settings[chosen]
        found.append(HeldOut(one.trace, one.source, chosen, figures, tuple(misses(figures, one.baseline))))
    return found
