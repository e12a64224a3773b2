"""The operator end to end: real API server, real Prometheus, the workload emulator closing the loop.

Each test gets its own namespace with four Agents and a policy; one operator process (started as
`accord run`, with the approval webhook) serves them all, as it would a cluster.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from accord_dev.cluster.emulator import WorkloadEmulator
from accord_dev.cluster.prometheus import PrometheusServer
from operator_process import OperatorProcess, free_port
from providers import Cluster, wait_until

REPO = Path(__file__).resolve().parents[1]
INTERVAL = 5


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", str(REPO / "crds"))
    for name in ("agents", "negotiationpolicies", "clusternegotiationpolicies", "negotiations"):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}.accord.dev", "--timeout=60s")


@pytest.fixture(scope="module")
def prometheus_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def accord_prometheus(emulator: WorkloadEmulator, prometheus_port: int) -> Iterator[PrometheusServer]:
    """A Prometheus on a fixed port, so that a test can stop it and bring it back where the operator looks."""
    server = PrometheusServer(targets=[emulator.target], scrape_interval="1s", port=prometheus_port)
    server.start()
    server.wait_for_targets_up(timeout=30)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def operator_kubeconfig(cluster: Cluster) -> Path:
    """Who the operator runs as: the admin here; e2e/test_chart.py overrides it with the chart's ServiceAccount."""
    return cluster.kubeconfig


@pytest.fixture(scope="module")
def webhook_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def operator_args() -> tuple[str, ...]:
    """Extra `accord run` flags: none here; e2e/test_chart.py passes the ones the chart gives the operator."""
    return ()


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster,
    crds: None,
    accord_prometheus: PrometheusServer,
    operator_kubeconfig: Path,
    operator_args: tuple[str, ...],
    webhook_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    if cluster.provider == "kind":
        pytest.skip("the kind provider runs the operator in the cluster; these tests drive a local process")
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = OperatorProcess(
        kubeconfig=operator_kubeconfig,
        prometheus_url=accord_prometheus.url,
        log_path=log,
        extra_args=operator_args,
        webhook_port=webhook_port,
    )
    process.start()
    yield process
    process.stop()
    # The approval webhooks are registered persistently (they fail closed while no operator answers):
    # gone with this module's operator, so that the next module starts from a clean cluster.
    remove_webhooks(cluster)
    print(f"\n[e2e] operator log: {log}")


# -- helpers ---------------------------------------------------------------------------------------------------
DEMAND_QUERY = 'sum(accord_emulator_requests_per_second{namespace="$namespace", deployment="$workload"})'


def agents(namespace: str, *, startup: int = 10) -> list[dict[str, Any]]:
    query = DEMAND_QUERY

    def agent(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "accord.dev/v1alpha1",
            "kind": "Agent",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }

    return [
        agent(
            "performance",
            {
                "type": "performance",
                "weight": 2,
                "performance": {
                    "targetUtilisation": 0.7,
                    "capacityPerPod": 100,
                    "startupSeconds": startup,
                    "historySeconds": 300,
                    "seasonality": False,
                    "demandQuery": query,
                },
            },
        ),
        agent("cost", {"type": "cost", "cost": {"defaultPricePerPodHour": 0.05}}),
        agent("security", {"type": "security", "veto": True}),
        agent("compliance", {"type": "compliance", "veto": True, "compliance": {"minReplicas": 1}}),
    ]


def policy(namespace: str, name: str = "default", *, app: str | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "selector": {"matchLabels": {"accord.dev/negotiate": "true", **({"app": app} if app else {})}},
        "agents": [{"name": n} for n in ("performance", "cost", "security", "compliance")],
        "bounds": {
            "minReplicas": 1,
            "maxReplicas": 30,
            "maxStepUp": 10,
            "maxStepDown": 5,
            "scaleDownStabilizationSeconds": 0,
        },
        "rules": {"minConfidence": 0.3},
        "intervalSeconds": INTERVAL,
    }
    body.update(spec)
    return {
        "apiVersion": "accord.dev/v1alpha1",
        "kind": "NegotiationPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def deployment(namespace: str, name: str = "web", replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name, "accord.dev/negotiate": "true"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9"}]},
            },
        },
    }


