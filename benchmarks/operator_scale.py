"""Operator at scale on the local control plane (docs/benchmark.md section 3).

N Deployments (default 1,000) spread evenly over K namespaces `bench-0..K-1`, each namespace with
the Agents and one policy, and R operator replicas running as `accord run` does (R > 1: sharded by
namespace, `--shards K`), with Prometheus and the workload emulator. Prints: how long creating the
Deployments took; seconds from the policies' creation until every workload has a decision recorded;
seconds until every change is visible in the Deployments; each replica's peak RSS; Kubernetes API
requests per decision (the operators' own clients, summed over the replicas' /metrics; kopf's watch
streams are not counted); Prometheus queries per round (summed over the replicas: a sharded
replica's round covers only the policies of its namespaces); and the latency from a person's
approval annotation to the patched workload (median and p99 over at least 50 approvals, in a
namespace of its own; `--approvals 0` skips it).

Above 2,000 workloads (or with `--cheap-controllers`) the controller-manager runs without the
deployment and replicaset controllers: no ReplicaSets or Pods are made, and this script stands in
for the deployment controller's status (observedGeneration and every replica count = spec.replicas).

    python benchmarks/operator_scale.py [--workloads 1000] [--replicas 1] [--namespaces K] [--approvals 60]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "e2e"))

from accord_dev.cluster import tools  # noqa: E402
from accord_dev.cluster.emulator import WorkloadEmulator  # noqa: E402
from accord_dev.cluster.local import DEFAULT_CONTROLLERS, LocalControlPlane  # noqa: E402
from accord_dev.cluster.prometheus import PrometheusServer  # noqa: E402
from operator_process import OperatorProcess  # noqa: E402

QUERY = 'sum(accord_emulator_requests_per_second{namespace="$namespace", deployment="$workload"})'


def manifests(namespace: str, count: int, *, approval: bool, deployments: bool = True) -> list[dict[str, Any]]:
    """The namespace, its Agents and, unless `deployments` is False, `count` Deployments `w0000...`."""

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
    if deployments:
        docs += [deployment(namespace, i) for i in range(count)]
    return docs


def deployment(namespace: str, i: int) -> dict[str, Any]:
    name = f"w{i:04d}"
    return {
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


def wait(probe: Any, timeout: float, what: str, interval: float = 1.0, since: float | None = None) -> float:
    """Seconds from `since` (default: now) until `probe` is true, timed from just before the probe that
    found it so (a probe listing 10,000 objects takes a while itself)."""
    start = time.monotonic()
    since = start if since is None else since
    while time.monotonic() - start < timeout:
        seen = time.monotonic()
        if probe():
            return seen - since
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


def listed(api: Any, kind: str, label_selector: str = "", **extra: Any) -> Any:
    """A cluster-wide list of "negotiations" or "deployments", its JSON unparsed: the Python client's own
    models are too slow to build for 10,000 objects every few seconds."""
    from kubernetes.client import AppsV1Api, CustomObjectsApi

    if kind == "negotiations":
        return CustomObjectsApi(api).list_cluster_custom_object(
            "accord.dev", "v1alpha1", "negotiations", _preload_content=False
        )
    return AppsV1Api(api).list_deployment_for_all_namespaces(
        label_selector=label_selector, _preload_content=False, **extra
    )


def negotiations(api: Any, namespaces: set[str]) -> list[dict[str, Any]]:
    items = json.loads(listed(api, "negotiations").data)["items"]
    return [n for n in items if n["metadata"]["namespace"] in namespaces]


def replicas(api: Any, namespaces: set[str]) -> list[int]:
    return [
        int(d["spec"]["replicas"])
        for d in json.loads(listed(api, "deployments", "bench=true").data)["items"]
        if d["metadata"]["namespace"] in namespaces
    ]


class DeploymentStatus:
    """Stands in for the deployment controller when it does not run (`--cheap-controllers`): writes every
    bench Deployment's status as if its pods had all come up at once (observedGeneration = generation,
    replicas, updated, ready and available = spec.replicas), so that Accord sees settled workloads and
    completed rollouts as on a cluster whose pods start instantly."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.stopped = threading.Event()
        self.writes = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.pool = ThreadPoolExecutor(4)

    def __enter__(self) -> DeploymentStatus:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _write(self, namespace: str, name: str, generation: int, count: int) -> None:
        from kubernetes.client import AppsV1Api

        status = {"observedGeneration": generation, "replicas": count, "updatedReplicas": count}
        status |= {"readyReplicas": count, "availableReplicas": count}
        try:
            AppsV1Api(self.api).patch_namespaced_deployment_status(name, namespace, {"status": status})
            self.writes += 1
        except Exception as exc:  # a Deployment deleted or changed meanwhile: the next event brings it again
            print(f"status of {namespace}/{name}: {exc}", file=sys.stderr)

    def _seen(self, d: dict[str, Any]) -> None:
        meta, spec, status = d["metadata"], d.get("spec") or {}, d.get("status") or {}
        generation, count = int(meta.get("generation") or 0), int(spec.get("replicas") or 0)
        if status.get("observedGeneration") != generation or status.get("readyReplicas", 0) != count:
            self.pool.submit(self._write, meta["namespace"], meta["name"], generation, count)

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                body = json.loads(listed(self.api, "deployments", "bench=true").data)
                for d in body["items"]:
                    self._seen(d)
                stream = listed(
                    self.api,
                    "deployments",
                    "bench=true",
                    watch=True,
                    timeout_seconds=300,
                    resource_version=body["metadata"]["resourceVersion"],
                )
                for line in stream:
                    if self.stopped.is_set():
                        return
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._seen(event["object"])
                    elif event["type"] == "ERROR":
                        break
            except Exception as exc:
                if not self.stopped.is_set():
                    print(f"deployment status stand-in: {exc}; listing again", file=sys.stderr)
                    time.sleep(1.0)


