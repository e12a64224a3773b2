"""What the operator reads off workloads and Nodes: placement, pools (pure functions). Selection: test_scope.py."""

from __future__ import annotations

from typing import Any

import pytest

from accord.models.policy import NegotiationPolicySpec
from accord.operator.workloads import current_placement, placement_patch, pools, workload_view


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
    found = pools(POLICY, nodes, workload_view("Deployment", deployment()))
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


def test_a_placement_replaces_the_whole_selector_and_tolerations() -> None:
    patch = placement_patch(POLICY.placements[2])
    assert patch["nodeSelector"] == {"pool": "spot"}
    assert patch["tolerations"] == [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}]
    assert placement_patch(POLICY.placements[0])["tolerations"] is None
