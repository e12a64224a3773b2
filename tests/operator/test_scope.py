"""Which workloads a policy may reach, and when it asks for more than it may have (pure rules).

Each rule is pinned at its threshold: the policy's own namespace and the one next to it, a protected
namespace and an unprotected one, an opt-in of "true" and of "false", on the workload and on its namespace.
"""

from __future__ import annotations

from typing import Any

import pytest

from accord.models.common import from_wire
from accord.models.policy import ClusterNegotiationPolicySpec, NegotiationPolicySpec
from accord.operator.scope import (
    ALWAYS_PROTECTED,
    OPT_IN,
    PolicyRef,
    owner,
    protected_namespaces,
    reaches,
    scope_problems,
)
from accord.operator.state import OperatorConfig, State, parse_policy
from accord.operator.workloads import workload_view

AGENTS = [{"name": "cost"}]
PROTECTED = protected_namespaces(["payments"])
TEAM_A = PolicyRef("scale", "team-a")
CLUSTER = PolicyRef("fleet")


def namespaced(**spec: Any) -> NegotiationPolicySpec:
    return from_wire(NegotiationPolicySpec, {"agents": AGENTS, "selector": {"matchLabels": {"app": "web"}}, **spec})


def cluster(**spec: Any) -> ClusterNegotiationPolicySpec:
    body = {"agents": AGENTS, "agentNamespace": "accord-system", "selector": {"matchLabels": {"app": "web"}}, **spec}
    return from_wire(ClusterNegotiationPolicySpec, body)


def workload(namespace: str = "team-a", *, labels: dict[str, str] | None = None, kind: str = "Deployment", **ann: str):  # type: ignore[no-untyped-def]
    meta = {"name": "web", "namespace": namespace, "labels": {"app": "web", **(labels or {})}, "annotations": ann}
    return workload_view(kind, {"metadata": meta, "spec": {"replicas": 2}})


def reached(
    spec: NegotiationPolicySpec, ref: PolicyRef, w: Any, namespaces: dict[str, dict[str, str]] | None = None
) -> bool:
    labels = namespaces if namespaces is not None else {w.namespace: {}}
    return reaches(spec, ref, w, namespace_labels=labels, protected=PROTECTED)


# -- keys ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ref", "key", "kind"),
    [
        (PolicyRef("scale", "team-a"), "team-a/scale", "NegotiationPolicy"),
        (PolicyRef("fleet"), "fleet", "ClusterNegotiationPolicy"),
    ],
)
def test_keys_follow_client_go_and_round_trip(ref: PolicyRef, key: str, kind: str) -> None:
    assert (ref.key, ref.kind) == (key, kind)
    assert PolicyRef.from_key(key) == ref


def test_kubernetes_own_namespaces_are_always_protected() -> None:
    assert {"kube-system", "kube-public", "kube-node-lease"} == ALWAYS_PROTECTED
    assert protected_namespaces(["payments", ""]) == ALWAYS_PROTECTED | {"payments"}


# -- validity: asking for more than it may have ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("namespaces", "valid"),
    [
        ([], True),  # the default: its own namespace
        (["team-a"], True),  # naming its own namespace: just inside
        (["team-b"], False),  # another team's namespace: just outside
        (["team-a", "team-b"], False),  # own plus another is still more than it may have
        (["*"], False),
        (["team-a", "*"], False),
    ],
)
def test_a_namespaced_policy_may_name_only_its_own_namespace(namespaces: list[str], valid: bool) -> None:
    problems = scope_problems(namespaced(namespaces=namespaces), TEAM_A, protected=PROTECTED)
    assert (problems == []) is valid
    if not valid:
        assert "ClusterNegotiationPolicy" in problems[0] and "team-a" in problems[0]


@pytest.mark.parametrize(("namespace", "valid"), [("kube-system", False), ("payments", False), ("kube-systems", True)])
def test_a_namespaced_policy_in_a_protected_namespace_is_invalid(namespace: str, valid: bool) -> None:
    problems = scope_problems(namespaced(), PolicyRef("p", namespace), protected=PROTECTED)
    assert (problems == []) is valid


