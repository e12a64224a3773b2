"""Attacks on Accord's scope, tried on the real API server by people with exactly the RBAC the docs give them.

- A tenant who may write accord.dev objects only in namespace A (docs/install.md, "policy author")
  creates a NegotiationPolicy reaching ["*"], and one reaching ["B"]: each is Invalid (condition and
  Event, reason OutOfScope) and B's opted-in Deployment keeps its replicas and annotations over several
  rounds.
- That tenant cannot create a ClusterNegotiationPolicy: RBAC refuses it.
- A ClusterNegotiationPolicy made by the admin negotiates the workload of a namespace that opted in,
  and leaves alone a workload that did not opt in, an opted-in one in kube-system, and an opted-in one
  in a namespace the operator was told to protect (`accord run --protected-namespace`). One naming a
  protected namespace is Invalid.

The tenant is the admin's kubeconfig impersonating a user (`kubectl --as`), whose rights are only
the Role the docs give a policy author.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from accord_dev.cluster.emulator import WorkloadEmulator
from operator_process import OperatorProcess
from providers import Cluster, wait_until
from test_operator import (  # noqa: F401 - fixtures
    INTERVAL,
    accord_prometheus,
    agents,
    apply,
    crds,
    deployment,
    get,
    negotiations,
    operator,
    operator_kubeconfig,
    policy,
    prometheus_port,
    replicas,
    webhook_port,
)

RUN = secrets.token_hex(3)
PROTECTED = f"e2e-authz-protected-{RUN}"
OPT_IN = "accord.dev/negotiate"
RUN_LABEL = "accord.dev/e2e-authz"
FLEET_LABEL = "accord.dev/e2e-fleet"  # the workloads of the cluster policy's test (not tenant B's)
TENANT = f"tenant-{RUN}"
ROUNDS = 4  # rounds of the out-of-scope policies before the victim is checked


# -- the people -------------------------------------------------------------------------------------------------
def policy_author_role(namespace: str, user: str) -> list[dict[str, Any]]:
    """The namespace policy author of docs/install.md: Accord's namespaced objects in one namespace, nothing else."""
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "accord-policy-author", "namespace": namespace},
            "rules": [
                {
                    "apiGroups": ["accord.dev"],
                    "resources": ["agents", "negotiationpolicies"],
                    "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
                },
                {"apiGroups": ["accord.dev"], "resources": ["negotiations"], "verbs": ["get", "list", "watch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "accord-policy-author", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "accord-policy-author"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
    ]


def as_tenant(cluster: Cluster, *args: str, input: str | None = None) -> Any:
    return cluster.kubectl(f"--as={TENANT}", *args, input=input, check=False)


# -- fixtures ---------------------------------------------------------------------------------------------------
def make_namespace(cluster: Cluster, name: str, labels: dict[str, str] | None = None) -> str:
    body = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {RUN_LABEL: RUN, **(labels or {})}},
    }
    apply(cluster, body)
    wait_until(
        lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
        timeout=30,
        message=f"the default ServiceAccount in {name}",
    )
    return name


@pytest.fixture(scope="module")
def spaces(cluster: Cluster, emulator: WorkloadEmulator) -> Iterator[dict[str, str]]:
    """Namespaces of this module: a tenant's, a victim's, opted in or not, and the protected one."""
    made = {
        "a": make_namespace(cluster, f"e2e-authz-a-{RUN}"),
        "b": make_namespace(cluster, f"e2e-authz-b-{RUN}"),
        "ops": make_namespace(cluster, f"e2e-authz-ops-{RUN}"),
        "opted": make_namespace(cluster, f"e2e-authz-opted-{RUN}", {OPT_IN: "true"}),
        "silent": make_namespace(cluster, f"e2e-authz-silent-{RUN}"),
        "protected": make_namespace(cluster, PROTECTED, {OPT_IN: "true"}),
    }
    try:
        yield made
    finally:
        for ns, deploy in emulator.workloads():
            if ns in made.values():
                emulator.remove_workload(ns, deploy)
        for name in made.values():
            cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def operator_args() -> tuple[str, ...]:
    """test_operator.py's operator, watching the whole cluster, told to protect one namespace besides Kubernetes' own."""
    return (f"--protected-namespace={PROTECTED}",)


def workload(
    cluster: Cluster, emulator: WorkloadEmulator, namespace: str, *, opt_in: bool, name: str = "web", fleet: bool = True
) -> dict[str, Any]:
    body = deployment(namespace, name)
    labels = body["metadata"]["labels"]
    labels[RUN_LABEL] = RUN
    if fleet:
        labels[FLEET_LABEL] = RUN
    if not opt_in:
        del labels[OPT_IN]
    emulator.add_workload(namespace, name, demand=900.0)  # enough load for 13 replicas, were it negotiated
    apply(cluster, body)
    return body


