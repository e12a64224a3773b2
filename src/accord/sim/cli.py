"""`accord simulate`: replay a demand trace through Accord and the baselines (sim layer, the command's front end).

    accord simulate --trace FILE [--policy FILE] [--out DIR] [--capacity 100 --peak-pods 20 --startup 2 --slo 0.85]
    accord simulate --prometheus URL --query PROMQL --start 2025-01-01T00:00 --end now [...]
    accord simulate --print-policy > policy.yaml      # the default policy, to edit and pass to --policy
    accord simulate --trace FILE --policy prod.yaml --approve-after 15   # a person approves after 15 min

Prints the comparison table, and writes into --out one CSV per policy (tick,demand,requested,ready),
summary.json and plot.html. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from accord.metrics.prometheus import MetricsUnavailable, PrometheusSource
from accord.models.agent import AgentSpec
from accord.models.policy import NegotiationPolicySpec
from accord.sim.baselines import HPA_TARGETS, Hpa, Oracle, Static
from accord.sim.model import Policy, ReplayModel, Run, replay
from accord.sim.negotiated import (
    Negotiated,
    PolicyFileError,
    default_policy,
    default_policy_yaml,
    load_policy_file,
)
from accord.sim.plot import page
from accord.sim.recorded import fetch_history, parse_moment
from accord.sim.report import check, table, write_outputs
from accord.sim.trace import Trace, TraceError, load_trace, make_trace

ACCORD = "accord"


@dataclass(frozen=True, slots=True)
class Replayed:
    trace: Trace
    runs: tuple[Run, ...]
    summary: dict[str, Any]
    out: Path


def policies(
    trace: Trace,
    model: ReplayModel,
    *,
    accord: tuple[NegotiationPolicySpec, dict[str, AgentSpec]],
    hpa_targets: Sequence[float] = HPA_TARGETS,
    approve_after: float | None = None,
) -> list[Policy]:
    """Accord first, then the HPA at each target, the oracle and the static count."""
    spec, agents = accord
    made: list[Policy] = [
        Negotiated(
            policy=spec, agents=agents, model=model, workload=trace.name, name=ACCORD, approve_after=approve_after
        )
    ]
    made.extend(Hpa(target, model) for target in hpa_targets)
    made.append(Oracle(trace, model))
    made.append(Static(trace, model))
    return made


def stderr_progress(stream: TextIO | None = None) -> Callable[[str, int, int], None]:
    """Progress lines (each tenth of a long replay, the end of a short one), to `stream` or stderr."""
    started: dict[str, float] = {}

    def report(policy: str, done: int, total: int) -> None:
        began = started.setdefault(policy, time.perf_counter())
        if total < 10_000 and done < total:
            return  # a short replay is over in moments: only its end is worth a line
        print(
            f"  {policy}: {100 * done // total:3d}% ({done:,}/{total:,} ticks, {time.perf_counter() - began:.0f}s)",
            file=stream or sys.stderr,
            flush=True,
        )

    return report


def simulate(
    trace: Trace,
    model: ReplayModel,
    *,
    out: Path,
    accord: tuple[NegotiationPolicySpec, dict[str, AgentSpec]],
    policy_source: str,
    hpa_targets: Sequence[float] = HPA_TARGETS,
    progress: Callable[[str, int, int], None] | None = None,
    approve_after: float | None = None,
) -> Replayed:
    """Replay every policy over `trace`, write the outputs to `out`, and return the runs.

    `approve_after`: seconds after which a person approves a decision that waits for one (None: never).
    """
    runs = tuple(
        replay(trace, policy, model, progress=progress)
        for policy in policies(trace, model, accord=accord, hpa_targets=hpa_targets, approve_after=approve_after)
    )
    summary = write_outputs(out, runs, policy_source=policy_source)
    (out / "plot.html").write_text(page(runs, title=f"Accord replay: {trace.name}"))
    return Replayed(trace, runs, summary, out)


def model_from(args: argparse.Namespace) -> ReplayModel:
    return ReplayModel(
        capacity=args.capacity,
        peak_pods=args.peak_pods,
        startup=args.startup,
        slo=args.slo,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
    )


def trace_from(args: argparse.Namespace, model: ReplayModel) -> Trace:
    scale = not args.no_scale
    if args.trace is not None:
        return load_trace(Path(args.trace), peak_pods=model.peak_pods, capacity=model.capacity, scale=scale)
    now = time.time()
    start = parse_moment(args.start, now=now)
    end = parse_moment(args.end, now=now)
    samples = fetch_history(PrometheusSource(args.prometheus, timeout=args.timeout), args.query, start=start, end=end)
    return make_trace("prometheus", samples, peak_pods=model.peak_pods, capacity=model.capacity, scale=scale)


def cmd_simulate(args: argparse.Namespace) -> int:
    try:
        model = model_from(args)
    except ValueError as exc:
        print(f"accord simulate: {exc}", file=sys.stderr)
        return 2
    if args.print_policy:
        print(default_policy_yaml(model), end="")
        return 0
    if args.approve_after is not None and not 0 <= args.approve_after < float("inf"):
        print(f"accord simulate: --approve-after must be minutes >= 0, not {args.approve_after}", file=sys.stderr)
        return 2
    if (args.trace is None) == (args.prometheus is None):
        print("accord simulate: give either --trace FILE or --prometheus URL --query PROMQL", file=sys.stderr)
        return 2
    if args.prometheus is not None and not (args.query and args.start):
        print("accord simulate: --prometheus needs --query and --start (and --end, default now)", file=sys.stderr)
        return 2
    try:
        accord = load_policy_file(Path(args.policy)) if args.policy else default_policy(model)
        trace = trace_from(args, model)
    except (PolicyFileError, TraceError, OSError) as exc:
        print(f"accord simulate: {exc}", file=sys.stderr)
        return 2
    except MetricsUnavailable as exc:
        print(f"accord simulate: Prometheus did not answer: {exc}", file=sys.stderr)
        return 1
    out = Path(args.out)
    print(f"replaying {trace.name}: {len(trace):,} one-minute ticks into {out}/", file=sys.stderr, flush=True)
    done = simulate(
        trace,
        model,
        out=out,
        accord=accord,
        policy_source=args.policy or "default (accord simulate --print-policy)",
        hpa_targets=args.hpa,
        progress=None if args.quiet else stderr_progress(),
        approve_after=None if args.approve_after is None else args.approve_after * 60.0,
    )
    print(f"trace {trace.name}: {len(trace):,} ticks, values scaled by {trace.scale:.6g}")
    print(table(done.runs))
    problems = check(out)
    for problem in problems:
        print(f"accord simulate: {problem}", file=sys.stderr)
    return 1 if problems else 0


def add_simulate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `simulate` on the `accord` command's subparsers (an argparse `_SubParsersAction`)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="replay a demand trace through Accord and the HPA, oracle and static baselines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_argument_group("demand")
    source.add_argument("--trace", metavar="FILE", help="CSV with a header, then timestamp,value rows (NAB format)")
    source.add_argument("--prometheus", metavar="URL", help="replay history recorded by this Prometheus")
    source.add_argument("--query", metavar="PROMQL", help="with --prometheus: the demand in requests per second")
    source.add_argument("--start", help="with --prometheus: unix seconds, ISO 8601, or now-7d")
    source.add_argument("--end", default="now", help="with --prometheus: as --start (default: now)")
    source.add_argument("--timeout", type=float, default=30.0, help="with --prometheus: seconds per request")
    source.add_argument(
        "--no-scale", action="store_true", help="replay the values as they are instead of scaling p99 to peak pods"
    )
    parser.add_argument("--policy", metavar="FILE", help="YAML with Agents and one NegotiationPolicy (multi-document)")
    parser.add_argument("--print-policy", action="store_true", help="print the default replay policy as YAML and exit")
    parser.add_argument(
        "--approve-after",
        type=float,
        metavar="MINUTES",
        help="a person approves each decision that waits for approval this many minutes after it is made "
        "(default: nobody approves, so such decisions are never applied)",
    )
    parser.add_argument("--out", default="simulation", metavar="DIR", help="output folder (default: simulation)")
    model = parser.add_argument_group("model (docs/benchmark.md section 1)")
    model.add_argument("--capacity", type=float, default=100.0, help="requests/s one ready pod serves (100)")
    model.add_argument("--peak-pods", type=float, default=20.0, help="pods the trace's p99 needs (20)")
    model.add_argument("--startup", type=int, default=2, help="minutes from asking for a pod to its serving (2)")
    model.add_argument("--slo", type=float, default=0.85, help="utilisation above which a minute violates (0.85)")
    model.add_argument("--min-replicas", type=int, default=1)
    model.add_argument("--max-replicas", type=int, default=200)
    parser.add_argument(
        "--hpa",
        type=float,
        nargs="+",
        default=list(HPA_TARGETS),
        metavar="T",
        help="HPA target utilisations to compare with (0.5 0.6 0.7 0.8)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.set_defaults(func=cmd_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `simulate` alone, as `python -m accord.sim.cli`."""
    parser = argparse.ArgumentParser(prog="accord")
    add_simulate_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["simulate", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
