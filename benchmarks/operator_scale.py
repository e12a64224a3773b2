"""Operator at scale on the local control plane (docs/benchmark.md section 3).

N Deployments (default 1,000) under one policy, the operator running as `accord run` does, with
Prometheus and the workload emulator. Prints: seconds from the policy's creation until every
workload has a decision recorded; seconds until every change is visible in the Deployments; the
operator's peak RSS; Kubernetes API requests per decision (the operator's own client, from its
/metrics; kopf's watch streams are not counted); Prometheus queries per policy round; and the
latency from a person's approval annotation to the patched workload (median and p99 over at least
50 approvals).

    python benchmarks/operator_scale.py [--workloads 1000] [--approvals 60]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "e2e"))

from accord_dev.cluster import tools  # noqa: E402
from accord_dev.cluster.emulator import WorkloadEmulator  # noqa: E402
from accord_dev.cluster.local import LocalControlPlane  # noqa: E402
from accord_dev.cluster.prometheus import PrometheusServer  # noqa: E402
from operator_process import OperatorProcess  # noqa: E402

QUERY = 'sum(accord_emulator_requests_per_second{namespace="$namespace", deployment="$workload"})'


def manifests(namespace: str, count: int, *, approval: bool) -> list[dict[str, Any]]:
    def agent(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "accord.dev/v1alpha1",
            "kind": "Agent",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }

    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        agent(
            "performance",
            {
                "type": "performance",
                "weight": 2,
                "performance": {
                    "capacityPerPod": 100,
                    "startupSeconds": 10,
                    "historySeconds": 120,
                    "seasonality": False,
                    "demandQuery": QUERY,
                },
            },
        ),
        agent("cost", {"type": "cost"}),
        agent("security", {"type": "security", "veto": True}),
        agent("compliance", {"type": "compliance", "veto": True}),
    ]
    for i in range(count):
        name = f"w{i:04d}"
        docs.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": namespace, "labels": {"app": name, "bench": "true"}},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]},
                    },
                },
            }
        )
    return docs


def policy(namespace: str, *, approval: bool) -> dict[str, Any]:
    rules: dict[str, Any] = {"minConfidence": 0.2}
    if approval:
        rules["requireApproval"] = {"stepReplicasAbove": 0}
    return {
        "apiVersion": "accord.dev/v1alpha1",
        "kind": "NegotiationPolicy",
        "metadata": {"name": "bench", "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"bench": "true"}},
            "agents": [{"name": n} for n in ("performance", "cost", "security", "compliance")],
            "bounds": {"minReplicas": 1, "maxReplicas": 10, "scaleDownStabilizationSeconds": 600},
            "rules": rules,
            "intervalSeconds": 30,
            "approval": {"approvers": ["admin"], "approverGroups": ["system:masters"], "expirySeconds": 3600},
        },
    }


def negotiations(kubeconfig: Path, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(
        tools.run_kubectl(kubeconfig, "get", "negotiations", "-n", namespace, "-o", "json")
    )["items"]
    return items


def replicas(kubeconfig: Path, namespace: str) -> dict[str, int]:
    items = json.loads(tools.run_kubectl(kubeconfig, "get", "deployments", "-n", namespace, "-o", "json"))["items"]
    return {d["metadata"]["name"]: int(d["spec"]["replicas"]) for d in items}


def wait(probe: Any, timeout: float, what: str, interval: float = 1.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if probe():
            return time.monotonic() - start
        time.sleep(interval)
    raise TimeoutError(f"{what} did not happen within {timeout}s")


def memory_mb(pid: int, field: str = "VmHWM") -> float:
    """A process's memory figure from /proc in MB: VmHWM (its peak resident set) or VmRSS (now)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def install_crds(kubeconfig: Path) -> None:
    tools.run_kubectl(kubeconfig, "apply", "-f", str(REPO / "crds"))
    for crd in ("agents", "negotiationpolicies", "negotiations"):
        tools.run_kubectl(kubeconfig, "wait", "--for=condition=Established", f"crd/{crd}.accord.dev", "--timeout=60s")


