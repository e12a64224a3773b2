"""Engine throughput (docs/benchmark.md section 2): pure negotiation, no I/O, on one core.

N workloads (1,000 and 10,000 by default), each negotiated once by the four built-in agents
(performance, cost, security, compliance) under the default protocol, every agent with its
evidence ready (a demand series for the performance agent: the last hour and yesterday's
window, one sample a minute, as the operator would have gathered them), candidate sets of about
40. Prints workloads negotiated per second of CPU time and the peak memory.

    python benchmarks/engine.py [--workloads 1000 10000] [--repeat 3] [--profile]

The workloads are negotiated as the operator negotiates a policy's workloads: all in one call
(`negotiate_many`), with fresh inputs at every pass. The last column is what writing one
Negotiation record costs (every proposal with its utilities, the gates, the outcome), which the
operator does only for a decision that changes something or waits for a person; it is not part of
the throughput.

Timing uses process CPU time, the best of `--repeat` passes. Peak memory is reported twice: the
peak of Python allocations (tracemalloc) while the N workloads' inputs are built and negotiated
once, in an untimed pass because tracing slows allocation down; and the process's peak resident
set size (ru_maxrss) over the timed passes, interpreter and inputs included.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import random
import resource
import sys
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from accord.agents.base import Agent, Candidate, Pool, Situation
from accord.agents.forecast import DAY
from accord.metrics.evidence import Evidence, EvidenceSet, Source
from accord.models.agent import AgentSpec
from accord.models.common import Model
from accord.models.negotiation import WorkloadRef
from accord.models.policy import NegotiationPolicySpec
from accord.negotiation.candidates import generate
from accord.negotiation.engine import Case, Outcome, Seat, negotiate_many
from accord.negotiation.record import build_record
from accord.negotiation.table import seat_agents

NOW = 1_750_000_000.0
QUERY = "sum(rate(http_requests_total[2m]))"


def policy() -> NegotiationPolicySpec:
    """The default protocol (nash) and bounds wide enough that candidates are thinned to about 40."""
    return NegotiationPolicySpec.model_validate(
        {
            "agents": [{"name": "performance"}, {"name": "cost"}, {"name": "security"}, {"name": "compliance"}],
            "bounds": {"minReplicas": 1, "maxReplicas": 200, "maxStepUp": 100, "maxStepDown": 50},
            "placements": [{"name": "standard", "pricePerPodHour": 0.10}],
            "intervalSeconds": 60,
        }
    )


def agent_specs() -> dict[str, AgentSpec]:
    return {
        name: AgentSpec.model_validate(spec)
        for name, spec in {
            "performance": {"type": "performance", "weight": 2, "performance": {"capacityPerPod": 100}},
            "cost": {"type": "cost", "cost": {"defaultPricePerPodHour": 0.10}},
            "security": {"type": "security", "veto": True},
            "compliance": {"type": "compliance", "veto": True, "compliance": {"minReplicas": 2}},
        }.items()
    }


@dataclass(frozen=True, slots=True)
class Workload:
    situation: Situation
    evidence: dict[str, EvidenceSet]


def series(
    rng: random.Random, *, end: float, minutes: int, level: float, slope: float
) -> tuple[tuple[float, float], ...]:
    return tuple(
        (end - 60.0 * (minutes - 1 - i), max(0.0, level + slope * i + rng.gauss(0.0, 0.05 * level)))
        for i in range(minutes)
    )


def workloads(n: int, *, seed: int = 7) -> list[Workload]:
    """N workloads with varied demand and replica counts; each agent's evidence is ready."""
    rng = random.Random(seed)
    pools = {"standard": Pool(name="standard", price_per_pod_hour=0.10)}
    made = []
    for i in range(n):
        level = rng.uniform(100.0, 8000.0)
        replicas = max(2, min(200, round(level / 70.0 * rng.uniform(0.6, 1.4))))
        situation = Situation(
            namespace="bench",
            name=f"w{i}",
            kind="Deployment",
            labels={"app": f"w{i}"},
            current=Candidate(replicas, "standard"),
            ready_replicas=replicas,
            pools=pools,
            now=NOW,
            interval_seconds=60.0,
        )
        # What the performance agent asks for (`evidence_needed`): the last hour, and yesterday from an
        # hour and ten minutes before this time to ten minutes after the horizon, a sample a minute.
        recent = series(rng, end=NOW - 30.0, minutes=60, level=level, slope=rng.uniform(-0.01, 0.01) * level)
        yesterday = series(rng, end=NOW - DAY + 780.0, minutes=83, level=level, slope=0.0)
        demand = {
            "demand": Evidence.from_series("demand", Source.PROMETHEUS, QUERY, recent),
            "demand_day_ago": Evidence.from_series("demand_day_ago", Source.PROMETHEUS, QUERY, yesterday),
        }
        made.append(Workload(situation, {"performance": demand, "cost": {}, "security": {}, "compliance": {}}))
    return made