def apply(cluster: Cluster, *docs: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


def get(cluster: Cluster, kind: str, namespace: str, name: str = "") -> dict[str, Any]:
    out = cluster.kubectl("get", kind, *([name] if name else []), "-n", namespace, "-o", "json").stdout
    result: dict[str, Any] = json.loads(out)
    return result


def negotiations(cluster: Cluster, namespace: str, workload: str = "web") -> list[dict[str, Any]]:
    items = get(cluster, "negotiations", namespace)["items"]
    mine = [n for n in items if n["spec"]["workload"]["name"] == workload]
    return sorted(mine, key=lambda n: (n["metadata"]["creationTimestamp"], n["metadata"]["name"]))


def replicas(cluster: Cluster, namespace: str, name: str = "web") -> int:
    return int(get(cluster, "deployment", namespace, name)["spec"]["replicas"])


def phase(n: dict[str, Any]) -> str:
    return str((n.get("status") or {}).get("phase", ""))


def in_phase(cluster: Cluster, namespace: str, name: str, wanted: str) -> dict[str, Any] | None:
    n = get(cluster, "negotiation", namespace, name)
    return n if phase(n) == wanted else None


def find(
    cluster: Cluster,
    namespace: str,
    want: Callable[[dict[str, Any]], bool],
    *,
    workload: str = "web",
    timeout: float = 60,
    message: str = "a negotiation",
) -> dict[str, Any]:
    return wait_until(
        lambda: next((n for n in negotiations(cluster, namespace, workload) if want(n)), None),
        timeout=timeout,
        interval=1.0,
        message=message,
    )


def setup(
    cluster: Cluster,
    emulator: WorkloadEmulator,
    namespace: str,
    *,
    demand: float = 900.0,
    workloads: tuple[str, ...] = ("web",),
    **policy_spec: Any,
) -> None:
    for w in workloads:
        emulator.add_workload(namespace, w, demand=demand)
    apply(cluster, *agents(namespace), policy(namespace, **policy_spec), *(deployment(namespace, w) for w in workloads))


def events(cluster: Cluster, namespace: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in get(cluster, "events", namespace)["items"] if e.get("reason") == reason]


def rbac_for_people(cluster: Cluster, namespace: str, *users: str) -> None:
    """Let these users read and annotate Negotiations: RBAC alone; the webhook decides who may approve."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "negotiation-reviewer", "namespace": namespace},
        "rules": [
            {
                "apiGroups": ["accord.dev"],
                "resources": ["negotiations"],
                "verbs": ["get", "list", "watch", "patch", "update"],
            }
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "negotiation-reviewers", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "negotiation-reviewer"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": u} for u in users],
    }
    apply(cluster, role, binding)


def offer_placements(
    cluster: Cluster,
    emulator: WorkloadEmulator,
    namespace: str,
    placements: list[dict[str, Any]],
    *workloads: dict[str, Any],
    **policy_spec: Any,
) -> None:
    """Agents and a policy offering `placements` (no approval needed) for web."""
    emulator.add_workload(namespace, "web", demand=150.0)
    rules = {"minConfidence": 0.3, "requireApproval": {"placementChange": False}}
    apply(cluster, *agents(namespace), policy(namespace, placements=placements, rules=rules, **policy_spec), *workloads)


def negotiated_move(
    cluster: Cluster,
    emulator: WorkloadEmulator,
    namespace: str,
    placements: list[dict[str, Any]],
    target: str,
    *workloads: dict[str, Any],
    **policy_spec: Any,
) -> dict[str, Any]:
    """`offer_placements`, then the applied move to `target`."""
    offer_placements(cluster, emulator, namespace, placements, *workloads, **policy_spec)
    return applied_move(cluster, namespace, target, timeout=90)


def applied_move(cluster: Cluster, namespace: str, pool: str, *, timeout: float) -> dict[str, Any]:
    """The Applied record of a move to `pool` (waited for)."""
    return find(
        cluster,
        namespace,
        lambda n: phase(n) == "Applied" and n["spec"]["outcome"]["target"]["placement"] == pool,
        timeout=timeout,
        message=f"an applied move to the {pool} pool",
    )


def remove_webhooks(cluster: Cluster) -> None:
    """The approval webhooks kopf registered (persistently), gone."""
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        cluster.kubectl("delete", kind, "accord.dev", "--ignore-not-found")


def merge_patch(cluster: Cluster, namespace: str, name: str, body: dict[str, Any], **given: Any) -> Any:
    """`kubectl patch negotiation NAME --type merge -p BODY`, as whoever `kubeconfig=` names."""
    return cluster.kubectl(
        "patch", "negotiation", name, "-n", namespace, "--type", "merge", "-p", json.dumps(body), **given
    )


# -- tests -------------------------------------------------------------------------------------------------------
def test_rising_load_is_met_by_a_negotiated_scale_up(
    cluster: Cluster, emulator: WorkloadEmulator, operator: OperatorProcess, namespace: str
) -> None:
    setup(cluster, emulator, namespace, demand=900.0)
    # 900 req/s at 70% of 100 req/s per pod needs 13 pods; one decision may add 10.
    wait_until(lambda: replicas(cluster, namespace) >= 12, timeout=90, interval=1.0, message="a scale-up")
    applied = find(cluster, namespace, lambda n: phase(n) == "Applied", message="an Applied negotiation")
    spec = applied["spec"]
    assert [p["agent"] for p in spec["proposals"]] == ["performance", "cost", "security", "compliance"]
    assert all(p["rationale"] for p in spec["proposals"])
    perf = spec["proposals"][0]
    assert perf["evidence"][0]["source"] == "prometheus"
    assert perf["evidence"][0]["value"] == pytest.approx(900.0)
    assert spec["outcome"]["verdict"] == "Apply"
    assert spec["outcome"]["target"]["replicas"] > spec["current"]["replicas"]
    deploy = get(cluster, "deployment", namespace, "web")
    assert deploy["metadata"]["annotations"]["accord.dev/negotiation"].startswith("web-deploy-")
    table = cluster.kubectl("get", "negotiations", "-n", namespace).stdout
    assert "Applied" in table
    assert "web" in table
    wait_until(lambda: replicas(cluster, namespace) == 13, timeout=60, interval=1.0, message="13 replicas")
    assert "accord_rounds_total" in operator.metrics()
    perf_status = get(cluster, "agent", namespace, "performance")["status"]
    assert perf_status["lastProposal"]["workload"] == f"{namespace}/web"
    assert perf_status["lastProposal"]["idealReplicas"] >= 12
    assert 0.05 <= perf_status["trust"] <= 1.0
    ready = {c["type"]: c["status"] for c in perf_status["conditions"]}
    assert ready["Ready"] == "True"


def test_a_statefulset_is_negotiated_and_scaled_like_a_deployment(
    cluster: Cluster, emulator: WorkloadEmulator, operator: OperatorProcess, namespace: str
) -> None:
    emulator.add_workload(namespace, "db", demand=900.0, kind="StatefulSet")
    sts = deployment(namespace, "db")
    sts["kind"] = "StatefulSet"
    sts["spec"]["serviceName"] = "db"
    apply(cluster, *agents(namespace), policy(namespace), sts)
    # 900 req/s at 70% of 100 req/s per pod needs 13 pods, as for a Deployment.
    wait_until(
        lambda: int(get(cluster, "statefulset", namespace, "db")["spec"]["replicas"]) == 13,
        timeout=120,
        interval=1.0,
        message="the StatefulSet scaled to 13",
    )
    applied = find(cluster, namespace, lambda n: phase(n) == "Applied", workload="db", message="an Applied negotiation")
    assert applied["spec"]["workload"]["kind"] == "StatefulSet"
    assert applied["metadata"]["name"].startswith("db-sts-")
    assert applied["spec"]["outcome"]["target"]["replicas"] > applied["spec"]["current"]["replicas"]
    annotations = get(cluster, "statefulset", namespace, "db")["metadata"]["annotations"]
    assert annotations["accord.dev/negotiation"].startswith("db-sts-")


def test_a_freeze_window_blocks_a_change_until_it_closes(
    cluster: Cluster, emulator: WorkloadEmulator, operator: OperatorProcess, namespace: str
) -> None:
    now = datetime.now(tz=UTC)
    window = {
        "name": "release-freeze",
        "schedule": f"{now.minute} {now.hour} * * *",
        "timeZone": "UTC",
        "durationMinutes": 2,
    }
    setup(cluster, emulator, namespace, rules={"minConfidence": 0.3, "freezeWindows": [window]})
    held = find(cluster, namespace, lambda n: phase(n) == "Held", message="a Held negotiation")
    assert any(g["rule"] == "freezeWindow" for g in held["spec"]["gates"])
    assert replicas(cluster, namespace) == 2
    closes = now.replace(second=0, microsecond=0).timestamp() + 120
    time.sleep(max(0.0, closes - time.time() - 5))
    assert replicas(cluster, namespace) == 2, "nothing may change while the window is open"
    wait_until(lambda: replicas(cluster, namespace) >= 12, timeout=60, interval=1.0, message="the change after")


def test_a_large_step_waits_for_an_approvers_annotation(
    cluster: Cluster, emulator: WorkloadEmulator, operator: OperatorProcess, namespace: str
) -> None:
    rbac_for_people(cluster, namespace, "alice", "mallory")
    setup(
        cluster,
        emulator,
        namespace,
        workloads=("web", "api"),
        rules={"minConfidence": 0.3, "requireApproval": {"stepReplicasAbove": 3}},
        approval={"approvers": ["alice"], "expirySeconds": 600},
    )
    pending = find(cluster, namespace, lambda n: phase(n) == "PendingApproval", message="a pending decision")
    name = pending["metadata"]["name"]
    assert any(g["rule"] == "stepReplicas" for g in pending["spec"]["gates"])
    time.sleep(2 * INTERVAL)
    assert replicas(cluster, namespace) == 2, "a pending decision is not applied"

    # Decisions made on the first thin metrics may be replaced by a better one: take the current pending one.
    pending = find(cluster, namespace, lambda n: phase(n) == "PendingApproval", message="a pending decision")
    name = pending["metadata"]["name"]
    mallory = cluster.user_kubeconfig("mallory")
    refused = cluster.kubectl(
        "annotate",
        "negotiation",
        name,
        "-n",
        namespace,
        "accord.dev/approval=approved",
        kubeconfig=mallory,
        check=False,
    )
    assert refused.returncode != 0
    assert "mallory is not an approver" in refused.stderr
    forged = cluster.kubectl(
        "annotate", "negotiation", name, "-n", namespace, "accord.dev/approver=alice", kubeconfig=mallory, check=False
    )
    assert forged.returncode != 0

    alice = cluster.user_kubeconfig("alice")
    cluster.kubectl("annotate", "negotiation", name, "-n", namespace, "accord.dev/approval=approved", kubeconfig=alice)
    done = wait_until(
        lambda: in_phase(cluster, namespace, name, "Applied"),
        timeout=20,
        interval=0.5,
        message="the approved change applied",
    )
    # Applied means the Deployment reached the target; a later round may already have gone further.
    assert replicas(cluster, namespace) >= pending["spec"]["outcome"]["target"]["replicas"]
    assert done["status"]["approval"]["user"] == "alice"
    assert done["metadata"]["annotations"]["accord.dev/approver"] == "alice"

    other = find(
        cluster,
        namespace,
        lambda n: phase(n) == "PendingApproval",
        workload="api",
        message="the api workload's pending decision",
    )
    cluster.kubectl(
        "annotate",
        "negotiation",
        other["metadata"]["name"],
        "-n",
        namespace,
        "accord.dev/approval=rejected",
        kubeconfig=alice,
    )
    wait_until(
        lambda: phase(get(cluster, "negotiation", namespace, other["metadata"]["name"])) == "Rejected",
        timeout=20,
        interval=0.5,
        message="the rejection",
    )
    time.sleep(2 * INTERVAL)
    assert replicas(cluster, namespace, "api") == 2, "a rejected decision is not applied"


def test_an_unanswered_decision_expires(
    cluster: Cluster, emulator: WorkloadEmulator, operator: OperatorProcess, namespace: str
) -> None:
    setup(
        cluster,
        emulator,
        namespace,
        rules={"minConfidence": 0.3, "requireApproval": {"stepReplicasAbove": 3}},
        approval={"approvers": ["alice"], "expirySeconds": 10},
    )
    pending = find(cluster, namespace, lambda n: phase(n) == "PendingApproval", message="a pending decision")
    name = pending["metadata"]["name"]
    wait_until(
        lambda: phase(get(cluster, "negotiation", namespace, name)) == "Expired",
        timeout=40,
        interval=1.0,
        message="expiry",
    )
    assert replicas(cluster, namespace) == 2
    alice = cluster.user_kubeconfig("alice")
    rbac_for_people(cluster, namespace, "alice")
    late = cluster.kubectl(
        "annotate", "negotiation", name, "-n", namespace, "accord.dev/approval=approved", kubeconfig=alice, check=False
    )
    assert late.returncode != 0, "an expired decision cannot be approved"
    assert replicas(cluster, namespace) == 2


def test_audit_mode_records_but_never_patches(
    cluster: Cluster, emulator: WorkloadEmulator, operator: OperatorProcess, namespace: str
) -> None:
    setup(cluster, emulator, namespace, mode="audit")
    # A record is created, then given its phase (a status subresource is written apart): wait for both.
    audited = find(
        cluster, namespace, lambda n: n["spec"]["mode"] == "audit" and phase(n) != "", message="an audit record"
    )
    assert phase(audited) == "Proposed"
    assert "audit mode" in audited["status"]["message"]
    assert audited["spec"]["outcome"]["target"]["replicas"] > 2
    time.sleep(3 * INTERVAL)
    assert replicas(cluster, namespace) == 2
    assert "accord.dev/negotiation" not in (
        get(cluster, "deployment", namespace, "web")["metadata"].get("annotations") or {}
    )


def test_a_workload_under_an_hpa_is_not_fought(
    cluster: Cluster, emulator: WorkloadEmulator, operator: OperatorProcess, namespace: str
) -> None:
    hpa = {
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2,
            "maxReplicas": 10,
            "targetCPUUtilizationPercentage": 70,
        },
    }
    apply(cluster, hpa)
    setup(cluster, emulator, namespace)
    held = find(
        cluster,
        namespace,
        lambda n: "HorizontalPodAutoscaler" in (n.get("status") or {}).get("message", ""),
        message="a record of the conflict",
    )
    assert phase(held) == "Held"
    conditions = {c["type"]: c for c in get(cluster, "negotiationpolicy", namespace, "default")["status"]["conditions"]}
    assert conditions["AutoscalerConflict"]["status"] == "True"
    time.sleep(2 * INTERVAL)
    assert replicas(cluster, namespace) == 2
    assert get(cluster, "hpa", namespace, "web")["spec"]["minReplicas"] == 2


def test_an_invalid_policy_is_reported_while_others_keep_working(
    cluster: Cluster, emulator: WorkloadEmulator, operator: OperatorProcess, namespace: str
) -> None:
    broken = policy(
        namespace, "broken", app="other", rules={"freezeWindows": [{"schedule": "every friday", "durationMinutes": 60}]}
    )
    apply(cluster, broken)
    setup(cluster, emulator, namespace)

    def invalid() -> dict[str, Any] | None:
        status = get(cluster, "negotiationpolicy", namespace, "broken").get("status") or {}
        return next((c for c in status.get("conditions", []) if c["type"] == "Invalid" and c["status"] == "True"), None)

    cond = wait_until(invalid, timeout=40, interval=1.0, message="the Invalid condition")
    assert "schedule" in cond["message"]
    assert "cron" in cond["message"]
    warning = wait_until(
        lambda: [e for e in events(cluster, namespace, "InvalidSpec") if e["involvedObject"]["name"] == "broken"],
        timeout=20,
        message="an Event",
    )
    assert warning[0]["type"] == "Warning"
    wait_until(
        lambda: replicas(cluster, namespace) >= 12, timeout=90, interval=1.0, message="the valid policy still scaling"
    )


def test_an_operator_killed_mid_round_loses_no_approval_and_applies_nothing_twice(
    cluster: Cluster, emulator: WorkloadEmulator, operator: OperatorProcess, namespace: str
) -> None:
    rbac_for_people(cluster, namespace, "alice")
    setup(
        cluster,
        emulator,
        namespace,
        workloads=("web", "api"),
        rules={"minConfidence": 0.3, "requireApproval": {"stepReplicasAbove": 3}},
        approval={"approvers": ["alice"], "expirySeconds": 600},
    )
    web = find(cluster, namespace, lambda n: phase(n) == "PendingApproval", message="web pending")
    api = find(cluster, namespace, lambda n: phase(n) == "PendingApproval", workload="api", message="api pending")
    alice = cluster.user_kubeconfig("alice")
    cluster.kubectl(
        "annotate",
        "negotiation",
        web["metadata"]["name"],
        "-n",
        namespace,
        "accord.dev/approval=approved",
        kubeconfig=alice,
    )
    operator.kill()
    operator.start()
    target = web["spec"]["outcome"]["target"]["replicas"]
    wait_until(lambda: replicas(cluster, namespace) >= target, timeout=40, interval=0.5, message="the approved change")
    wait_until(
        lambda: phase(get(cluster, "negotiation", namespace, web["metadata"]["name"])) == "Applied",
        timeout=20,
        interval=0.5,
        message="Applied",
    )
    # The pending decision of the other workload survived the restart, unchanged and still approvable.
    still = get(cluster, "negotiation", namespace, api["metadata"]["name"])
    assert phase(still) == "PendingApproval"
    assert replicas(cluster, namespace, "api") == 2
    time.sleep(2 * INTERVAL)
    applied_events = [
        e for e in events(cluster, namespace, "Negotiated") if web["metadata"]["name"] in e.get("message", "")
    ]
    assert len(applied_events) == 1, applied_events


def test_prometheus_going_away_turns_into_the_missing_metrics_rule(
    cluster: Cluster,
    emulator: WorkloadEmulator,
    operator: OperatorProcess,
    accord_prometheus: PrometheusServer,
    namespace: str,
) -> None:
    setup(
        cluster, emulator, namespace, demand=300.0, rules={"minConfidence": 0.3, "missingMetrics": {"action": "hold"}}
    )
    wait_until(lambda: replicas(cluster, namespace) >= 5, timeout=60, interval=1.0, message="a first decision")

    def condition(status: str) -> dict[str, Any] | None:
        conds = (get(cluster, "negotiationpolicy", namespace, "default").get("status") or {}).get("conditions", [])
        return next((c for c in conds if c["type"] == "MetricsMissing" and c["status"] == status), None)

    accord_prometheus.stop()
    try:
        emulator.set_demand(namespace, "web", 1500.0)
        missing = wait_until(lambda: condition("True"), timeout=40, interval=1.0, message="MetricsMissing")
        assert "hold" in missing["message"]
        before = replicas(cluster, namespace)
        time.sleep(3 * INTERVAL)
        assert replicas(cluster, namespace) == before, "hold: nothing changes without metrics"
        assert operator.process is not None
        assert operator.process.poll() is None, "the operator must not crash"
    finally:
        accord_prometheus.start()
        accord_prometheus.wait_for_targets_up(timeout=30)
    wait_until(lambda: condition("False"), timeout=60, interval=1.0, message="metrics back")
    wait_until(lambda: replicas(cluster, namespace) >= 15, timeout=90, interval=1.0, message="negotiation resumed")


def test_a_paused_workload_is_left_alone(
    cluster: Cluster, emulator: WorkloadEmulator, operator: OperatorProcess, namespace: str
) -> None:
    paused = deployment(namespace, "web")
    paused["metadata"]["annotations"] = {"accord.dev/paused": "true"}
    for w in ("web", "api"):
        emulator.add_workload(namespace, w, demand=900.0)
    apply(cluster, *agents(namespace), policy(namespace), paused, deployment(namespace, "api"))
    wait_until(lambda: replicas(cluster, namespace, "api") >= 12, timeout=90, interval=1.0, message="api scaled")
    time.sleep(INTERVAL)
    assert replicas(cluster, namespace, "web") == 2
    assert negotiations(cluster, namespace, "web") == []
    cluster.kubectl("annotate", "deployment", "web", "-n", namespace, "accord.dev/paused-")
    wait_until(lambda: replicas(cluster, namespace, "web") >= 12, timeout=90, interval=1.0, message="web resumed")


def test_a_placement_move_keeps_the_workloads_own_constraints(
    cluster: Cluster,
    emulator: WorkloadEmulator,
    operator: OperatorProcess,
    namespace: str,
    make_node: Callable[..., Any],
) -> None:
    """A Deployment with a selector key and a toleration of its own is moved from a dear pool to a cheap
    one by a negotiated decision: the dear pool's key and toleration are swapped for the cheap pool's,
    and the workload's own stay."""
    dear, cheap = f"{namespace}-dear", f"{namespace}-cheap"
    make_node("dear", {"e2e-pool": dear, "kubernetes.io/os": "linux"})
    make_node("cheap", {"e2e-pool": cheap, "kubernetes.io/os": "linux"})
    own_toleration = {"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}
    dear_toleration = {"key": "pool", "operator": "Equal", "value": "dear", "effect": "NoSchedule"}
    cheap_toleration = {"key": "pool", "operator": "Equal", "value": "cheap", "effect": "NoSchedule"}
    placements = [
        {"name": "dear", "nodeSelector": {"e2e-pool": dear}, "tolerations": [dear_toleration], "pricePerPodHour": 1.0},
        {
            "name": "cheap",
            "nodeSelector": {"e2e-pool": cheap},
            "tolerations": [cheap_toleration],
            "pricePerPodHour": 0.1,
        },
    ]
    web = deployment(namespace, "web", replicas=3)
    web["spec"]["template"]["spec"]["nodeSelector"] = {"e2e-pool": dear, "kubernetes.io/os": "linux"}
    web["spec"]["template"]["spec"]["tolerations"] = [own_toleration, dear_toleration]
    # Nodes without kubelets here (e2e/test_nodes.py has them): the pods never run, so the rollout is not followed.
    moved = negotiated_move(cluster, emulator, namespace, placements, "cheap", web, rollout={"follow": False})
    assert moved["spec"]["current"]["placement"] == "dear"
    body = get(cluster, "deployment", namespace, "web")
    pod = body["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux", "e2e-pool": cheap}
    assert pod["tolerations"] == [own_toleration, cheap_toleration]
    assert "affinity" not in pod
    assert body["metadata"]["annotations"]["accord.dev/negotiation"] == moved["metadata"]["name"]
    shown = cluster.kubectl("get", "deployment", "web", "-n", namespace, "-o", "json", "--show-managed-fields").stdout
    accord_fields = [m for m in json.loads(shown)["metadata"]["managedFields"] if m["manager"] == "accord"]
    assert accord_fields, "Accord's writes carry its field manager"
    owned = json.dumps([m["fieldsV1"] for m in accord_fields])
    assert '"f:nodeSelector"' in owned


# -- decision integrity: attacks by people with exactly the rights the docs give them ----------------------------
def pending_web(cluster: Cluster, emulator: WorkloadEmulator, namespace: str) -> dict[str, Any]:
    rbac_for_people(cluster, namespace, "alice", "mallory")
    setup(
        cluster,
        emulator,
        namespace,
        bounds={"minReplicas": 1, "maxReplicas": 12, "maxStepUp": 10, "maxStepDown": 5},
        rules={"minConfidence": 0.3, "requireApproval": {"stepReplicasAbove": 3}},
        approval={"approvers": ["alice"], "expirySeconds": 600},
    )
    return find(cluster, namespace, lambda n: phase(n) == "PendingApproval", message="a pending decision")


def test_an_approver_cannot_rewrite_a_pending_decision(
    cluster: Cluster, emulator: WorkloadEmulator, operator: OperatorProcess, namespace: str
) -> None:
    pending = pending_web(cluster, emulator, namespace)
    name = pending["metadata"]["name"]
    alice = cluster.user_kubeconfig("alice")
    for edit in (
        {"spec": {"outcome": {"target": {"replicas": 57}}}},
        {"spec": {"policy": f"{namespace}/other"}},
        {"spec": {"workload": {"name": "api"}}},
    ):
        refused = merge_patch(cluster, namespace, name, edit, kubeconfig=alice, check=False)
        assert refused.returncode != 0, edit
        assert "immutable" in refused.stderr, refused.stderr
    record = get(cluster, "negotiation", namespace, name)
    assert record["spec"] == pending["spec"]
    assert replicas(cluster, namespace) == 2


def test_no_approval_slips_through_while_the_operator_is_down(
    cluster: Cluster, emulator: WorkloadEmulator, operator: OperatorProcess, namespace: str
) -> None:
    pending = pending_web(cluster, emulator, namespace)
    name = pending["metadata"]["name"]
    operator.stop()
    try:
        mallory = cluster.user_kubeconfig("mallory")
        forged = cluster.kubectl(
            "annotate",
            "negotiation",
            name,
            "-n",
            namespace,
            "accord.dev/approval=approved",
            "accord.dev/approver=alice",
            kubeconfig=mallory,
            check=False,
        )
        assert forged.returncode != 0, "the webhook stays registered and fails closed while no operator answers"
        assert "accord.dev/approval" not in (
            get(cluster, "negotiation", namespace, name)["metadata"].get("annotations") or {}
        )
    finally:
        operator.start()
    alice = cluster.user_kubeconfig("alice")
    cluster.kubectl("annotate", "negotiation", name, "-n", namespace, "accord.dev/approval=approved", kubeconfig=alice)
    done = wait_until(
        lambda: in_phase(cluster, namespace, name, "Applied"), timeout=30, interval=0.5, message="the approval"
    )
    assert done["status"]["approval"]["user"] == "alice"


def test_a_record_edited_in_a_webhook_gap_is_never_acted_on(
    cluster: Cluster, emulator: WorkloadEmulator, operator: OperatorProcess, namespace: str
) -> None:
    """An administrator removed the webhooks (or a cluster lost them): an approver rewrites a pending
    decision's target beyond the policy's bounds and approves it. The operator acts on its own
    fingerprint of the decision, not on the record as it now reads."""
    pending = pending_web(cluster, emulator, namespace)
    name = pending["metadata"]["name"]
    operator.stop()
    try:
        remove_webhooks(cluster)
        alice = cluster.user_kubeconfig("alice")
        merge_patch(cluster, namespace, name, {"spec": {"outcome": {"target": {"replicas": 57}}}}, kubeconfig=alice)
        cluster.kubectl(
            "annotate",
            "negotiation",
            name,
            "-n",
            namespace,
            "accord.dev/approval=approved",
            "accord.dev/approver=alice",
            kubeconfig=alice,
        )
    finally:
        operator.start()
    failed = wait_until(
        lambda: in_phase(cluster, namespace, name, "Failed"), timeout=30, interval=0.5, message="the refusal"
    )
    assert "changed after the decision" in failed["status"]["message"]
    assert [e for e in events(cluster, namespace, "Tampered") if name in e.get("message", "")]
    time.sleep(2 * INTERVAL)
    assert replicas(cluster, namespace) <= 12, "nothing beyond the policy's bounds, ever"
    assert replicas(cluster, namespace) != 57


def test_two_operators_at_once_apply_each_decision_once(
    cluster: Cluster,
    emulator: WorkloadEmulator,
    operator: OperatorProcess,
    accord_prometheus: PrometheusServer,
    namespace: str,
    tmp_path: Path,
) -> None:
    """A rolling upgrade overlaps two operators: only the holder of the Lease writes, and when it dies
    the other takes over within the Lease's duration."""
    second = OperatorProcess(
        kubeconfig=cluster.kubeconfig,
        prometheus_url=accord_prometheus.url,
        log_path=tmp_path / "second.log",
        webhook=False,
    )
    second.start()
    try:
        setup(cluster, emulator, namespace, workloads=("web", "api"))
        for w in ("web", "api"):
            wait_until(lambda w=w: replicas(cluster, namespace, w) > 2, timeout=60, interval=1.0, message=f"{w} scaled")
        time.sleep(3 * INTERVAL)
        holders = [p for p in (operator, second) if "accord_leader 1.0" in p.metrics()]
        assert len(holders) == 1, "exactly one operator holds the Lease"
        for w in ("web", "api"):
            applied = [n for n in negotiations(cluster, namespace, w) if phase(n) == "Applied"]
            assert applied
            moves = [(n["spec"]["current"]["replicas"], n["spec"]["outcome"]["target"]["replicas"]) for n in applied]
            assert len(moves) == len(set(moves)), f"a decision applied twice: {moves}"
            for n in applied:
                said = [
                    e for e in events(cluster, namespace, "Negotiated") if n["metadata"]["name"] in e.get("message", "")
                ]
                assert len(said) == 1, said

        # The holder dies without giving the Lease up: the other takes over once it lapses.
        leader, follower = holders[0], second if holders[0] is operator else operator
        before = replicas(cluster, namespace)
        leader.kill()
        emulator.set_demand(namespace, "web", 2400.0)
        wait_until(
            lambda: replicas(cluster, namespace) > before, timeout=60, interval=1.0, message="the follower took over"
        )
        assert "accord_leader 1.0" in follower.metrics()
    finally:
        second.stop()
        if operator.process is None or operator.process.poll() is not None:
            operator.start()


def test_two_policies_selecting_one_workload_the_oldest_negotiates_and_both_say_so(
    cluster: Cluster, emulator: WorkloadEmulator, operator: OperatorProcess, namespace: str
) -> None:
    setup(cluster, emulator, namespace)
    time.sleep(1.5)  # creation times are in seconds: the second policy is strictly younger
    apply(cluster, policy(namespace, "second"))
    wait_until(lambda: replicas(cluster, namespace) > 2, timeout=60, interval=1.0, message="the scale-up")

    def conflict(name: str) -> dict[str, Any] | None:
        status = get(cluster, "negotiationpolicy", namespace, name).get("status") or {}
        found = {c["type"]: c for c in status.get("conditions") or []}.get("PolicyConflict")
        return found if found and found["status"] == "True" else None

    older = wait_until(lambda: conflict("default"), timeout=30, interval=1.0, message="the older policy's condition")
    younger = wait_until(lambda: conflict("second"), timeout=30, interval=1.0, message="the younger policy's condition")
    assert "this policy negotiates it" in older["message"]
    assert f"negotiated by {namespace}/default" in younger["message"]
    time.sleep(2 * INTERVAL)
    policies = {n["spec"]["policy"] for n in negotiations(cluster, namespace)}
    assert policies == {f"{namespace}/default"}, policies


def hpa(namespace: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": namespace, **meta},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2,
            "maxReplicas": 5,
            "targetCPUUtilizationPercentage": 70,
        },
    }


def test_an_hpa_gets_its_bounds_back_when_the_policy_lets_go(
    cluster: Cluster, emulator: WorkloadEmulator, operator: OperatorProcess, namespace: str
) -> None:
    apply(cluster, hpa(namespace))
    setup(cluster, emulator, namespace, coordinateAutoscalers=True)
    raised = wait_until(
        lambda: (h := get(cluster, "hpa", namespace, "web"))["spec"]["minReplicas"] > 2 and h,
        timeout=60,
        interval=1.0,
        message="the HPA's minReplicas raised",
    )
    assert raised["metadata"]["annotations"]["accord.dev/original-min-replicas"] == "2"
    assert raised["metadata"]["annotations"]["accord.dev/original-max-replicas"] == "5"
    cluster.kubectl("delete", "negotiationpolicy", "default", "-n", namespace)
    back = wait_until(
        lambda: (h := get(cluster, "hpa", namespace, "web"))["spec"]["minReplicas"] == 2 and h,
        timeout=30,
        interval=1.0,
        message="the HPA's bounds given back",
    )
    assert back["spec"]["maxReplicas"] == 5
    assert not any(k.startswith("accord.dev/original") for k in (back["metadata"].get("annotations") or {}))


KEDA_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "scaledobjects.keda.sh"},
    "spec": {
        "group": "keda.sh",
        "scope": "Namespaced",
        "names": {"kind": "ScaledObject", "plural": "scaledobjects", "singular": "scaledobject"},
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }
        ],
    },
}