def metric_sum(text: str, name: str) -> float:
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--approvals", type=int, default=60)
    parser.add_argument("--timeout", type=float, default=1200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="accord-bench-"))
    with LocalControlPlane() as plane:
        kc = Path(plane.kubeconfig)
        install_crds(kc)
        from kubernetes import config

        api = config.new_client_from_config(config_file=str(kc))  # type: ignore[no-untyped-call]
        with (
            WorkloadEmulator(api_client=api, poll_interval=2.0) as emulator,
            PrometheusServer(targets=[emulator.target], scrape_interval="2s") as prom,
        ):
            scale_ns, approve_ns = "bench", "bench-approvals"
            print(f"creating {args.workloads} + {args.approvals} Deployments ...", flush=True)
            for ns, count, approval in ((scale_ns, args.workloads, False), (approve_ns, args.approvals, True)):
                tools.run_kubectl(
                    kc, "apply", "-f", "-", input_=yaml.safe_dump_all(manifests(ns, count, approval=approval))
                )
                for i in range(count):
                    # 100 req/s at 70% of 100 req/s per pod: every workload needs 2 replicas, not 1
                    emulator.add_workload(ns, f"w{i:04d}", demand=100.0)
            time.sleep(10)  # a few scrapes, so that every workload has demand history
            operator = OperatorProcess(kubeconfig=kc, prometheus_url=prom.url, log_path=work / "operator.log")
            operator.start()
            try:
                created = time.monotonic()
                tools.run_kubectl(kc, "apply", "-f", "-", input_=yaml.safe_dump(policy(scale_ns, approval=False)))
                decided = wait(
                    lambda: len({n["spec"]["workload"]["name"] for n in negotiations(kc, scale_ns)}) >= args.workloads,
                    args.timeout,
                    "a decision for every workload",
                    2.0,
                )
                visible = wait(
                    lambda: all(r >= 2 for r in replicas(kc, scale_ns).values()),
                    args.timeout,
                    "every change in the Deployments",
                    2.0,
                )
                visible = max(visible, time.monotonic() - created)
                metrics = operator.metrics()
                requests = metric_sum(metrics, "accord_api_requests_total")
                decisions = len(negotiations(kc, scale_ns))
                print(f"\n== {args.workloads} Deployments under one policy")
                print(f"policy created -> every workload has a recorded decision: {decided:8.1f} s")
                print(f"policy created -> every change visible in the Deployments: {visible:8.1f} s")
                print(
                    f"API requests per decision (operator client): {requests / max(1, decisions):8.1f} "
                    f"({requests:.0f} requests, {decisions} decisions)"
                )
                queries, rounds = (
                    metric_sum(metrics, "accord_prometheus_queries_total"),
                    metric_sum(metrics, "accord_rounds_total"),
                )
                print(
                    f"Prometheus queries per round: {queries / max(1.0, rounds):8.1f} "
                    f"({queries:.0f} queries, {rounds:.0f} rounds of {args.workloads} workloads)"
                )

                tools.run_kubectl(kc, "apply", "-f", "-", input_=yaml.safe_dump(policy(approve_ns, approval=True)))
                wait(
                    lambda: (
                        sum(
                            1
                            for n in negotiations(kc, approve_ns)
                            if (n.get("status") or {}).get("phase") == "PendingApproval"
                        )
                        >= args.approvals
                    ),
                    args.timeout,
                    "every approval to be pending",
                    2.0,
                )
                pending = [
                    n for n in negotiations(kc, approve_ns) if (n.get("status") or {}).get("phase") == "PendingApproval"
                ]
                latencies = []
                for n in pending:
                    name = n["metadata"]["name"]
                    workload = n["spec"]["workload"]["name"]
                    target = n["spec"]["outcome"]["target"]["replicas"]
                    start = time.monotonic()
                    tools.run_kubectl(
                        kc, "annotate", "negotiation", "-n", approve_ns, name, "accord.dev/approval=approved"
                    )
                    wait(
                        lambda w=workload, t=target: (
                            json.loads(tools.run_kubectl(kc, "get", "deployment", "-n", approve_ns, w, "-o", "json"))[
                                "spec"
                            ]["replicas"]
                            == t
                        ),
                        60,
                        f"{workload} patched",
                        0.05,
                    )
                    latencies.append(time.monotonic() - start)
                latencies.sort()
                p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
                print(
                    f"approval annotation -> patched workload over {len(latencies)} approvals: "
                    f"median {statistics.median(latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms "
                    "(includes one kubectl call to annotate)"
                )
                print(f"operator peak RSS: {memory_mb(operator.process.pid) if operator.process else 0:.0f} MB")
            finally:
                operator.stop()
    print(f"operator log: {work / 'operator.log'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
