"""A long run of the operator on the local control plane: records, Events and memory over time
(docs/benchmark.md section 4).

N Deployments (default 60) under one policy renegotiated every 5 s, each with a demand that climbs
from 1 to 8 pods' worth over five minutes and falls back (a sawtooth, each workload at its own
phase), so that most rounds change some workloads. Their pods run on simulated nodes
(`accord_dev.cluster.kubelets`) and turn Ready, so scale-downs are made as on a cluster (with no
Ready pod, the observed-demand floor would hold every count). Time is accelerated where
Kubernetes lets it be: the API server keeps Events for `--event-ttl` (default 5 minutes instead of
an hour), so their plateau shows within the run. Every minute it prints the rounds and decisions so
far, the Negotiation records (in all, and the most for one workload), the Events in the namespace,
and the operator's resident memory; at the end, the figures at the start and at the end.

    python benchmarks/long_run.py [--workloads 60] [--minutes 15] [--event-ttl 5m] [--python-heap]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "e2e"))
sys.path.insert(0, str(REPO / "benchmarks"))

from accord_dev.cluster import tools  # noqa: E402
from accord_dev.cluster.emulator import WorkloadEmulator  # noqa: E402
from accord_dev.cluster.kubelets import Pool, SimulatedKubelets  # noqa: E402
from accord_dev.cluster.local import LocalControlPlane  # noqa: E402
from accord_dev.cluster.prometheus import PrometheusServer  # noqa: E402
from operator_process import OperatorProcess  # noqa: E402
from operator_scale import install_crds, manifests, memory_mb, metric_sum  # noqa: E402

INTERVAL = 5
PERIOD = 300.0  # seconds of one climb of the sawtooth
LOW, HIGH = 60.0, 560.0  # requests per second: 1 to 8 pods at 70% of 100/s


def policy(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "accord.dev/v1alpha1",
        "kind": "NegotiationPolicy",
        "metadata": {"name": "bench", "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"bench": "true"}},
            "agents": [{"name": n} for n in ("performance", "cost", "security", "compliance")],
            "bounds": {"minReplicas": 1, "maxReplicas": 10, "maxStepDown": 10, "scaleDownStabilizationSeconds": 0},
            "rules": {"minConfidence": 0.2},
            "intervalSeconds": INTERVAL,
            "historyLimit": 3,
        },
    }


def sawtooth(phase: float) -> Any:
    def demand(t: float) -> float:
        return LOW + (HIGH - LOW) * (((t + phase) % PERIOD) / PERIOD)

    return demand


def listed(kubeconfig: Path, kind: str, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(tools.run_kubectl(kubeconfig, "get", kind, "-n", namespace, "-o", "json"))[
        "items"
    ]
    return items


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", type=int, default=60)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--event-ttl", default="5m", help="the API server's --event-ttl (Kubernetes' default: 1h)")
    parser.add_argument(
        "--python-heap",
        action="store_true",
        help="also trace the operator's Python allocations (benchmarks/heap_probe) and print the bytes traced: "
        "RSS tells whether memory is flat only when the allocator gives memory back",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="accord-long-run-"))
    namespace = "bench"
    with LocalControlPlane(extra_apiserver_args=[f"--event-ttl={args.event_ttl}"]) as plane:
        kc = Path(plane.kubeconfig)
        install_crds(kc)
        from kubernetes import config

        api = config.new_client_from_config(config_file=str(kc))  # type: ignore[no-untyped-call]
        nodes = [
            Pool("bench", max(2, args.workloads * 10 // 100 + 1), {"bench-pool": "true"}, cpu="64", memory="256Gi")
        ]
        with (
            SimulatedKubelets(api, nodes, prefix="long-run-"),
            WorkloadEmulator(api_client=api, poll_interval=2.0) as emulator,
            PrometheusServer(targets=[emulator.target], scrape_interval="2s") as prom,
        ):
            print(f"creating {args.workloads} Deployments ...", flush=True)
            tools.run_kubectl(
                kc, "apply", "-f", "-", input_=yaml.safe_dump_all(manifests(namespace, args.workloads, approval=False))
            )
            for i in range(args.workloads):
                emulator.add_workload(namespace, f"w{i:04d}", demand=sawtooth(PERIOD * i / args.workloads))
            time.sleep(10)  # a few scrapes, so that every workload has demand history
            probe = work / "heap"
            heap_env = {
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(REPO / "benchmarks" / "heap_probe"), os.environ.get("PYTHONPATH")])
                ),
                "ACCORD_HEAP_PROBE": str(probe),
            }
            operator = OperatorProcess(
                kubeconfig=kc,
                prometheus_url=prom.url,
                log_path=work / "operator.log",
                webhook=False,
                extra_env=heap_env if args.python_heap else None,
            )
            operator.start()
            rows: list[tuple[float, float, float, int, int, int, float, float]] = []
            try:
                tools.run_kubectl(kc, "apply", "-f", "-", input_=yaml.safe_dump(policy(namespace)))
                started = time.monotonic()
                print(
                    f"{'minute':>6} {'rounds':>7} {'decisions':>9} {'records':>8} {'most/wl':>8} "
                    f"{'events':>7} {'RSS MB':>7} {'heap MB':>7}",
                    flush=True,
                )
                minute = 0
                while time.monotonic() - started < args.minutes * 60:
                    time.sleep(max(0.0, started + (minute + 1) * 60 - time.monotonic()))
                    minute += 1
                    metrics = operator.metrics()
                    records = listed(kc, "negotiations", namespace)
                    per = Counter(n["spec"]["workload"]["name"] for n in records)
                    events = listed(kc, "events", namespace)
                    assert operator.process is not None
                    row = (
                        minute,
                        metric_sum(metrics, "accord_rounds_total"),
                        metric_sum(metrics, "accord_decisions_total"),
                        len(records),
                        max(per.values(), default=0),
                        len(events),
                        memory_mb(operator.process.pid, "VmRSS"),
                        int(probe.read_text()) / 1e6 if probe.exists() else float("nan"),
                    )
                    rows.append(row)
                    print(
                        f"{row[0]:6.0f} {row[1]:7.0f} {row[2]:9.0f} {row[3]:8d} {row[4]:8d} {row[5]:7d} {row[6]:7.1f} "
                        f"{row[7]:7.1f}",
                        flush=True,
                    )
            finally:
                operator.stop()
            if len(rows) >= 2:
                first, last = rows[0], rows[-1]
                print(
                    f"\n== {args.workloads} workloads, {args.minutes:g} min, a round every {INTERVAL} s, "
                    f"Events kept {args.event_ttl}"
                )
                print(f"records:  {first[3]} after the first minute, {last[3]} at the end (most for one: {last[4]})")
                print(f"Events:   {first[5]} after the first minute, {last[5]} at the end")
                print(f"RSS:      {first[6]:.1f} MB after the first minute, {last[6]:.1f} MB at the end")
                if args.python_heap:
                    half = rows[len(rows) // 2]
                    print(
                        f"Python heap (traced): {first[7]:.1f} MB after the first minute, {half[7]:.1f} MB at minute "
                        f"{half[0]:.0f}, {last[7]:.1f} MB at the end"
                    )
                print(f"rounds:   {last[1]:.0f} policy rounds, {last[2]:.0f} decisions recorded or applied")
    print(f"operator log: {work / 'operator.log'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