def test_an_hpa_owned_by_keda_is_left_to_keda_and_the_policy_says_so(
    cluster: Cluster, emulator: WorkloadEmulator, operator: OperatorProcess, namespace: str
) -> None:
    apply(cluster, KEDA_CRD)
    cluster.kubectl("wait", "--for=condition=Established", "crd/scaledobjects.keda.sh", "--timeout=60s")
    apply(
        cluster,
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {"scaleTargetRef": {"name": "web"}},
        },
    )
    owner = get(cluster, "scaledobject", namespace, "web")
    reference = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "name": "web",
        "uid": owner["metadata"]["uid"],
        "controller": True,
    }
    apply(cluster, hpa(namespace, ownerReferences=[reference]))
    setup(cluster, emulator, namespace, coordinateAutoscalers=True)
    held = find(
        cluster, namespace, lambda n: "KEDA" in (n.get("status") or {}).get("message", ""), message="the held record"
    )
    assert phase(held) == "Held"
    conditions = {c["type"]: c for c in get(cluster, "negotiationpolicy", namespace, "default")["status"]["conditions"]}
    assert conditions["AutoscalerConflict"]["status"] == "True"
    assert "KEDA" in conditions["AutoscalerConflict"]["message"]
    time.sleep(2 * INTERVAL)
    untouched = get(cluster, "hpa", namespace, "web")
    assert untouched["spec"]["minReplicas"] == 2
    assert not [k for k in untouched["metadata"].get("annotations") or {} if k.startswith("accord.dev/")]
    assert replicas(cluster, namespace) == 2
