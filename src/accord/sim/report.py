"""What a replay leaves behind: the comparison table, per-tick CSVs, a JSON summary, and their check (sim layer).

The CSV of a policy holds `tick,demand,requested,ready` with demand written exactly (shortest
round-trip form), so the figures recomputed from it (`model.score`) equal those kept while
replaying; `check` does that recomputation for every policy of a replay's output folder.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accord.sim.model import Figures, ReplayModel, Run, score

CSV_HEADER = ("tick", "demand", "requested", "ready")
SUMMARY = "summary.json"


def figures_row(name: str, figures: Figures, oracle: Figures | None) -> list[str]:
    ratio = figures.ratio(oracle) if oracle is not None else None
    return [
        name,
        f"{figures.pod_hours:,.1f}",
        f"{figures.slo_minutes:,}",
        f"{figures.unserved:,.0f}",
        f"{figures.actions:,}",
        "-" if ratio is None else f"{ratio:.3f}",
    ]


def table(runs: Sequence[Run]) -> str:
    """The comparison table: one row per policy, pod-hours relative to the oracle's."""
    oracle = next((r.figures for r in runs if r.policy == "oracle"), None)
    header = ["policy", "pod-hours", "SLO-violation min", "unserved requests", "scaling actions", "ratio to oracle"]
    rows = [header, *(figures_row(r.policy, r.figures, oracle) for r in runs)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def csv_name(policy: str) -> str:
    return policy.replace("@", "_at_").replace("/", "_") + ".csv"


def write_csv(path: Path, run: Run) -> None:
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(CSV_HEADER)
        for tick, (demand, requested, ready) in enumerate(zip(run.trace.demand, run.requested, run.ready, strict=True)):
            out.writerow((tick, repr(demand), requested, ready))


def read_csv(path: Path) -> tuple[list[float], list[int], list[int]]:
    """Demand, requested and ready per tick; ticks must run 0, 1, 2, ... with no gap."""
    demand: list[float] = []
    requested: list[int] = []
    ready: list[int] = []
    with path.open(newline="") as handle:
        rows = csv.reader(handle)
        header = tuple(next(rows, ()))
        if header != CSV_HEADER:
            raise ValueError(f"{path}: expected the header {','.join(CSV_HEADER)}, got {','.join(header)}")
        for row in rows:
            if int(row[0]) != len(demand):
                raise ValueError(f"{path}: tick {row[0]} where {len(demand)} was expected")
            demand.append(float(row[1]))
            requested.append(int(row[2]))
            ready.append(int(row[3]))
    return demand, requested, ready


def model_dict(model: ReplayModel) -> dict[str, Any]:
    return {
        "capacity": model.capacity,
        "peak_pods": model.peak_pods,
        "startup": model.startup,
        "slo": model.slo,
        "min_replicas": model.min_replicas,
        "max_replicas": model.max_replicas,
        "initial_utilisation": model.initial_utilisation,
    }


def summary(runs: Sequence[Run], *, policy_source: str) -> dict[str, Any]:
    """The JSON summary of one trace's replay."""
    if not runs:
        raise ValueError("no runs to summarise")
    first = runs[0]
    oracle = next((r.figures for r in runs if r.policy == "oracle"), None)
    return {
        "trace": first.trace.name,
        "start": first.trace.start,
        "ticks": len(first.trace),
        "samples": first.trace.samples,
        "scale": first.trace.scale,
        "initial_replicas": first.initial,
        "model": model_dict(first.model),
        "accord_policy": policy_source,
        "policies": [
            {
                "policy": r.policy,
                "csv": csv_name(r.policy),
                "pod_hours": r.figures.pod_hours,
                "slo_violation_minutes": r.figures.slo_minutes,
                "unserved_requests": r.figures.unserved,
                "scaling_actions": r.figures.actions,
                "ratio_to_oracle": r.figures.ratio(oracle) if oracle is not None else None,
                "replay_seconds": round(r.seconds, 3),
                **({"notes": r.notes} if r.notes else {}),
            }
            for r in runs
        ],
    }


def write_outputs(out: Path, runs: Sequence[Run], *, policy_source: str) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    for run in runs:
        write_csv(out / csv_name(run.policy), run)
    data = summary(runs, policy_source=policy_source)
    (out / SUMMARY).write_text(json.dumps(data, indent=2) + "\n")
    return data


@dataclass(frozen=True, slots=True)
class Mismatch:
    policy: str
    figure: str
    summary: float
    recomputed: float

    def __str__(self) -> str:
        return f"{self.policy}: {self.figure} is {self.summary} in the summary, {self.recomputed} from the CSV"


def check(out: Path) -> list[Mismatch]:
    """Recompute every policy's figures from its CSV and compare them with the JSON summary."""
    data = json.loads((out / SUMMARY).read_text())
    model = ReplayModel(**data["model"])
    problems: list[Mismatch] = []
    for entry in data["policies"]:
        demand, requested, ready = read_csv(out / entry["csv"])
        again = score(demand, requested, ready, model=model)
        for figure, recomputed in (
            ("pod_hours", again.pod_hours),
            ("slo_violation_minutes", again.slo_minutes),
            ("unserved_requests", again.unserved),
            ("scaling_actions", again.actions),
        ):
            kept = entry[figure]
            if not math.isclose(kept, recomputed, rel_tol=1e-9, abs_tol=1e-6):
                problems.append(Mismatch(entry["policy"], figure, kept, recomputed))
    return problems
