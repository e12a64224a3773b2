"""Decision quality (docs/benchmark.md section 1) over every trace in a folder, with its check.

For each `*.csv` trace: the replay of Accord's default policy (or `--policy FILE`) beside
hpa@0.5..0.8, the oracle and the static count, the comparison table, and a recomputation of
every figure from the per-tick CSVs that must agree with the JSON summary. Outputs go to
`--out/<trace name>/` (per-policy CSVs, summary.json, plot.html).

    python benchmarks/replay.py [TRACES_DIR] [--out DIR] [--policy FILE] [--capacity 100 ...]

The folder defaults to the NAB samples bundled in benchmarks/traces (see its README and licence).
Exit status 1 if a check fails or Accord does not beat hpa@0.7 on both SLO-violation minutes and
pod-hours (the target; `--no-verdict` reports without failing on it).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from accord.sim.cli import ACCORD, simulate, stderr_progress
from accord.sim.model import Figures, ReplayModel
from accord.sim.negotiated import default_policy, load_policy_file
from accord.sim.report import check, table
from accord.sim.trace import load_trace

DEFAULT_TRACES = Path(__file__).resolve().parent / "traces"
BASELINE = "hpa@0.7"


def beats(accord: Figures, baseline: Figures) -> bool:
    """Fewer pod-hours, and fewer SLO-violation minutes (or none where the baseline has none)."""
    fewer_violations = accord.slo_minutes < baseline.slo_minutes or accord.slo_minutes == baseline.slo_minutes == 0
    return accord.pod_hours < baseline.pod_hours and fewer_violations


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "traces",
        nargs="?",
        type=Path,
        help="folder of NAB-format CSV traces (default: benchmarks/traces, the bundled samples)",
    )
    parser.add_argument("--out", type=Path, default=Path("replay-out"), help="output folder (default: replay-out)")
    parser.add_argument("--policy", type=Path, help="YAML with Agents and one NegotiationPolicy")
    parser.add_argument("--capacity", type=float, default=100.0)
    parser.add_argument("--peak-pods", type=float, default=20.0)
    parser.add_argument("--startup", type=int, default=2)
    parser.add_argument("--slo", type=float, default=0.85)
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--no-verdict", action="store_true", help="do not fail when Accord does not beat hpa@0.7")
    args = parser.parse_args(argv)
    folder = args.traces or DEFAULT_TRACES
    traces = sorted(folder.glob("*.csv"))
    if not traces:
        print(f"no *.csv traces in {folder}", file=sys.stderr)
        return 2
    model = ReplayModel(capacity=args.capacity, peak_pods=args.peak_pods, startup=args.startup, slo=args.slo)
    accord = load_policy_file(args.policy) if args.policy else default_policy(model)
    source = str(args.policy) if args.policy else "default"
    failures = 0
    for path in traces:
        started = time.perf_counter()
        trace = load_trace(path, peak_pods=model.peak_pods, capacity=model.capacity)
        out = args.out / path.stem
        print(f"replaying {trace.name}: {len(trace):,} ticks", file=sys.stderr, flush=True)
        done = simulate(
            trace,
            model,
            out=out,
            accord=accord,
            policy_source=source,
            progress=None if args.quiet else stderr_progress(),
        )
        figures = {run.policy: run.figures for run in done.runs}
        problems = check(out)
        verdict = beats(figures[ACCORD], figures[BASELINE])
        print(f"\n## {trace.name} ({len(trace):,} one-minute ticks, {time.perf_counter() - started:.0f}s)\n")
        print(table(done.runs))
        print(
            f"\ncheck against {out}/*.csv: "
            + ("figures agree" if not problems else "; ".join(str(p) for p in problems))
        )
        print(f"accord beats {BASELINE} on both SLO-violation minutes and pod-hours: {'yes' if verdict else 'NO'}")
        failures += bool(problems) + (not verdict and not args.no_verdict)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
