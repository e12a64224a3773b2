"""Decision quality (docs/benchmark.md section 1) over every trace in a folder, with its check.

For each `*.csv` trace under the folder (its sub-folders are its sources): the replay of Accord's
default policy (or `--policy FILE`) beside hpa@0.5..0.8, the oracle and the static count, the
comparison table, a recomputation of every figure from the per-tick CSVs that must agree with the
JSON summary, and the goal's verdict against hpa@0.7 (`accord.sim.verdict`: fewer SLO-violation
minutes or both none, fewer pod-hours, no more scaling actions, or at most one an hour where the
HPA barely moves). Then a table of every trace, a summary per source, and, with `--tune`, the
generalisation check: for every trace, the knobs' setting chosen on the other traces (and on the
other sources' traces), judged on it. Outputs go to `--out/<trace name>/` (per-policy CSVs,
summary.json, plot.html).

    python benchmarks/replay.py [TRACES_DIR] [--out DIR] [--policy FILE] [--tune KNOB=V1,V2 ...] [--capacity 100 ...]

A knob is `policy:PATH` (in the NegotiationPolicy's spec) or `agent/NAME:PATH` (in that Agent's
spec), PATH dotted in the resources' own spelling: `--tune policy:bounds.scaleDownTolerance=0,0.1`.

The folder defaults to the NAB samples bundled in benchmarks/traces (see its README and licence).
Exit status 1 if a check fails, or a trace misses the goal (with the default policy, or with the
setting chosen on the other traces; `--no-verdict` reports without failing on the goal).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from accord.sim.cli import ACCORD, simulate, stderr_progress
from accord.sim.model import Figures, ReplayModel, replay
from accord.sim.negotiated import Negotiated, PolicyFileError, default_documents, parse_documents
from accord.sim.report import check, table
from accord.sim.trace import load_trace
from accord.sim.verdict import HeldOut, Judged, leave_one_out, misses

DEFAULT_TRACES = Path(__file__).resolve().parent / "traces"
BASELINE = "hpa@0.7"
AS_GIVEN = "as given"


def knob(text: str) -> tuple[str, list[Any]]:
    """`policy:bounds.x=1,2` -> ("policy:bounds.x", [1, 2]), the values read as YAML scalars."""
    name, sep, values = text.partition("=")
    if not sep or ":" not in name or not values:
        raise argparse.ArgumentTypeError(f"expected policy:PATH=V1,V2 or agent/NAME:PATH=V1,V2, not {text!r}")
    return name, [yaml.safe_load(v) for v in values.split(",")]


def tuned(documents: Sequence[dict[str, Any]], setting: Sequence[tuple[str, Any]]) -> list[dict[str, Any]]:
    """A copy of the documents with each knob of `setting` set."""
    changed = copy.deepcopy(list(documents))
    for name, value in setting:
        where, _, path = name.partition(":")
        kind, _, who = where.partition("/")
        if kind == "policy":
            found = [d for d in changed if d.get("kind") == "NegotiationPolicy"]
        elif kind == "agent":
            found = [d for d in changed if d.get("kind") == "Agent" and (d.get("metadata") or {}).get("name") == who]
        else:
            raise PolicyFileError(f"{name}: a knob starts with policy: or agent/NAME:")
        if not found:
            raise PolicyFileError(f"{name}: no such document in the policy")
        node = found[0].setdefault("spec", {})
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return changed


def settings_of(knobs: Sequence[tuple[str, list[Any]]]) -> list[tuple[str, list[tuple[str, Any]]]]:
    """Every combination of the knobs' values, each with its label; none without knobs."""
    if not knobs:
        return []
    found = []
    for values in itertools.product(*(v for _, v in knobs)):
        setting = [(name, value) for (name, _), value in zip(knobs, values, strict=True)]
        found.append((", ".join(f"{n.partition(':')[2]}={v}" for n, v in setting), setting))
    return found


def cells(f: Figures) -> list[str]:
    return [f"{f.pod_hours:,.1f}", f"{f.slo_minutes:,}", f"{f.unserved:,.0f}", f"{f.actions:,}"]