def create(kubeconfig: Path, docs: list[dict[str, Any]], batch: int = 500) -> None:
    for i in range(0, len(docs), batch):
        tools.run_kubectl(
            kubeconfig, "apply", "--server-side", "-f", "-", input_=yaml.safe_dump_all(docs[i : i + batch])
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--replicas", type=int, default=1, help="operator replicas (default 1)")
    parser.add_argument(
        "--namespaces",
        type=int,
        default=None,
        help="namespaces the workloads are spread over (default 1; 12 with --replicas > 1)",
    )
    parser.add_argument(
        "--shards", type=int, default=None, help="--shards of the replicas with --replicas > 1 (default: --namespaces)"
    )
    parser.add_argument("--approvals", type=int, default=60, help="approvals timed (0: skip that part)")
    parser.add_argument(
        "--cheap-controllers",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run kube-controller-manager without the deployment and replicaset controllers "
        "(default: on above 2,000 workloads)",
    )
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    k = args.namespaces or (12 if args.replicas > 1 else 1)
    shards = args.shards or k
    cheap = args.cheap_controllers if args.cheap_controllers is not None else args.workloads > 2000
    controllers = (*DEFAULT_CONTROLLERS, "-deployment", "-replicaset") if cheap else DEFAULT_CONTROLLERS
    spaces = [f"bench-{i}" for i in range(k)]
    counts = [args.workloads // k + (1 if i < args.workloads % k else 0) for i in range(k)]
    bench, approve_ns = set(spaces), "bench-approvals"
    work = Path(tempfile.mkdtemp(prefix="accord-bench-"))
    print(
        f"{args.workloads} Deployments over {k} namespaces, {args.replicas} operator replica(s)"
        + (f" with {shards} shards" if args.replicas > 1 else "")
        + (", controller-manager without the deployment and replicaset controllers" if cheap else ""),
        flush=True,
    )
    with LocalControlPlane(controllers=controllers) as plane:
        kc = Path(plane.kubeconfig)
        install_crds(kc)
        from kubernetes import config

        api = config.new_client_from_config(config_file=str(kc))  # type: ignore[no-untyped-call]
        with contextlib.ExitStack() as stack:
            if cheap:
                stack.enter_context(DeploymentStatus(api))
            # The policies' query reads the offered demand only, which does not depend on the replicas:
            # the emulator need not read the Deployments (one GET each, over and over, at 10,000).
            emulator = stack.enter_context(WorkloadEmulator(poll_interval=2.0))
            prom = stack.enter_context(PrometheusServer(targets=[emulator.target], scrape_interval="2s"))
            groups = [(ns, n, False) for ns, n in zip(spaces, counts, strict=True)]
            if args.approvals:
                groups.append((approve_ns, args.approvals, True))
            tools.run_kubectl(
                kc,
                "apply",
                "-f",
                "-",
                input_=yaml.safe_dump_all(
                    [doc for ns, n, a in groups for doc in manifests(ns, n, approval=a, deployments=False)]
                ),
            )
            t0 = time.monotonic()
            create(kc, [deployment(ns, i) for ns, n, _ in groups for i in range(n)])
            print(
                f"created {args.workloads} + {args.approvals} Deployments in {time.monotonic() - t0:.1f} s "
                "(server-side apply, 500 a request)",
                flush=True,
            )
            for ns, n, _ in groups:
                for i in range(n):
                    # 100 req/s at 70% of 100 req/s per pod: every workload needs 2 replicas, not 1
                    emulator.add_workload(ns, f"w{i:04d}", demand=100.0)
            time.sleep(10)  # a few scrapes, so that every workload has demand history
            # Every replica serves the webhook, as in the chart: a replica acts only on approvals its
            # webhook may have stamped. The configuration points at whichever started last; any answers.
            operators = []
            for r in range(args.replicas):
                sharded = ("--shards", str(shards), "--lease-name", "bench") if args.replicas > 1 else ()
                operator = OperatorProcess(
                    kubeconfig=kc,
                    prometheus_url=prom.url,
                    log_path=work / f"operator-{r}.log",
                    extra_env={"POD_ID": f"bench-{r}"},
                    extra_args=sharded,
                )
                operators.append(operator)
                stack.callback(operator.stop)
                operator.start()
            created = time.monotonic()
            tools.run_kubectl(
                kc, "apply", "-f", "-", input_=yaml.safe_dump_all([policy(ns, approval=False) for ns in spaces])
            )

            decided = wait(
                lambda: (
                    len({(n["metadata"]["namespace"], n["spec"]["workload"]["name"]) for n in negotiations(api, bench)})
                    >= args.workloads
                ),
                args.timeout,
                "a decision for every workload",
                5.0,
                since=created,
            )
            visible = wait(
                lambda: all(r >= 2 for r in replicas(api, bench)),
                args.timeout,
                "every change in the Deployments",
                5.0,
                since=created,
            )
            texts = [o.metrics() for o in operators]
            requests = sum(metric_sum(t, "accord_api_requests_total") for t in texts)
            queries = sum(metric_sum(t, "accord_prometheus_queries_total") for t in texts)
            rounds = sum(metric_sum(t, "accord_rounds_total") for t in texts)
            decisions = len(negotiations(api, bench))
            print(f"\n== {args.workloads} Deployments, {k} namespace(s) with a policy each, {args.replicas} replica(s)")
            print(f"policies created -> every workload has a recorded decision: {decided:8.1f} s (polled every 5 s)")
            print(f"policies created -> every change visible in the Deployments: {visible:8.1f} s (polled every 5 s)")
            print(
                f"API requests per decision (operator clients): {requests / max(1, decisions):8.1f} "
                f"({requests:.0f} requests, {decisions} decisions)"
            )
            print(
                f"Prometheus queries per policy round: {queries / max(1.0, rounds):8.1f} "
                f"({queries:.0f} queries, {rounds:.0f} rounds, each of one policy over "
                f"{args.workloads / k:.0f} workloads)"
            )

            if args.approvals:
                approvals(api, kc, approve_ns, args.approvals, args.timeout)
            for r, o in enumerate(operators):
                peak = memory_mb(o.process.pid) if o.process else 0
                print(f"replica bench-{r} peak RSS: {peak:.0f} MB")
    print(f"operator logs: {work}")
    return 0


def approvals(api: Any, kc: Path, namespace: str, count: int, timeout: float) -> None:
    """Approves `count` pending changes one after another, timing each from the annotation to the patch."""
    tools.run_kubectl(kc, "apply", "-f", "-", input_=yaml.safe_dump(policy(namespace, approval=True)))

    def pending() -> list[dict[str, Any]]:
        return [n for n in negotiations(api, {namespace}) if (n.get("status") or {}).get("phase") == "PendingApproval"]

    wait(lambda: len(pending()) >= count, timeout, "every approval to be pending", 2.0)
    latencies = []
    for n in pending():
        name = n["metadata"]["name"]
        workload = n["spec"]["workload"]["name"]
        target = n["spec"]["outcome"]["target"]["replicas"]
        start = time.monotonic()
        tools.run_kubectl(kc, "annotate", "negotiation", "-n", namespace, name, "accord.dev/approval=approved")
        wait(
            lambda w=workload, t=target: (
                json.loads(tools.run_kubectl(kc, "get", "deployment", "-n", namespace, w, "-o", "json"))["spec"][
                    "replicas"
                ]
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


if __name__ == "__main__":
    raise SystemExit(main())