def untouched(cluster: Cluster, namespace: str, name: str = "web") -> None:
    deploy = get(cluster, "deployment", namespace, name)
    assert deploy["spec"]["replicas"] == 2, f"{namespace}/{name} was scaled"
    annotations = deploy["metadata"].get("annotations") or {}
    assert not [k for k in annotations if k.startswith("accord.dev/")], annotations
    assert negotiations(cluster, namespace, name) == [], f"a Negotiation was recorded in {namespace}"


def condition(body: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (body.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


def invalid_with(cluster: Cluster, kind: str, name: str, namespace: str | None, reason: str) -> dict[str, Any]:
    where = ["-n", namespace] if namespace else []

    def marked() -> dict[str, Any] | None:
        found = cluster.kubectl("get", kind, name, *where, "-o", "json", check=False)
        if found.returncode != 0:
            return None
        body: dict[str, Any] = json.loads(found.stdout)
        cond = condition(body, "Invalid")
        return cond if cond and cond["status"] == "True" and cond["reason"] == reason else None

    return wait_until(marked, timeout=45, interval=1.0, message=f"{kind} {name} marked Invalid ({reason})")


def events_about(cluster: Cluster, namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
    items = get(cluster, "events", namespace)["items"]
    return [e for e in items if e["involvedObject"].get("name") == name and e.get("reason") == reason]


def running(request: pytest.FixtureRequest) -> OperatorProcess:
    process: OperatorProcess = request.getfixturevalue("operator")
    return process


def rounds_of(process: OperatorProcess, key: str) -> float:
    for line in process.metrics().splitlines():
        if line.startswith("accord_rounds_total{") and f'policy="{key}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# -- (a) a namespaced policy reaching out ----------------------------------------------------------------------
@pytest.mark.parametrize("reach", ["*", "b"], ids=["namespaces=*", "namespaces=other-team"])
def test_a_tenant_policy_reaching_another_namespace_is_invalid_and_touches_nothing(
    cluster: Cluster, emulator: WorkloadEmulator, request: pytest.FixtureRequest, spaces: dict[str, str], reach: str
) -> None:
    process = running(request)
    a, b = spaces["a"], spaces["b"]
    apply(cluster, *policy_author_role(a, TENANT))
    name = f"reach-{'all' if reach == '*' else 'b'}"
    if "web" not in [d["metadata"]["name"] for d in get(cluster, "deployments", b)["items"]]:
        workload(cluster, emulator, b, opt_in=True, fleet=False)
    manifests = [*agents(a), policy(a, name, namespaces=[reach if reach == "*" else b])]
    created = as_tenant(cluster, "apply", "-f", "-", input=yaml.safe_dump_all(manifests))
    assert created.returncode == 0, f"the tenant may write accord.dev objects in {a}: {created.stderr}"
    # The tenant could not have scaled B's Deployment themselves: that is what Accord must not do for them.
    denied = as_tenant(cluster, "auth", "can-i", "update", "deployments", "--subresource=scale", "-n", b)
    assert denied.stdout.strip() == "no"

    cond = invalid_with(cluster, "negotiationpolicy", name, a, "OutOfScope")
    assert "reaches only its own namespace" in cond["message"]
    assert "ClusterNegotiationPolicy" in cond["message"]
    ready = condition(get(cluster, "negotiationpolicy", a, name), "Ready")
    assert ready is not None and ready["status"] == "False"
    event = wait_until(
        lambda: events_about(cluster, a, name, "OutOfScope"), timeout=30, interval=1.0, message="the Event"
    )[0]
    assert event["type"] == "Warning" and "ClusterNegotiationPolicy" in event["message"]

    key = f"{a}/{name}"
    start = rounds_of(process, key)
    wait_until(
        lambda: rounds_of(process, key) >= start + ROUNDS,
        timeout=ROUNDS * INTERVAL * 3 + 30,
        interval=1.0,
        message=f"{ROUNDS} more rounds of {key}",
    )
    untouched(cluster, b)
    assert get(cluster, "negotiationpolicy", a, name)["status"]["workloads"] == 0


# -- (b) a tenant creating a cluster policy ----------------------------------------------------------------------
def cluster_policy(name: str, agent_namespace: str, **spec: Any) -> dict[str, Any]:
    body = policy("unused", name, **spec)
    body["kind"] = "ClusterNegotiationPolicy"
    del body["metadata"]["namespace"]
    body["spec"]["agentNamespace"] = agent_namespace
    body["spec"]["selector"] = {"matchLabels": {FLEET_LABEL: RUN}}
    return body


def test_a_tenant_cannot_create_a_cluster_policy(cluster: Cluster, spaces: dict[str, str]) -> None:
    apply(cluster, *policy_author_role(spaces["a"], TENANT))
    name = f"tenant-fleet-{RUN}"
    refused = as_tenant(
        cluster, "create", "-f", "-", input=yaml.safe_dump(cluster_policy(name, spaces["a"], namespaces=["*"]))
    )
    assert refused.returncode != 0
    assert "forbidden" in refused.stderr and "clusternegotiationpolicies" in refused.stderr
    assert cluster.kubectl("get", "clusternegotiationpolicy", name, check=False).returncode != 0
    can = as_tenant(cluster, "auth", "can-i", "create", "clusternegotiationpolicies.accord.dev")
    assert can.stdout.strip() == "no"


# -- (c) an admin's cluster policy --------------------------------------------------------------------------------
@pytest.fixture
def kube_system_workload(cluster: Cluster, emulator: WorkloadEmulator) -> Iterator[str]:
    name = f"authz-{RUN}"
    workload(cluster, emulator, "kube-system", opt_in=True, name=name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "deployment", name, "-n", "kube-system", "--wait=false", check=False)
        emulator.remove_workload("kube-system", name)


def test_a_cluster_policy_negotiates_only_opted_in_workloads_outside_protected_namespaces(
    cluster: Cluster,
    emulator: WorkloadEmulator,
    request: pytest.FixtureRequest,
    spaces: dict[str, str],
    kube_system_workload: str,
) -> None:
    process = running(request)
    ops = spaces["ops"]
    apply(cluster, *agents(ops))
    workload(cluster, emulator, spaces["opted"], opt_in=False)  # its namespace opted in for it
    workload(cluster, emulator, spaces["silent"], opt_in=False)  # nobody opted in
    workload(cluster, emulator, spaces["protected"], opt_in=True)  # opted in twice, but protected
    name = f"fleet-{RUN}"
    try:
        apply(cluster, cluster_policy(name, ops, namespaces=["*"]))
        wait_until(
            lambda: replicas(cluster, spaces["opted"]) >= 12, timeout=120, interval=1.0, message="the opted-in scale-up"
        )
        record = next(n for n in negotiations(cluster, spaces["opted"]) if n["status"].get("phase") == "Applied")
        assert record["metadata"]["namespace"] == spaces["opted"], "the record lives beside its workload"
        assert record["spec"]["policy"] == name, "and names the cluster policy (no namespace)"
        assert record["metadata"]["labels"]["accord.dev/policy"] == name
        key = name
        start = rounds_of(process, key)
        wait_until(lambda: rounds_of(process, key) >= start + 2, timeout=60, interval=1.0, message="two more rounds")
        for namespace, deploy in (
            (spaces["silent"], "web"),
            (spaces["protected"], "web"),
            ("kube-system", kube_system_workload),
        ):
            untouched(cluster, namespace, deploy)
        body = json.loads(cluster.kubectl("get", "clusternegotiationpolicy", name, "-o", "json").stdout)
        assert body["status"]["workloads"] == 1
        assert condition(body, "Ready")["status"] == "True"  # type: ignore[index]
    finally:
        cluster.kubectl("delete", "clusternegotiationpolicy", name, "--wait=false", check=False)


@pytest.mark.usefixtures("operator")
@pytest.mark.parametrize("protected", ["kube-system", PROTECTED], ids=["kube-system", "configured"])
def test_a_cluster_policy_naming_a_protected_namespace_is_invalid(
    cluster: Cluster, spaces: dict[str, str], protected: str
) -> None:
    name = f"greedy-{'kube' if protected == 'kube-system' else 'conf'}-{RUN}"
    try:
        apply(cluster, cluster_policy(name, spaces["ops"], namespaces=[spaces["opted"], protected]))
        cond = invalid_with(cluster, "clusternegotiationpolicy", name, None, "OutOfScope")
        assert protected in cond["message"] and "protected" in cond["message"]
        # A cluster-scoped object's Events go to the default namespace.
        wait_until(
            lambda: events_about(cluster, "default", name, "OutOfScope"), timeout=30, interval=1.0, message="the Event"
        )
    finally:
        cluster.kubectl("delete", "clusternegotiationpolicy", name, "--wait=false", check=False)