@pytest.mark.parametrize(
    ("namespaces", "valid"),
    [
        ([], True),
        (["*"], True),
        (["team-a", "team-b"], True),
        (["team-a", "kube-system"], False),
        (["kube-public"], False),
        (["kube-node-lease"], False),
        (["payments"], False),  # the configured list
        (["payment"], True),  # one letter short of it
    ],
)
def test_a_cluster_policy_may_not_name_a_protected_namespace(namespaces: list[str], valid: bool) -> None:
    problems = scope_problems(cluster(namespaces=namespaces), CLUSTER, protected=PROTECTED)
    assert (problems == []) is valid
    if not valid:
        assert "protected" in problems[0]


@pytest.mark.parametrize(("placements_allowed", "valid"), [(True, True), (False, False)])
def test_placements_need_an_install_that_may_change_pod_templates(placements_allowed: bool, valid: bool) -> None:
    spec = namespaced(placements=[{"name": "spot", "nodeSelector": {"pool": "spot"}}])
    problems = scope_problems(spec, TEAM_A, protected=PROTECTED, placements_allowed=placements_allowed)
    assert (problems == []) is valid
    assert scope_problems(namespaced(), TEAM_A, protected=PROTECTED, placements_allowed=False) == []


# -- selection -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("w", "expected"),
    [
        (workload("team-a"), True),
        (workload("team-b"), False),  # the namespace next door, opted in or not
        (workload("team-b", labels={OPT_IN: "true"}), False),
        (workload("team-a", labels={"app": "api"}), False),
        (workload("team-a", kind="StatefulSet"), True),
    ],
)
def test_a_namespaced_policy_selects_in_its_own_namespace_only(w: Any, expected: bool) -> None:
    assert reached(namespaced(), TEAM_A, w) is expected


def test_a_namespaced_policy_reaches_nothing_in_a_protected_namespace() -> None:
    assert not reached(namespaced(), PolicyRef("p", "payments"), workload("payments"))


def test_a_namespaced_policy_does_not_need_an_opt_in() -> None:
    assert reached(namespaced(), TEAM_A, workload("team-a"), namespaces={})


@pytest.mark.parametrize(
    ("labels", "annotations", "namespace_labels", "expected"),
    [
        ({}, {}, {}, False),  # nobody opted in
        ({OPT_IN: "true"}, {}, {}, True),  # the workload's label
        ({}, {OPT_IN: "true"}, {}, True),  # the workload's annotation
        ({}, {}, {OPT_IN: "true"}, True),  # the namespace's label
        ({}, {}, {OPT_IN: "false"}, False),
        ({OPT_IN: "false"}, {}, {OPT_IN: "true"}, False),  # the workload opts out of its namespace's opt-in
        ({}, {OPT_IN: "false"}, {OPT_IN: "true"}, False),
        ({OPT_IN: "True"}, {}, {}, True),
        ({OPT_IN: "maybe"}, {}, {}, False),  # not a yes
        ({OPT_IN: "maybe"}, {}, {OPT_IN: "true"}, True),  # not a no either: the namespace decides
    ],
)
def test_a_cluster_policy_needs_an_opt_in(
    labels: dict[str, str], annotations: dict[str, str], namespace_labels: dict[str, str], expected: bool
) -> None:
    w = workload("team-b", labels=labels, **annotations)
    assert reached(cluster(), CLUSTER, w, {"team-b": namespace_labels}) is expected


@pytest.mark.parametrize("namespace", ["kube-system", "kube-public", "kube-node-lease", "payments"])
def test_a_cluster_policy_never_reaches_a_protected_namespace_even_opted_in(namespace: str) -> None:
    w = workload(namespace, labels={OPT_IN: "true"})
    assert not reached(cluster(), CLUSTER, w, {namespace: {OPT_IN: "true"}})
    assert reached(cluster(), CLUSTER, workload("team-b", labels={OPT_IN: "true"}), {"team-b": {}})


