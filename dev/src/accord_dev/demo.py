"""`accord-demo`: the operator at work on a local cluster, on an embedded default (development package).

Brings up a cluster (a local control plane; a kind cluster when Docker and kind are there and
`--cluster kind` is asked for; or the cluster KUBECONFIG names with `--cluster existing`),
Prometheus, the workload emulator replaying the bundled NYC-taxi trace, and the operator with
the examples; then prints each negotiation as it happens until Ctrl-C (or `--duration`), and
stops everything it started.

On the local control plane the Nodes of examples/nodes.yaml are simulated ones with kubelets
(accord_dev.cluster.kubelets): the scheduler places the pods, they go Running and Ready, and the
emulator serves demand with the Ready pods only. `kubectl get pods -o wide` is printed whenever the
pods move, and a spot node is reclaimed mid-run (`--reclaim-after`).
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import yaml

from accord_dev.cluster import tools
from accord_dev.cluster.emulator import Trace, WorkloadEmulator
from accord_dev.cluster.kubelets import Pool, SimulatedKubelets
from accord_dev.cluster.local import LocalControlPlane
from accord_dev.cluster.prometheus import PrometheusServer

# The repository this development package is installed from (editable): dev/src/accord_dev/demo.py.
ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
DEMO_POLICY = "default"  # the NegotiationPolicy in examples/policy.yaml
DEMO_NAMESPACE = "shop"


@contextmanager
def _kind_cluster(workdir: Path) -> Iterator[Path]:
    name = "accord-demo"
    kubeconfig = workdir / "kind.kubeconfig"
    subprocess.run(
        ["kind", "create", "cluster", "--name", name, "--kubeconfig", str(kubeconfig), "--wait", "120s"], check=True
    )
    try:
        yield kubeconfig
    finally:
        subprocess.run(["kind", "delete", "cluster", "--name", name], check=False)


def _docker_ready() -> bool:
    if shutil.which("docker") is None or shutil.which("kind") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=30)
    return probe.returncode == 0


def _workloads() -> list[dict[str, Any]]:
    def deployment(name: str, replicas: int, labels: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": DEMO_NAMESPACE,
                "labels": {"app": name, "accord.dev/negotiate": "true", **labels},
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "nodeSelector": {"accord.dev/pool": "standard"},
                        "containers": [{"name": name, "image": "registry.k8s.io/pause:3.9"}],
                    },
                },
            },
        }

    return [
        deployment("web", 4, {}),
        # Sensitive: the security agent vetoes the spot pool, which lacks the hardened label.
        deployment("payments", 3, {"accord.dev/sensitivity": "high"}),
    ]


def _pools() -> list[Pool]:
    """One simulated Node per Node of examples/nodes.yaml, with its labels (pools and zones)."""
    nodes = [d for d in yaml.safe_load_all((EXAMPLES / "nodes.yaml").read_text()) if d]
    return [Pool(n["metadata"]["name"], 1, n["metadata"].get("labels") or {}) for n in nodes]


def _placements(kubeconfig: Path) -> str:
    """`kubectl get pods -o wide`, as a user would look; and a key that changes when the pods move."""
    return tools.run_kubectl(kubeconfig, "get", "pods", "-n", DEMO_NAMESPACE, "-o", "wide")


def _where(table: str) -> str:
    rows = [line.split() for line in table.splitlines()[1:] if line.strip()]
    return " ".join(sorted(f"{r[0].rsplit('-', 2)[0]}:{r[1]}:{r[2]}:{r[6]}" for r in rows if len(r) > 6))


def _approve_waiting(kubeconfig: Path, items: list[dict[str, Any]], after: float) -> None:
    """Play the approver: approve what has waited `after` seconds, as a person would with kubectl."""
    now = time.time()
    for n in items:
        if (n.get("status") or {}).get("phase") != "PendingApproval":
            continue
        created = calendar.timegm(time.strptime(n["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ"))
        if now - created >= after:
            name = n["metadata"]["name"]
            print(f"{time.strftime('%H:%M:%S')}  (approving {name} after {after:.0f}s)", flush=True)
            tools.run_kubectl(
                kubeconfig, "annotate", "negotiation", "-n", DEMO_NAMESPACE, name, "accord.dev/approval=approved"
            )


def _print_changes(kubeconfig: Path, seen: dict[str, str], approve_after: float) -> None:
    out = tools.run_kubectl(kubeconfig, "get", "negotiations", "-n", DEMO_NAMESPACE, "-o", "json")
    items = sorted(json.loads(out)["items"], key=lambda n: n["metadata"]["creationTimestamp"])
    for n in items:
        name = n["metadata"]["name"]
        status = n.get("status") or {}
        phase = status.get("phase", "?")
        if seen.get(name) == phase:
            continue
        seen[name] = phase
        spec = n["spec"]
        target = spec["outcome"]["target"]
        reasons = sorted({u["veto"] for p in spec["proposals"] for u in p["utilities"] if u.get("veto")})
        print(
            f"{time.strftime('%H:%M:%S')}  {spec['workload']['name']:<9} {phase:<16} "
            f"{spec['current']['replicas']}@{spec['current']['placement']} -> "
            f"{target['replicas']}@{target['placement']}  confidence {spec['outcome']['confidence']:.2f}",
            flush=True,
        )
        print(f"          {status.get('message') or spec['outcome']['reason']}", flush=True)
        if reasons:
            more = f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""
            print(f"          vetoed: {reasons[0]}{more}", flush=True)
        if phase == "PendingApproval":
            print(
                f"          approve: KUBECONFIG={kubeconfig} kubectl annotate negotiation -n {DEMO_NAMESPACE} "
                f"{name} accord.dev/approval=approved",
                flush=True,
            )
    if approve_after > 0:
        _approve_waiting(kubeconfig, items, approve_after)


def _reclaim_a_spot_node(kubeconfig: Path, kubelets: SimulatedKubelets) -> None:
    """The cloud takes a spot node back: the busiest one, with a 30 s notice."""
    spot = [n for n in kubelets.node_names if n.startswith("spot")]
    if not spot:
        return
    table = _placements(kubeconfig)
    victim = max(spot, key=table.count)
    now = time.strftime("%H:%M:%S")
    print(f"{now}  spot node {victim} reclaimed: tainted and drained, deleted in 30 s", flush=True)
    kubelets.reclaim(victim, notice_seconds=30)


def run(args: argparse.Namespace) -> int:
    stop_at = time.monotonic() + args.duration if args.duration else None
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="accord-demo-"))
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        cluster = args.cluster
        if cluster == "auto":
            cluster = "kind" if _docker_ready() else "local"
        print(f"==> starting a {cluster} cluster", flush=True)
        if cluster == "local":
            plane = stack.enter_context(LocalControlPlane())
            kubeconfig = Path(plane.kubeconfig)
        elif cluster == "kind":
            kubeconfig = stack.enter_context(_kind_cluster(workdir))
        else:
            kubeconfig = Path(os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config")))
        tools.run_kubectl(kubeconfig, "apply", "-f", str(ROOT / "crds"))
        for crd in ("agents", "negotiationpolicies", "negotiations"):
            tools.run_kubectl(
                kubeconfig, "wait", "--for=condition=Established", f"crd/{crd}.accord.dev", "--timeout=60s"
            )
        from kubernetes import config

        api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        kubelets: SimulatedKubelets | None = None
        if cluster == "local":
            kubelets = stack.enter_context(SimulatedKubelets(api, _pools()))
            print(f"==> simulated nodes: {', '.join(kubelets.node_names)}", flush=True)
        tools.run_kubectl(kubeconfig, "create", "namespace", DEMO_NAMESPACE)
        tools.run_kubectl(
            kubeconfig,
            "apply",
            "-n",
            DEMO_NAMESPACE,
            "-f",
            str(EXAMPLES / "agents.yaml"),
            "-f",
            str(EXAMPLES / "policy.yaml"),
        )
        # The demo's operator runs without the admission webhook, so nobody's identity is stamped on an
        # approval: the demo's policy accepts unverified approvals, and its records say so.
        tools.run_kubectl(
            kubeconfig,
            "patch",
            "negotiationpolicy",
            "-n",
            DEMO_NAMESPACE,
            DEMO_POLICY,
            "--type",
            "merge",
            "-p",
            '{"spec": {"approval": {"allowUnverified": true}}}',
        )
        print("==> no admission webhook in the demo: approvals are accepted as unverified", flush=True)
        tools.run_kubectl(kubeconfig, "apply", "-f", "-", input_=yaml.safe_dump_all(_workloads()))

        # With simulated kubelets the pods really become Ready: demand is served by those only.
        emulator = stack.enter_context(
            WorkloadEmulator(api_client=api, replica_source="status")
            if kubelets is not None
            else WorkloadEmulator(api_client=api, startup_delay=5.0)
        )
        trace = Trace.from_csv(args.trace, peak=args.peak, speedup=args.speedup)
        emulator.add_workload(DEMO_NAMESPACE, "web", demand=trace)
        emulator.add_workload(DEMO_NAMESPACE, "payments", demand=420.0)
        print(f"==> Prometheus scraping the emulator ({args.trace.name}, {args.speedup:g}x speed)", flush=True)
        prometheus = stack.enter_context(PrometheusServer(targets=[emulator.target], scrape_interval="2s"))
        log = workdir / "operator.log"
        argv = [
            sys.executable,
            "-m",
            "accord.cli",
            "run",
            "--kubeconfig",
            str(kubeconfig),
            "--prometheus-url",
            prometheus.url,
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            str(args.metrics_port),
        ]
        operator = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)

        def stop_operator() -> None:
            if operator.poll() is None:
                os.killpg(operator.pid, signal.SIGTERM)
                try:
                    operator.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(operator.pid, signal.SIGKILL)

        stack.callback(stop_operator)
        print(f"==> operator running (log {log}, metrics http://127.0.0.1:{args.metrics_port}/metrics)")
        print(f"    export KUBECONFIG={kubeconfig}   # then: kubectl get negotiations -n {DEMO_NAMESPACE}")
        print("==> negotiations as they happen (Ctrl-C to stop):", flush=True)
        seen: dict[str, str] = {}
        where = ""
        reclaim_at = time.monotonic() + args.reclaim_after if kubelets is not None and args.reclaim_after else None
        try:
            while stop_at is None or time.monotonic() < stop_at:
                if operator.poll() is not None:
                    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
                    print(f"the operator exited with {operator.returncode}:\n{tail}", file=sys.stderr)
                    return 1
                try:
                    _print_changes(kubeconfig, seen, args.approve_after)
                except RuntimeError as exc:
                    print(f"(could not list negotiations: {exc})", file=sys.stderr)
                if kubelets is not None:
                    if reclaim_at is not None and time.monotonic() >= reclaim_at:
                        reclaim_at = None
                        _reclaim_a_spot_node(kubeconfig, kubelets)
                    table = _placements(kubeconfig)
                    if _where(table) != where:
                        where = _where(table)
                        print(f"{time.strftime('%H:%M:%S')}  $ kubectl get pods -n {DEMO_NAMESPACE} -o wide")
                        print(table, flush=True)
                time.sleep(2)
        except KeyboardInterrupt:
            print("\n==> stopping", flush=True)
        print(tools.run_kubectl(kubeconfig, "get", "negotiations", "-n", DEMO_NAMESPACE), flush=True)
    print("==> stopped: cluster, Prometheus, emulator and operator are gone")
    return 0


def build_parser() -> argparse.ArgumentParser:
    demo = argparse.ArgumentParser(prog="accord-demo", description=__doc__.splitlines()[0] if __doc__ else None)
    demo.add_argument(
        "--cluster",
        choices=["auto", "local", "kind", "existing"],
        default="local",
        help="local control plane (default), kind (needs Docker and kind), or the current KUBECONFIG",
    )
    demo.add_argument("--trace", type=Path, default=EXAMPLES / "traces" / "nyc_taxi_3days.csv")
    demo.add_argument("--speedup", type=float, default=180.0, help="trace seconds per second")
    demo.add_argument("--peak", type=float, default=1200.0, help="peak demand in requests per second")
    demo.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: until Ctrl-C)")
    demo.add_argument("--metrics-port", type=int, default=18080)
    demo.add_argument(
        "--approve-after",
        type=float,
        default=20.0,
        help="approve pending decisions after this many seconds, as a person would (0: never)",
    )
    demo.add_argument(
        "--reclaim-after",
        type=float,
        default=240.0,
        help="on the local cluster, reclaim a spot node after this many seconds (0: never)",
    )
    return demo


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
