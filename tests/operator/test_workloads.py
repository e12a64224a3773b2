"""What the operator reads off workloads and Nodes: placement, pools (pure functions). Selection: test_scope.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from accord.models.policy import NegotiationPolicySpec
from accord.operator.workloads import (
    Requests,
    autoscaler_view,
    current_placement,
    node_view,
    placed_scheduling,
    pod_requests,
    pools,
    rollout_of,
    room,
    usage,
    workload_view,
)


def deployment(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "uid": "u1",
            "labels": {"app": "web", "tier": "front"},
            "annotations": {},
            "resourceVersion": "7",
            "generation": 3,
        },
        "spec": {"replicas": 4, "template": {"spec": {"nodeSelector": {"pool": "standard", "disk": "ssd"}}}},
        "status": {"readyReplicas": 3},
    }
    for key, value in over.items():
        body[key] = {**body[key], **value}
    return body


POLICY = NegotiationPolicySpec.model_validate(
    {
        "agents": [{"name": "cost"}],
        "selector": {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "edge"]}],
        },
        "placements": [
            {"name": "standard", "nodeSelector": {"pool": "standard"}, "pricePerPodHour": 0.1},
            {"name": "standard-ssd", "nodeSelector": {"pool": "standard", "disk": "ssd"}, "pricePerPodHour": 0.12},
            {
                "name": "spot",
                "nodeSelector": {"pool": "spot"},
                "capacityType": "spot",
                "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
            },
        ],
    }
)


def test_workload_view_reads_what_the_engine_needs() -> None:
    w = workload_view("Deployment", deployment())
    assert (w.key, w.replicas, w.ready, w.uid, w.resource_version) == ("Deployment/shop/web", 4, 3, "u1", "7")
    assert not w.paused
    assert workload_view("Deployment", deployment(metadata={"annotations": {"accord.dev/paused": "true"}})).paused


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ({"pool": "standard", "disk": "ssd"}, "standard-ssd"),  # the most specific match wins
        ({"pool": "standard"}, "standard"),
        ({"pool": "spot"}, "spot"),
        ({}, "current"),
        ({"pool": "gpu"}, "current"),
    ],
)
def test_current_placement(selector: dict[str, str], expected: str) -> None:
    body = deployment(spec={"replicas": 4, "template": {"spec": {"nodeSelector": selector}}})
    assert current_placement(POLICY, workload_view("Deployment", body)) == expected


def test_pools_are_what_their_nodes_show() -> None:
    nodes = [
        {
            "pool": "standard",
            "disk": "ssd",
            "topology.kubernetes.io/region": "eu",
            "topology.kubernetes.io/zone": "a",
            "hardened": "true",
        },
        {
            "pool": "standard",
            "topology.kubernetes.io/region": "eu",
            "topology.kubernetes.io/zone": "b",
            "hardened": "true",
        },
        {"pool": "spot", "topology.kubernetes.io/region": "us", "topology.kubernetes.io/zone": "c"},
    ]
    views = [node_view({"metadata": {"name": f"n{i}", "labels": labels}}) for i, labels in enumerate(nodes)]
    found = pools(POLICY, views, workload_view("Deployment", deployment()))
    assert found["standard"].nodes == 2
    assert found["standard"].zones == {"a", "b"}
    assert found["standard"].node_labels == {
        "pool": "standard",
        "topology.kubernetes.io/region": "eu",
        "hardened": "true",
    }
    assert found["standard-ssd"].nodes == 1
    assert found["spot"].regions == {"us"}
    assert found["spot"].capacity_type == "spot"
    assert found["spot"].price_per_pod_hour is None


# -- a move between pools keeps what the workload had of its own -----------------------------------------------
ZONE_A = {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}
ZONE_B = {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["b"]}
LINUX = {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}
SPREAD = {"weight": 10, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {}}}
DEDICATED = {"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}
SPOT = {"key": "spot", "operator": "Exists", "effect": "NoSchedule"}

MOVES = NegotiationPolicySpec.model_validate(
    {
        "agents": [{"name": "cost"}],
        "placements": [
            {
                "name": "a",
                "nodeSelector": {"pool": "a"},
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{"matchExpressions": [ZONE_A]}]
                        }
                    }
                },
            },
            {
                "name": "b",
                "nodeSelector": {"pool": "b", "disk": "ssd"},
                "tolerations": [SPOT],
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{"matchExpressions": [ZONE_B]}]
                        }
                    }
                },
            },
            {"name": "plain", "nodeSelector": {"pool": "plain"}},
        ],
    }
)


def pool(name: str) -> Any:
    return next(p for p in MOVES.placements if p.name == name)


def own_pod_spec(**over: Any) -> dict[str, Any]:
    """A workload on pool a, with a selector key, a toleration and affinity terms of its own."""
    spec: dict[str, Any] = {
        "nodeSelector": {"pool": "a", "kubernetes.io/os": "linux"},
        "tolerations": [DEDICATED],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [LINUX, ZONE_A]}]
                }
            },
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [SPREAD]},
        },
        "containers": [{"name": "app", "image": "app"}],
    }
    spec.update(over)
    return spec


def test_a_move_between_pools_keeps_the_workloads_own_constraints() -> None:
    moved = placed_scheduling(own_pod_spec(), MOVES, pool("b"))
    assert moved["nodeSelector"] == {"kubernetes.io/os": "linux", "pool": "b", "disk": "ssd"}
    assert moved["tolerations"] == [DEDICATED, SPOT]
    assert moved["affinity"] == {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [LINUX, ZONE_B]}]
            }
        },
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [SPREAD]},
    }
    back = placed_scheduling({**own_pod_spec(), **moved}, MOVES, pool("a"))
    assert back == {k: own_pod_spec()[k] for k in ("nodeSelector", "tolerations", "affinity")}


def test_the_target_pools_value_wins_over_the_workloads_for_a_shared_key() -> None:
    spec = own_pod_spec(nodeSelector={"pool": "legacy", "disk": "hdd"})
    moved = placed_scheduling(spec, MOVES, pool("b"))
    assert moved["nodeSelector"] == {"pool": "b", "disk": "ssd"}
    # A pair no pool sets is the workload's own: a move to a pool without that key keeps it.
    assert placed_scheduling(spec, MOVES, pool("plain"))["nodeSelector"] == {"pool": "plain", "disk": "hdd"}
    # Only a pool's exact pair is the pool's: "disk: ssd" leaves with pool b, "disk: hdd" would not.
    assert placed_scheduling({**spec, **moved}, MOVES, pool("plain"))["nodeSelector"] == {"pool": "plain"}


def test_removing_the_last_pool_term_leaves_no_empty_structure() -> None:
    only_pools = {
        "nodeSelector": {"pool": "a"},
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [ZONE_A]}]
                }
            }
        },
        "tolerations": [SPOT],
    }
    moved = placed_scheduling(only_pools, MOVES, pool("plain"))
    assert moved == {"nodeSelector": {"pool": "plain"}, "tolerations": None, "affinity": None}
    spec = own_pod_spec()
    spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"] = [
        {"matchExpressions": [ZONE_A]}
    ]
    moved = placed_scheduling(spec, MOVES, pool("plain"))
    assert moved["affinity"] == {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [SPREAD]}}
    assert placed_scheduling({"containers": []}, MOVES, pool("plain")) == {
        "nodeSelector": {"pool": "plain"},
        "tolerations": None,
        "affinity": None,
    }


def test_required_node_terms_are_anded_with_each_of_the_workloads_ored_terms() -> None:
    windows = {"key": "kubernetes.io/os", "operator": "In", "values": ["windows"]}
    spec = {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [LINUX]}, {"matchExpressions": [windows]}]
                }
            }
        }
    }
    moved = placed_scheduling(spec, MOVES, pool("a"))
    terms = moved["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [LINUX, ZONE_A]}, {"matchExpressions": [windows, ZONE_A]}]
    back = placed_scheduling({**spec, **moved}, MOVES, pool("plain"))
    assert back["affinity"] == spec["affinity"]


def test_tolerations_compare_in_one_form() -> None:
    # The API server may hand back `operator` unset (Equal) and no empty strings; the pool's stays recognised.
    spec = {"tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule", "value": ""}, {"key": "x"}]}
    moved = placed_scheduling(spec, MOVES, pool("a"))
    assert moved["tolerations"] == [{"key": "x"}]
    again = placed_scheduling({"tolerations": [SPOT, DEDICATED]}, MOVES, pool("b"))
    assert again["tolerations"] == [DEDICATED, SPOT]


def hpa_body(**meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "shop", **meta},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 2, "maxReplicas": 10},
    }


def test_an_hpa_view_knows_its_target_bounds_and_what_accord_raised() -> None:
    plain = autoscaler_view(hpa_body())
    assert (plain.target, plain.min_replicas, plain.max_replicas, plain.original, plain.keda_owner) == (
        "Deployment/shop/web",
        2,
        10,
        None,
        None,
    )
    raised = autoscaler_view(
        hpa_body(annotations={"accord.dev/original-min-replicas": "2", "accord.dev/original-max-replicas": "10"})
    )
    assert raised.original == (2, 10)
    unset_min = autoscaler_view(
        hpa_body(annotations={"accord.dev/original-min-replicas": "", "accord.dev/original-max-replicas": "10"})
    )
    assert unset_min.original == (None, 10)
    garbled = autoscaler_view(hpa_body(annotations={"accord.dev/original-max-replicas": "ten"}))
    assert garbled.original is None


@pytest.mark.parametrize(
    ("owner", "keda"),
    [
        ({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": "web"}, "ScaledObject web"),
        ({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, None),
        ({"apiVersion": "keda.shop/v1", "kind": "ScaledObject", "name": "web"}, None),
    ],
)
def test_an_hpa_owned_by_keda_is_known_as_such(owner: dict[str, str], keda: str | None) -> None:
    assert autoscaler_view(hpa_body(ownerReferences=[{**owner, "uid": "u"}])).keda_owner == keda


# -- the rollout, from the status and the pods ----------------------------------------------------------------
def pending_pod(name: str, since: str, *, reason: str = "Unschedulable", deleted: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if deleted:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": meta,
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": reason,
                    "message": f"0/6 nodes are available ({name})",
                    "lastTransitionTime": since,
                }
            ],
        },
    }


def test_the_rollout_is_read_off_the_status_and_the_oldest_unschedulable_pod() -> None:
    body = deployment(
        spec={"selector": {"matchLabels": {"app": "web"}}},
        status={
            "observedGeneration": 3,
            "replicas": 5,
            "updatedReplicas": 2,
            "availableReplicas": 3,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "message": "going"},
            ],
        },
    )
    view = workload_view("Deployment", body)
    assert view.selector == {"app": "web"}
    running = {"metadata": {"name": "web-a"}, "status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}}
    pods = [
        running,
        pending_pod("web-new", "2026-01-01T00:01:00Z"),
        pending_pod("web-old", "2026-01-01T00:00:30Z"),
        pending_pod("web-gone", "2026-01-01T00:00:00Z", deleted=True),
    ]
    rollout = rollout_of(view, pods)
    assert (rollout.generation, rollout.observed_generation, rollout.replicas) == (3, 3, 4)
    assert (rollout.updated, rollout.available, rollout.total) == (2, 3, 5)
    assert rollout.progressing == ("True", "ReplicaSetUpdated", "going")
    assert rollout.unschedulable_since == datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC).timestamp()
    assert rollout.unschedulable == "pod web-old Unschedulable: 0/6 nodes are available (web-old)"
    assert rollout.unsettled == "2 of 4 replicas are updated"


def test_a_workload_without_stuck_pods_has_no_unschedulable_time() -> None:
    status = {
        "observedGeneration": 3,
        "replicas": 4,
        "readyReplicas": 4,
        "currentRevision": "db-1",
        "updateRevision": "db-2",
    }
    view = workload_view("StatefulSet", deployment(status=status))
    rollout = rollout_of(view, [])
    assert rollout.revisions == ("db-1", "db-2")
    assert workload_view("Deployment", deployment()).revisions is None
    assert (rollout.unschedulable_since, rollout.unschedulable, rollout.progressing) == (None, "", None)
    assert rollout.available == 4  # a StatefulSet's Ready replicas stand for its available ones


# -- a pool's room for the workload's pods ------------------------------------------------------------------------
def node(name: str, *, cpu: str = "4", memory: str = "8Gi", pods: str = "110", **extra: Any) -> Any:
    body: dict[str, Any] = {
        "metadata": {"name": name, "labels": {"pool": extra.pop("pool", "spot")}},
        "spec": extra.pop("spec", {}),
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
            "conditions": [{"type": "Ready", "status": extra.pop("ready", "True")}],
        },
    }
    return node_view(body)


def pod_on(node_name: str, cpu: str, memory: str = "0", phase: str = "Running") -> dict[str, Any]:
    return {
        "spec": {"nodeName": node_name, "containers": [{"resources": {"requests": {"cpu": cpu, "memory": memory}}}]},
        "status": {"phase": phase},
    }


HALF_A_CPU = Requests(cpu=0.5, memory=2**30, pods=1)


def test_what_a_pod_requests_is_its_containers_sum_or_its_largest_init_container() -> None:
    spec = {
        "containers": [
            {"resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}},
            {"resources": {"requests": {"cpu": "250m"}}},
            {"name": "no-requests"},
        ],
        "initContainers": [{"resources": {"requests": {"cpu": "2", "memory": "64Mi"}}}],
    }
    assert pod_requests(spec) == Requests(cpu=2.0, memory=256 * 2**20, pods=1)
    assert pod_requests({"containers": [{"resources": {"requests": {"cpu": "not a quantity"}}}]}) == Requests(pods=1)


@pytest.mark.parametrize(("used_cpu", "fits"), [("1", 6), ("1001m", 5)])
def test_room_is_what_each_nodes_free_cpu_allows(used_cpu: str, fits: int) -> None:
    """4 CPU allocatable, 1 requested by its pods: 3 free, six pods of half a CPU; a millicore more, five."""
    used = usage([pod_on("n1", used_cpu)])
    assert room([node("n1")], used, HALF_A_CPU, ())[0] == fits


@pytest.mark.parametrize(("pods", "fits"), [("3", 2), ("2", 1)])
def test_room_is_bounded_by_the_nodes_pod_slots(pods: str, fits: int) -> None:
    used = usage([pod_on("n1", "0")])
    assert room([node("n1", pods=pods)], used, HALF_A_CPU, ())[0] == fits


@pytest.mark.parametrize(("memory", "fits"), [("3Gi", 3), ("3071Mi", 2)])
def test_room_is_bounded_by_free_memory(memory: str, fits: int) -> None:
    assert room([node("n1", memory=memory)], {}, HALF_A_CPU, ())[0] == fits


def test_ended_and_unbound_pods_hold_nothing() -> None:
    used = usage([pod_on("n1", "3", phase="Succeeded"), pod_on("n1", "3", phase="Failed"), pod_on("", "3")])
    assert used == {}


def test_cordoned_not_ready_and_untolerated_nodes_give_no_room() -> None:
    taint = {"key": "dedicated", "value": "batch", "effect": "NoSchedule"}
    nodes = [
        node("ok"),
        node("cordoned", spec={"unschedulable": True}),
        node("not-ready", ready="False"),
        node("tainted", spec={"taints": [taint]}),
    ]
    fits, why = room(nodes, {}, HALF_A_CPU, ())
    assert fits == 8 and "on 1 schedulable nodes" in why
    tolerated = [{"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule"}]
    assert room(nodes, {}, HALF_A_CPU, tolerated)[0] == 16
    assert room(nodes, {}, HALF_A_CPU, [{"operator": "Exists"}])[0] == 16


def test_a_pools_room_counts_only_its_own_nodes_and_is_unknown_without_the_pods() -> None:
    views = [node("s1", pool="spot"), node("s2", pool="spot"), node("d1", pool="standard")]
    workload = workload_view("Deployment", deployment())
    found = pools(POLICY, views, workload, usage([pod_on("s1", "4")]))
    # The workload requests nothing but a pod slot: 110 a node, one taken on s1.
    assert (found["spot"].nodes, found["spot"].room) == (2, 219)
    assert found["spot"].room_why.startswith("room for 219 pods on 2 schedulable nodes")
    assert pools(POLICY, views, workload)["spot"].room is None
    silent = [
        node_view({"metadata": {"name": n, "labels": {"pool": "spot"}}, "status": {"allocatable": {"pods": "110"}}})
        for n in ("s1", "s2")
    ]
    assert pools(POLICY, silent, workload, {})["spot"].room is None, (
        "no kubelet of the pool ever reported its conditions"
    )