@pytest.mark.parametrize(
    ("spec", "namespace", "labels", "expected"),
    [
        ({"namespaces": ["team-b"]}, "team-b", {}, True),
        ({"namespaces": ["team-b"]}, "team-c", {}, False),
        ({"namespaces": ["*"]}, "team-c", {}, True),
        ({"namespaceSelector": {"matchLabels": {"tier": "web"}}}, "team-b", {"tier": "web"}, True),
        ({"namespaceSelector": {"matchLabels": {"tier": "web"}}}, "team-b", {"tier": "db"}, False),
        ({"namespaces": ["team-b"], "namespaceSelector": {"matchLabels": {"tier": "web"}}}, "team-b", {}, False),
        (
            {"namespaces": ["team-b"], "namespaceSelector": {"matchLabels": {"tier": "web"}}},
            "team-c",
            {"tier": "web"},
            False,
        ),
    ],
)
def test_a_cluster_policy_reaches_the_namespaces_it_names_and_selects(
    spec: dict[str, Any], namespace: str, labels: dict[str, str], expected: bool
) -> None:
    w = workload(namespace, labels={OPT_IN: "true"})
    assert reached(cluster(**spec), CLUSTER, w, {namespace: labels}) is expected


def test_a_namespace_not_yet_seen_is_not_reached_by_a_cluster_policy() -> None:
    assert not reached(cluster(), CLUSTER, workload("team-b", labels={OPT_IN: "true"}), {})


# -- the operator's state applies the same rules ---------------------------------------------------------------------
def body(spec: dict[str, Any], version: str = "1") -> dict[str, Any]:
    return {"metadata": {"resourceVersion": version}, "spec": spec}


def test_state_parses_each_kind_by_its_key_and_refuses_out_of_scope_policies() -> None:
    state = State(config=OperatorConfig(protected_namespaces=("payments",)))
    state.policy_bodies["team-a/own"] = body({"agents": AGENTS})
    state.policy_bodies["team-a/greedy"] = body({"agents": AGENTS, "namespaces": ["*"]})
    state.policy_bodies["fleet"] = body({"agents": AGENTS, "agentNamespace": "accord-system"})
    state.policy_bodies["bad-fleet"] = body({"agents": AGENTS, "agentNamespace": "x", "namespaces": ["payments"]})
    assert isinstance(state.policy("fleet"), ClusterNegotiationPolicySpec)
    assert isinstance(state.policy("team-a/own"), NegotiationPolicySpec)
    assert state.policy("team-a/greedy") is None
    assert state.policy("bad-fleet") is None
    # A cluster policy's fields are no NegotiationPolicy's: the kind comes from the key, never from the body.
    state.policy_bodies["team-a/sneaky"] = body({"agents": AGENTS, "agentNamespace": "accord-system"})
    assert state.policy("team-a/sneaky") is None


def test_wake_for_wakes_only_the_policies_that_reach_the_workload() -> None:
    import asyncio

    state = State(config=OperatorConfig())
    state.policy_bodies["team-a/own"] = body({"agents": AGENTS})
    state.policy_bodies["team-b/greedy"] = body({"agents": AGENTS, "namespaces": ["team-a"]})
    for key in state.policy_bodies:
        state.wakeups[key] = asyncio.Event()
    state.wake_for(workload("team-a"))
    assert state.wakeups["team-a/own"].is_set()
    assert not state.wakeups["team-b/greedy"].is_set()


def test_parse_policy_refuses_a_cluster_policy_without_its_agents_namespace() -> None:
    with pytest.raises(ValueError, match="agentNamespace"):
        parse_policy(CLUSTER, {"agents": AGENTS})


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ([], None),
        ([("2026-01-01T00:00:00Z", "shop/b")], "shop/b"),
        ([("2026-01-01T00:00:01Z", "shop/a"), ("2026-01-01T00:00:00Z", "shop/b")], "shop/b"),  # a second older
        ([("2026-01-01T00:00:00Z", "shop/b"), ("2026-01-01T00:00:00Z", "shop/a")], "shop/a"),  # same second: by key
        ([("2026-01-01T00:00:00Z", "shop/b"), ("2025-12-31T23:59:59Z", "all-teams")], "all-teams"),
    ],
)
def test_at_most_one_policy_negotiates_a_workload_the_oldest(
    claims: list[tuple[str, str]], expected: str | None
) -> None:
    assert owner(claims) == expected