def negotiate_all(
    spec: NegotiationPolicySpec, seated: Sequence[tuple[Seat, Agent[Model]]], items: Sequence[Workload]
) -> list[Outcome]:
    """One round over every workload, as the operator negotiates a policy's workloads: in one batch."""
    return negotiate_many(policy=spec, cases=[Case(w.situation, w.evidence) for w in items], agents=seated)


def record_seconds(outcomes: Sequence[Outcome]) -> float:
    """CPU seconds to write one Negotiation record (every proposal, utility and gate), on average."""
    ref = WorkloadRef(kind="Deployment", namespace="bench", name="w")
    started = time.process_time()
    for o in outcomes:
        build_record(o, workload=ref, policy="bench/default", mode="enforce", now=NOW)
    return (time.process_time() - started) / len(outcomes)


def mean_candidates(
    spec: NegotiationPolicySpec, seated: Sequence[tuple[Seat, Agent[Model]]], items: Sequence[Workload]
) -> float:
    sizes = []
    for w in items[:200]:
        wishes = [x for seat, agent in seated for x in agent.wishes(w.situation, w.evidence[seat.name])]
        sizes.append(
            len(generate(bounds=spec.bounds, current=w.situation.current, placements=["standard"], wishes=wishes))
        )
    return sum(sizes) / len(sizes)


def peak_rss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def measure(n: int, repeat: int) -> dict[str, Any]:
    spec = policy()
    seated = seat_agents(spec, agent_specs()).seated
    items = workloads(n)
    negotiate_all(spec, seated, items[: min(n, 100)])  # warm caches and lazy imports
    candidates = mean_candidates(spec, seated, items)
    best = math.inf
    for _ in range(repeat):
        # A round's inputs are new objects, as in the operator: nothing an agent remembers from the
        # previous pass (it keeps the last batch's forecasts for its proposals) may be reused.
        fresh = [Workload(replace(w.situation), w.evidence) for w in items]
        gc.collect()
        started = time.process_time()
        outcomes = negotiate_all(spec, seated, fresh)
        best = min(best, time.process_time() - started)
        changed = sum(o.changes for o in outcomes)
        del fresh
    per_record = record_seconds(outcomes[:1000])
    del outcomes
    rss = peak_rss_mib()  # before tracing, whose own bookkeeping would inflate it
    del items
    gc.collect()
    tracemalloc.start()  # the workloads' inputs (situations, evidence) and one pass over them
    negotiate_all(spec, seated, workloads(n))
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "workloads": n,
        "cpu_seconds": best,
        "per_second": n / best,
        "changed": changed,
        "candidates": candidates,
        "traced_peak_mib": traced_peak / (1024 * 1024),
        "record_us": per_record * 1e6,
        "rss_peak_mib": rss,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workloads", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--repeat", type=int, default=3, help="timed passes; the best is reported")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one pass of the largest N")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, whatever the machine has
    print(
        f"{'workloads':>10} {'cpu s':>8} {'workloads/s':>12} {'candidates':>11} {'traced peak':>12} {'peak RSS':>10}"
        f" {'record µs':>10}"
    )
    for n in args.workloads:
        r = measure(n, args.repeat)
        print(
            f"{r['workloads']:>10,} {r['cpu_seconds']:>8.3f} {r['per_second']:>12,.0f} {r['candidates']:>11.1f} "
            f"{r['traced_peak_mib']:>9.1f} MiB {r['rss_peak_mib']:>6.0f} MiB {r['record_us']:>10.0f}"
        )
    if args.profile:
        import cProfile
        import pstats

        spec = policy()
        seated = seat_agents(spec, agent_specs()).seated
        items = workloads(max(args.workloads))
        profiler = cProfile.Profile()
        profiler.runcall(negotiate_all, spec, seated, items)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