def grid(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def overview(judged: Sequence[Judged]) -> str:
    """Every trace: pod-hours, violation minutes, unserved requests and actions of accord, hpa@0.7, oracle."""
    head = ["trace", "source"]
    for who in (ACCORD, BASELINE, "oracle"):
        head += [f"{who} pod-h", "viol min", "unserved", "actions"]
    rows = [[*head, "verdict"]]
    for j in judged:
        f = j.settings[AS_GIVEN]
        missed = misses(f, j.baseline)
        rows.append(
            [j.trace, j.source, *cells(f), *cells(j.baseline), *cells(j.oracle), "meets" if not missed else "MISSES"]
        )
    return grid(rows)


def by_source(judged: Sequence[Judged], setting: str = AS_GIVEN) -> str:
    rows = [["source", "traces", "goal met", f"median {ACCORD}/oracle", f"median {BASELINE}/oracle"]]
    for source in sorted({j.source for j in judged}):
        mine = [j for j in judged if j.source == source]
        met = sum(not misses(j.settings[setting], j.baseline) for j in mine)
        ours = [r for j in mine if (r := j.settings[setting].ratio(j.oracle)) is not None]
        theirs = [r for j in mine if (r := j.baseline.ratio(j.oracle)) is not None]
        rows.append(
            [
                source,
                str(len(mine)),
                f"{met}/{len(mine)}",
                f"{statistics.median(ours):.3f}" if ours else "-",
                f"{statistics.median(theirs):.3f}" if theirs else "-",
            ]
        )
    return grid(rows)


def held_out(found: Sequence[HeldOut], judged: Sequence[Judged]) -> str:
    head = ["trace", "source", "setting chosen on the others", "pod-h", "viol min", "unserved", "actions"]
    rows = [[*head, "ratio to oracle", "verdict"]]
    for h, j in zip(found, judged, strict=True):
        ratio = h.figures.ratio(j.oracle)
        verdict = "meets" if not h.misses else "MISSES: " + "; ".join(h.misses)
        rows.append([h.trace, h.source, h.chosen, *cells(h.figures), "-" if ratio is None else f"{ratio:.3f}", verdict])
    return grid(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument(
        "traces",
        nargs="?",
        type=Path,
        help="folder of NAB-format CSV traces, its sub-folders the sources (default: benchmarks/traces)",
    )
    parser.add_argument("--out", type=Path, default=Path("replay-out"), help="output folder (default: replay-out)")
    parser.add_argument("--policy", type=Path, help="YAML with Agents and one NegotiationPolicy")
    parser.add_argument(
        "--tune",
        type=knob,
        action="append",
        default=[],
        metavar="KNOB=V1,V2",
        help="a knob and the values to choose from on the other traces (repeatable: every combination)",
    )
    parser.add_argument("--capacity", type=float, default=100.0)
    parser.add_argument("--peak-pods", type=float, default=20.0)
    parser.add_argument("--startup", type=int, default=2)
    parser.add_argument("--slo", type=float, default=0.85)
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--no-verdict", action="store_true", help="do not fail when a trace misses the goal")
    args = parser.parse_args(argv)
    folder = args.traces or DEFAULT_TRACES
    traces = sorted(folder.rglob("*.csv"))
    if not traces:
        print(f"no *.csv traces in {folder}", file=sys.stderr)
        return 2
    model = ReplayModel(capacity=args.capacity, peak_pods=args.peak_pods, startup=args.startup, slo=args.slo)
    try:
        documents = list(yaml.safe_load_all(args.policy.read_text())) if args.policy else default_documents(model)
        accord = parse_documents(documents, origin=str(args.policy or "the default replay policy"))
        variants = [(label, parse_documents(tuned(documents, s), origin=label)) for label, s in settings_of(args.tune)]
    except (PolicyFileError, OSError, yaml.YAMLError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    source = str(args.policy) if args.policy else "default"
    progress = None if args.quiet else stderr_progress()
    failures = 0
    judged: list[Judged] = []
    for path in traces:
        started = time.perf_counter()
        trace = load_trace(path, peak_pods=model.peak_pods, capacity=model.capacity)
        out = args.out / path.relative_to(folder).with_suffix("")
        print(f"replaying {trace.name}: {len(trace):,} ticks", file=sys.stderr, flush=True)
        done = simulate(trace, model, out=out, accord=accord, policy_source=source, progress=progress)
        figures = {run.policy: run.figures for run in done.runs}
        problems = check(out)
        missed = misses(figures[ACCORD], figures[BASELINE])
        tried = {AS_GIVEN: figures[ACCORD]}
        for label, (spec, agents) in variants:
            print(f"  with {label}", file=sys.stderr, flush=True)
            policy = Negotiated(policy=spec, agents=agents, model=model, workload=trace.name, name=ACCORD)
            tried[label] = replay(trace, policy, model, progress=progress).figures
        group = str(path.parent.relative_to(folder)) if path.parent != folder else folder.name
        judged.append(Judged(trace.name, group, tried, figures[BASELINE], figures["oracle"]))
        print(f"\n## {trace.name} ({len(trace):,} one-minute ticks, {time.perf_counter() - started:.0f}s)\n")
        print(table(done.runs))
        print(
            f"\ncheck against {out}/*.csv: "
            + ("figures agree" if not problems else "; ".join(str(p) for p in problems))
        )
        print(f"goal against {BASELINE}: " + ("met" if not missed else "MISSED: " + "; ".join(missed)))
        if variants:
            rows = [["accord with", "pod-hours", "SLO-violation min", "unserved requests", "scaling actions", "goal"]]
            for label, f in tried.items():
                rows.append([label, *cells(f), "met" if not misses(f, figures[BASELINE]) else "missed"])
            print("\n" + grid(rows))
        failures += bool(problems) + (bool(missed) and not args.no_verdict)
    print(f"\n## Every trace ({ACCORD}: {source})\n")
    print(overview(judged))
    print("\n## By source\n")
    print(by_source(judged))
    ratios = [r for j in judged if (r := j.settings[AS_GIVEN].ratio(j.oracle)) is not None]
    ours = sum(j.settings[AS_GIVEN].slo_minutes for j in judged)
    theirs = sum(j.baseline.slo_minutes for j in judged)
    if ratios:
        print(
            f"\nheadline: median pod-hours {statistics.median(ratios):.3f}x the oracle's; "
            f"SLO-violation minutes {ours:,} against {BASELINE}'s {theirs:,}"
        )
    if variants:
        labels = [AS_GIVEN, *(label for label, _ in variants)]
        for title, grouped in (("leave one trace out", False), ("leave one source out", True)):
            if grouped and len({j.source for j in judged}) < 2:
                continue
            found = leave_one_out(judged, labels, by_source=grouped)
            print(f"\n## Generalisation: {title} (settings chosen on the other traces, judged on this one)\n")
            print(held_out(found, judged))
            failures += sum(bool(h.misses) for h in found) if not args.no_verdict else 0
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
