"""A self-contained HTML page with inline SVG: demand against capacity, one panel per policy (sim layer).

No plotting library: long traces are cut into at most `POINTS` buckets per panel, each showing
its peak demand, its lowest ready capacity and its highest requested capacity, so that a short
shortfall is never averaged away; buckets with an SLO violation are marked in red below the axis.
Two views: the whole trace, and the busiest day at full resolution.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from accord.sim.model import Run
from accord.sim.report import table

POINTS = 720
WIDTH = 640
HEIGHT = 220
PAD_LEFT = 56
PAD_RIGHT = 8
PAD_TOP = 22
PAD_BOTTOM = 30
DAY_TICKS = 1440


@dataclass(frozen=True, slots=True)
class Bucket:
    demand: float
    ready: float
    requested: float
    violated: bool


def buckets(run: Run, first: int, last: int) -> list[Bucket]:
    """Ticks [first, last) folded into at most POINTS buckets."""
    span = max(1, last - first)
    size = max(1, -(-span // POINTS))
    cap = run.model.capacity
    demand, ready, requested = run.trace.demand, run.ready, run.requested
    out: list[Bucket] = []
    for lo in range(first, last, size):
        hi = min(last, lo + size)
        out.append(
            Bucket(
                demand=max(demand[lo:hi]),
                ready=min(ready[lo:hi]) * cap,
                requested=max(requested[lo:hi]) * cap,
                violated=any(run.model.violated(demand[k], ready[k]) for k in range(lo, hi)),
            )
        )
    return out


def _path(values: Sequence[float], top: float) -> str:
    width = WIDTH - PAD_LEFT - PAD_RIGHT
    height = HEIGHT - PAD_TOP - PAD_BOTTOM
    n = max(1, len(values) - 1)
    return " ".join(
        f"{PAD_LEFT + width * i / n:.1f},{PAD_TOP + height * (1 - min(v, top) / top):.1f}" for i, v in enumerate(values)
    )


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M")


def panel(run: Run, first: int, last: int, top: float) -> str:
    data = buckets(run, first, last)
    width = WIDTH - PAD_LEFT - PAD_RIGHT
    base = HEIGHT - PAD_BOTTOM
    marks = []
    n = max(1, len(data))
    for i, b in enumerate(data):
        if b.violated:
            x = PAD_LEFT + width * i / n
            marks.append(
                f'<rect x="{x:.1f}" y="{base + 3}" width="{max(1.0, width / n):.1f}" height="5" fill="#d62728"/>'
            )
    minutes = last - first
    violations = sum(run.model.violated(run.trace.demand[k], run.ready[k]) for k in range(first, last))
    title = f"{run.policy}: {violations:,} SLO-violation minutes of {minutes:,}"
    grid = "".join(
        f'<line x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
        f'<text x="{PAD_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{value:,.0f}</text>'
        for value, y in ((top * f, PAD_TOP + (base - PAD_TOP) * (1 - f)) for f in (0.0, 0.5, 1.0))
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-size="11" '
        f'font-family="sans-serif">'
        f'<text x="{PAD_LEFT}" y="14" font-weight="bold">{html.escape(title)}</text>'
        f"{grid}"
        f'<polyline fill="none" stroke="#9ecae1" stroke-width="1" points="{_path([b.requested for b in data], top)}"/>'
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.2" points="{_path([b.ready for b in data], top)}"/>'
        f'<polyline fill="none" stroke="#333" stroke-width="1" points="{_path([b.demand for b in data], top)}"/>'
        f"{''.join(marks)}"
        f'<text x="{PAD_LEFT}" y="{HEIGHT - 6}">{_when(run.trace.time(first))}</text>'
        f'<text x="{WIDTH - PAD_RIGHT}" y="{HEIGHT - 6}" text-anchor="end">{_when(run.trace.time(last - 1))}</text>'
        "</svg>"
    )


def busiest_day(runs: Sequence[Run]) -> tuple[int, int] | None:
    """The day-long window centred on the peak demand, when the trace is longer than a day."""
    demand = runs[0].trace.demand
    if len(demand) <= DAY_TICKS:
        return None
    peak = max(range(len(demand)), key=demand.__getitem__)
    first = min(max(0, peak - DAY_TICKS // 2), len(demand) - DAY_TICKS)
    return first, first + DAY_TICKS


def page(runs: Sequence[Run], *, title: str) -> str:
    """The HTML page: the comparison table, then the panels of each view side by side."""
    if not runs:
        raise ValueError("nothing to plot")
    n = len(runs[0].trace)
    views = [("the whole trace", 0, n)]
    day = busiest_day(runs)
    if day is not None:
        views.append(("the busiest day, minute by minute", *day))
    sections = []
    for label, first, last in views:
        peak = max(runs[0].trace.demand[first:last])
        top = max([peak, *(max(run.requested[first:last]) * run.model.capacity for run in runs)]) * 1.05 or 1.0
        panels = "".join(f"<div>{panel(run, first, last, top)}</div>" for run in runs)
        sections.append(f"<h2>{html.escape(label)}</h2><div class='grid'>{panels}</div>")
    legend = (
        "<p class='legend'><span style='color:#333'>&#9632; demand (req/s)</span> "
        "<span style='color:#1f77b4'>&#9632; capacity of ready pods</span> "
        "<span style='color:#9ecae1'>&#9632; capacity requested (ready or starting)</span> "
        "<span style='color:#d62728'>&#9632; SLO violation</span>. "
        f"Long views show, per bucket of up to {-(-n // POINTS)} minutes, the peak demand, the lowest ready "
        "capacity and the highest requested capacity.</p>"
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:1.5em}pre{font-size:13px}"
        ".grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(650px,1fr));gap:8px}"
        ".legend span{margin-right:1em}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><pre>{html.escape(table(runs))}</pre>{legend}{''.join(sections)}"
        "</body></html>\n"
    )
