"""Pods that run: the real kube-scheduler binds them to simulated Nodes whose simulated kubelets start them.

What a user checks with `kubectl get pods -o wide` (the NODE, STATUS and READY columns):

- a Deployment's pods are scheduled onto the simulated nodes that tolerate and match them, go Running,
  and are Ready only once their start-up delay has passed;
- a negotiated placement move (two pools, the cheap one chosen on the cost agent's prices) puts every
  pod of the workload on nodes of the target pool, Ready, the workload's own selector key and
  toleration intact: the scheduler, not a field comparison, proves the tolerations were swapped;
  the decision is Applied only once that rollout has completed, every pod Ready on the target pool;
- a move the scheduler cannot place (the pool's affinity names a zone it lacks) fails with its reason once its pods have
  been Unschedulable for the policy's bound, is rolled back without a Ready pod lost, and is not
  tried again at the next rounds (one Held record);
- a spot node reclaimed under a notice is tainted and drained, its pods come back Ready on the
  pool's other node, and the Node is gone once the notice has run out;
- with the emulator counting Ready pods (``replica_source="status"``), demand is served only by pods
  that are Ready: a scale-up's new pods serve once their start-up delay has passed, not before;
- a drained node is cordoned and its pods move, a PodDisruptionBudget respected; a node that stops
  heartbeating is marked NotReady and unreachable by the node lifecycle controller, and its pods
  stop being Ready, as on a real cluster;
- a pool whose nodes have no room (another Deployment's requests fill their CPU) is not chosen, the
  record's poolCapacity gate says why in the pool's figures, and the move is made once it has room;
- while the security signal is active, the security agent's two-zone requirement moves the workload
  off a one-zone pool, and its pods then run in both zones.

The simulated nodes (accord_dev.cluster.kubelets) belong to this module: pools named with a random
prefix, deleted at its end.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from accord_dev.cluster.emulator import WorkloadEmulator
from accord_dev.cluster.kubelets import READY_AFTER_ANNOTATION, RECLAIM_TAINT_KEY, Pool, SimulatedKubelets, Taint
from providers import Cluster, wait_until
from test_operator import (  # noqa: F401 - fixtures
    INTERVAL,
    accord_prometheus,
    applied_move,
    apply,
    crds,
    deployment,
    find,
    get,
    negotiated_move,
    negotiations,
    offer_placements,
    operator,
    operator_args,
    operator_kubeconfig,
    phase,
    prometheus_port,
    webhook_port,
)

PREFIX = f"e2e-{secrets.token_hex(2)}-"
POOL_KEY = "e2e-pool"


def pool_label(pool: str) -> str:
    return f"{PREFIX}{pool}"


@pytest.fixture(scope="module")
def kubelets(cluster: Cluster) -> Iterator[SimulatedKubelets]:
    pools = [
        Pool("general", 2, {POOL_KEY: pool_label("general")}, cpu="2", memory="8Gi"),
        Pool("dear", 2, {POOL_KEY: pool_label("dear")}, (Taint("pool", "dear"),)),
        Pool("cheap", 2, {POOL_KEY: pool_label("cheap")}, (Taint("pool", "cheap"),)),
        Pool("spot", 2, {POOL_KEY: pool_label("spot")}, (Taint("pool", "spot"),)),
        Pool("edge", 2, {POOL_KEY: pool_label("edge")}, (Taint("pool", "edge"),)),
    ]
    with SimulatedKubelets(cluster.api_client(), pools, prefix=PREFIX) as nodes:
        yield nodes


def pods_wide(cluster: Cluster, namespace: str, selector: str = "app=web") -> list[dict[str, str]]:
    """`kubectl get pods -o wide`, as a user reads it: one row per pod, by column."""
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "wide", "--no-headers").stdout
    rows = []
    for line in out.splitlines():
        cells = line.split()
        if cells:
            rows.append({"name": cells[0], "ready": cells[1], "status": cells[2], "ip": cells[5], "node": cells[6]})
    return rows


def all_ready_on(rows: list[dict[str, str]], nodes: list[str], count: int) -> list[dict[str, str]] | None:
    """The rows, if exactly `count` pods are listed, every one Running, 1/1 Ready, on one of `nodes`."""
    ok = len(rows) == count and all(
        r["status"] == "Running" and r["ready"] == "1/1" and r["node"] in nodes for r in rows
    )
    return rows if ok else None


def pinned(namespace: str, pool: str, replicas: int, *, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A Deployment that selects `pool` and tolerates its taint."""
    body = deployment(namespace, "web", replicas=replicas)
    spec = body["spec"]["template"]["spec"]
    spec["nodeSelector"] = {POOL_KEY: pool_label(pool)}
    spec["tolerations"] = [{"key": "pool", "operator": "Equal", "value": pool, "effect": "NoSchedule"}]
    if annotations:
        body["spec"]["template"]["metadata"]["annotations"] = annotations
    return body


def seconds_to_ready(pod: dict[str, Any]) -> float:
    def at(stamp: str) -> float:
        return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()

    ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    return at(ready["lastTransitionTime"]) - at(pod["status"]["startTime"])


# -- tests -------------------------------------------------------------------------------------------------------
def test_pods_are_scheduled_onto_simulated_nodes_and_become_ready(
    cluster: Cluster, kubelets: SimulatedKubelets, namespace: str
) -> None:
    nodes = cluster.kubectl("get", "nodes", "-l", f"{POOL_KEY}={pool_label('general')}", "--no-headers").stdout
    assert [line.split()[1] for line in nodes.splitlines()] == ["Ready", "Ready"]
    leases = json.loads(cluster.kubectl("get", "lease", "-n", "kube-node-lease", "-o", "json").stdout)["items"]
    assert {lease["metadata"]["name"] for lease in leases} >= set(kubelets.node_names)

    general = kubelets.nodes_of("general")
    web = deployment(namespace, "web", replicas=3)
    web["spec"]["template"]["spec"]["nodeSelector"] = {POOL_KEY: pool_label("general")}
    web["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {
        "tcpSocket": {"port": 80},
        "initialDelaySeconds": 4,
    }
    apply(cluster, web)
    rows = wait_until(
        lambda: all_ready_on(pods_wide(cluster, namespace), general, 3),
        timeout=60,
        message="3 Ready pods on the general pool",
    )
    assert len({r["ip"] for r in rows}) == 3, "each pod has an address of its own"
    assert {r["node"] for r in rows} <= set(general)
    # The readinessProbe's initialDelaySeconds is the start-up delay: not Ready before 4 s, Ready soon after.
    for pod in get(cluster, "pods", namespace)["items"]:
        assert 4 <= seconds_to_ready(pod) <= 7, pod["metadata"]["name"]
    shown = get(cluster, "deployment", namespace, "web")["status"]
    assert shown["readyReplicas"] == shown["availableReplicas"] == 3

    # The annotation overrides the probe; scaling down deletes pods gracefully, and they are gone.
    cluster.kubectl(
        "patch", "deployment", "web", "-n", namespace, "--type=merge", "-p",
        json.dumps({"spec": {"replicas": 1, "template": {"metadata": {"annotations": {READY_AFTER_ANNOTATION: "0"}}}}}),
    )  # fmt: skip
    rows = wait_until(
        lambda: all_ready_on(pods_wide(cluster, namespace), general, 1),
        timeout=60,
        message="1 Ready pod after the rollout and the scale-down",
    )
    pod = get(cluster, "pod", namespace, rows[0]["name"])
    assert seconds_to_ready(pod) <= 2


def test_pods_that_fit_no_node_stay_pending_with_the_schedulers_reason(
    cluster: Cluster, kubelets: SimulatedKubelets, namespace: str
) -> None:
    """The dear pool is tainted: a pod selecting it without the toleration is not scheduled."""
    web = deployment(namespace, "web", replicas=1)
    web["spec"]["template"]["spec"]["nodeSelector"] = {POOL_KEY: pool_label("dear")}
    apply(cluster, web)

    def unschedulable() -> str | None:
        for pod in get(cluster, "pods", namespace)["items"]:
            for c in pod["status"].get("conditions") or []:
                if c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable":
                    return str(c["message"])
        return None

    message = wait_until(unschedulable, timeout=30, message="the scheduler's Unschedulable condition")
    assert "taint" in message
    rows = pods_wide(cluster, namespace)
    assert [(r["status"], r["node"]) for r in rows] == [("Pending", "<none>")]


@pytest.mark.usefixtures("operator")
def test_a_negotiated_move_puts_every_pod_on_the_target_pool_ready(
    cluster: Cluster, emulator: WorkloadEmulator, kubelets: SimulatedKubelets, namespace: str
) -> None:
    """Moved from the dear pool to the cheap one on the cost agent's prices: every pod lands on a cheap
    node and is Ready; the workload's own selector key and toleration are still there."""
    own_toleration = {"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}
    placements = [
        {
            "name": name,
            "nodeSelector": {POOL_KEY: pool_label(name)},
            "tolerations": [{"key": "pool", "operator": "Equal", "value": name, "effect": "NoSchedule"}],
            "pricePerPodHour": price,
        }
        for name, price in (("dear", 1.0), ("cheap", 0.1))
    ]
    # Each pod is Ready 3 s after it starts: the rollout takes a while, and the decision waits for it.
    web = pinned(namespace, "dear", 3, annotations={READY_AFTER_ANNOTATION: "3"})
    web["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/os"] = "linux"
    web["spec"]["template"]["spec"]["tolerations"].insert(0, own_toleration)
    dear, cheap = kubelets.nodes_of("dear"), kubelets.nodes_of("cheap")
    # The workload runs on the dear pool before any policy reaches it.
    apply(cluster, web)
    wait_until(lambda: all_ready_on(pods_wide(cluster, namespace), dear, 3), timeout=60, message="3 Ready pods on dear")

    moved = negotiated_move(cluster, emulator, namespace, placements, "cheap")
    assert moved["spec"]["current"]["placement"] == "dear"
    # Applied only once the rollout completed: at that moment every pod already runs Ready on the cheap pool.
    target = moved["spec"]["outcome"]["target"]["replicas"]
    serving = [r for r in pods_wide(cluster, namespace) if r["status"] != "Terminating"]  # an old pod on its way out
    assert all_ready_on(serving, cheap, target), serving
    assert moved["status"]["rolloutGeneration"] >= 2
    assert "rolled out" in moved["status"]["message"]
    assert {"RollingOut", "Applied"} <= event_reasons(cluster, namespace, moved["metadata"]["name"])

    def moved_and_ready() -> list[dict[str, str]] | None:
        wanted = int(get(cluster, "deployment", namespace, "web")["spec"]["replicas"])
        return all_ready_on(pods_wide(cluster, namespace), cheap, wanted)

    rows = wait_until(moved_and_ready, timeout=90, message="every pod of web Ready on the cheap pool")
    assert not {r["node"] for r in rows} & set(dear)
    for row in rows:
        pod = get(cluster, "pod", namespace, row["name"])["spec"]
        assert pod["nodeSelector"] == {"kubernetes.io/os": "linux", POOL_KEY: pool_label("cheap")}
        assert own_toleration in pod["tolerations"]
        assert not [t for t in pod["tolerations"] if t.get("key") == "pool" and t.get("value") == "dear"]
    status = get(cluster, "deployment", namespace, "web")["status"]
    assert status["updatedReplicas"] == status["readyReplicas"] == status["replicas"] == len(rows)


@pytest.mark.usefixtures("operator")
def test_a_move_the_scheduler_cannot_place_fails_with_its_reason_and_is_rolled_back(
    cluster: Cluster, emulator: WorkloadEmulator, kubelets: SimulatedKubelets, namespace: str
) -> None:
    """The edge pool is the cheapest on offer and has room, but its placement's node affinity asks for a
    zone none of its nodes is in (a misconfigured pool; the pools' room does not model affinity): the
    scheduler places none of the moved pods. The decision fails with the scheduler's reason once the
    pods have been Unschedulable for the policy's bound, the workload is put back on the dear pool, its
    pods Ready there, no Ready pod lost on the way (maxUnavailable of 2 replicas is 0), and the next
    rounds do not try the edge pool again. (A placement that forgets the toleration of its nodes' taint
    is not even tried: its pool has room for no pod, see test_a_pool_without_room_is_not_chosen...)"""
    placements = [
        {
            "name": "dear",
            "nodeSelector": {POOL_KEY: pool_label("dear")},
            "tolerations": [{"key": "pool", "operator": "Equal", "value": "dear", "effect": "NoSchedule"}],
            "pricePerPodHour": 1.0,
        },
        {
            "name": "edge",
            "nodeSelector": {POOL_KEY: pool_label("edge")},
            "tolerations": [{"key": "pool", "operator": "Equal", "value": "edge", "effect": "NoSchedule"}],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["nowhere"]}
                                ]
                            }
                        ]
                    }
                }
            },
            "pricePerPodHour": 0.1,
        },
    ]
    dear = kubelets.nodes_of("dear")
    apply(cluster, pinned(namespace, "dear", 2, annotations={READY_AFTER_ANNOTATION: "1"}))
    wait_until(lambda: all_ready_on(pods_wide(cluster, namespace), dear, 2), timeout=60, message="2 Ready pods on dear")
    bounds = {"minReplicas": 2, "maxReplicas": 2}
    offer_placements(cluster, emulator, namespace, placements, bounds=bounds, rollout={"unschedulableSeconds": 10})
    ready_on_dear: list[int] = []

    def failed() -> dict[str, Any] | None:
        rows = pods_wide(cluster, namespace)
        ready_on_dear.append(sum(1 for r in rows if r["ready"] == "1/1" and r["node"] in dear))
        return next(
            (
                n
                for n in negotiations(cluster, namespace)
                if phase(n) == "Failed" and "rolled back" in n["status"].get("message", "")
            ),
            None,
        )

    record = wait_until(failed, timeout=120, interval=1.0, message="a failed move to edge, rolled back")
    assert record["spec"]["outcome"]["target"]["placement"] == "edge"
    message = record["status"]["message"]
    assert "pods unschedulable for" in message
    assert "Unschedulable" in message
    assert "didn't match Pod's node affinity" in message, message
    assert message.endswith("rolled back to 2@dear")
    assert "RollingOut" in event_reasons(cluster, namespace, record["metadata"]["name"])
    assert {"RolloutFailed", "RolledBack"} <= event_reasons(cluster, namespace, "web")  # kubectl describe deploy web
    rows = wait_until(
        lambda: all_ready_on(pods_wide(cluster, namespace), dear, 2),
        timeout=60,
        message="both pods Ready on the dear pool again",
    )
    ready_on_dear.append(sum(1 for r in rows if r["ready"] == "1/1"))
    assert min(ready_on_dear) == 2, ready_on_dear  # never below what the Deployment's strategy guarantees
    pod = get(cluster, "pod", namespace, rows[0]["name"])["spec"]
    assert pod["nodeSelector"] == {POOL_KEY: pool_label("dear")}
    body = get(cluster, "deployment", namespace, "web")
    assert body["spec"]["template"]["spec"]["nodeSelector"] == {POOL_KEY: pool_label("dear")}
    # The next rounds hold the move instead of trying the pool again, in one record.
    held = find(
        cluster,
        namespace,
        lambda n: phase(n) == "Held" and "not tried again before" in n["status"].get("message", ""),
        timeout=30,
        message="a held move to edge",
    )
    assert held["spec"]["outcome"]["target"]["placement"] == "edge"
    time.sleep(2 * INTERVAL)  # two more rounds
    held_again = [n for n in negotiations(cluster, namespace) if "not tried again" in n["status"].get("message", "")]
    assert [n["metadata"]["name"] for n in held_again] == [held["metadata"]["name"]]
    assert all_ready_on(pods_wide(cluster, namespace), dear, 2)


def event_reasons(cluster: Cluster, namespace: str, involved: str) -> set[str]:
    """The reasons of the Events posted on the object named `involved` (a Negotiation, or the workload)."""
    events = get(cluster, "events", namespace)["items"]
    return {e["reason"] for e in events if e["involvedObject"].get("name") == involved}


def test_a_reclaimed_spot_nodes_pods_are_rescheduled(
    cluster: Cluster, kubelets: SimulatedKubelets, namespace: str
) -> None:
    """The notice taints and drains the node; its pods come back Ready on the other spot node; then it is gone."""
    spot = kubelets.nodes_of("spot")
    apply(cluster, pinned(namespace, "spot", 2, annotations={READY_AFTER_ANNOTATION: "1"}))
    rows = wait_until(
        lambda: all_ready_on(pods_wide(cluster, namespace), spot, 2), timeout=60, message="2 Ready pods on spot"
    )
    victim = rows[0]["node"]
    survivor = next(n for n in spot if n != victim)
    before = {r["name"] for r in rows}

    kubelets.reclaim(victim, notice_seconds=8)
    noticed = json.loads(cluster.kubectl("get", "node", victim, "-o", "json").stdout)["spec"]
    assert {"key": RECLAIM_TAINT_KEY, "value": "true", "effect": "NoSchedule"} in noticed["taints"]
    assert noticed["unschedulable"] is True
    rows = wait_until(
        lambda: all_ready_on(pods_wide(cluster, namespace), [survivor], 2),
        timeout=60,
        message="both pods Ready on the surviving spot node",
    )
    assert {r["name"] for r in rows} != before, "the reclaimed node's pod was replaced"
    wait_until(
        lambda: victim not in cluster.kubectl("get", "nodes", "--no-headers").stdout,
        timeout=30,
        message=f"node {victim} deleted after its notice",
    )
    assert all_ready_on(pods_wide(cluster, namespace), [survivor], 2)


def test_demand_is_served_only_by_ready_pods(cluster: Cluster, kubelets: SimulatedKubelets, namespace: str) -> None:
    """150 requests/s, 100 per pod: one Ready pod drops 50; the scale-up's second pod serves once Ready, 5 s on."""
    general = kubelets.nodes_of("general")
    with WorkloadEmulator(api_client=cluster.api_client(), replica_source="status", poll_interval=0.25) as served:
        served.add_workload(namespace, "web", demand=150.0)
        web = deployment(namespace, "web", replicas=1)
        web["spec"]["template"]["spec"]["nodeSelector"] = {POOL_KEY: pool_label("general")}
        web["spec"]["template"]["metadata"]["annotations"] = {READY_AFTER_ANNOTATION: "5"}
        apply(cluster, web)
        wait_until(lambda: all_ready_on(pods_wide(cluster, namespace), general, 1), timeout=60, message="1 Ready pod")
        one = wait_until(lambda: (x := served.sample(namespace, "web")).ready_replicas == 1 and x, message="1 serving")
        assert one.served == 100.0 and one.dropped == 50.0

        cluster.kubectl("scale", "deployment", "web", "-n", namespace, "--replicas=2")
        # Running, not Ready: the new pod serves nothing yet.
        wait_until(
            lambda: [r["ready"] for r in pods_wide(cluster, namespace)].count("0/1") == 1,
            timeout=30,
            message="the new pod Running, not Ready",
        )
        served.sync_now()
        early = served.sample(namespace, "web")
        assert (early.desired_replicas, early.ready_replicas, early.dropped) == (2, 1, 50.0)
        wait_until(lambda: all_ready_on(pods_wide(cluster, namespace), general, 2), timeout=30, message="2 Ready pods")
        both = wait_until(lambda: (x := served.sample(namespace, "web")).ready_replicas == 2 and x, message="2 serving")
        assert both.served == 150.0 and both.dropped == 0.0
        new = max(get(cluster, "pods", namespace)["items"], key=lambda p: p["status"]["startTime"])
        assert 5 <= seconds_to_ready(new) <= 7


def node_row(cluster: Cluster, name: str) -> list[str]:
    """`kubectl get node NAME --no-headers`: NAME STATUS ROLES AGE VERSION."""
    return cluster.kubectl("get", "node", name, "--no-headers").stdout.split()


def test_a_drained_node_moves_its_pods_and_a_lost_node_goes_not_ready(
    cluster: Cluster, kubelets: SimulatedKubelets, namespace: str
) -> None:
    first, second = kubelets.nodes_of("edge")
    apply(cluster, pinned(namespace, "edge", 2))
    budget = {
        "apiVersion": "policy/v1beta1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}},
    }
    apply(cluster, budget)
    wait_until(
        lambda: all_ready_on(pods_wide(cluster, namespace), [first, second], 2), timeout=60, message="2 Ready pods"
    )

    kubelets.drain(first, timeout=60)
    assert node_row(cluster, first)[1] == "Ready,SchedulingDisabled"
    wait_until(
        lambda: all_ready_on(pods_wide(cluster, namespace), [second], 2),
        timeout=60,
        message=f"both pods Ready on {second} after the drain of {first}",
    )

    # Heartbeats stop: after the node monitor grace period (40 s) the lifecycle controller takes over.
    kubelets.lose(second)
    wait_until(
        lambda: node_row(cluster, second)[1] == "NotReady",
        timeout=90,
        interval=2.0,
        message=f"{second} NotReady once its heartbeats stopped",
    )
    node = json.loads(cluster.kubectl("get", "node", second, "-o", "json").stdout)
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "Unknown" and ready["reason"] == "NodeStatusUnknown"
    wait_until(
        lambda: (
            "node.kubernetes.io/unreachable"
            in [
                t["key"]
                for t in json.loads(cluster.kubectl("get", "node", second, "-o", "json").stdout)["spec"]["taints"]
            ]
        ),
        timeout=30,
        message=f"the unreachable taint on {second}",
    )
    # The pods stay bound (they tolerate unreachable for 300 s) but the controller marks them not Ready
    # (their Ready condition; `kubectl get pods` still counts the containers the lost kubelet reported
    # ready, as on a real cluster), so the Deployment shows 0/2 ready.
    wait_until(
        lambda: cluster.kubectl("get", "deployment", "web", "-n", namespace, "--no-headers").stdout.split()[1] == "0/2",
        timeout=30,
        message="the Deployment 0/2 ready once its node is lost",
    )
    for pod in get(cluster, "pods", namespace)["items"]:
        assert pod["spec"]["nodeName"] == second
        ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "False"


@pytest.mark.usefixtures("operator")
def test_a_pool_without_room_is_not_chosen_until_it_has_room(
    cluster: Cluster, emulator: WorkloadEmulator, namespace: str
) -> None:
    """The edge pool is the cheapest on offer, but a filler Deployment holds 3.5 of each edge node's 4 CPU
    and web's pods ask for 1 CPU each: the edge pool has room for none of them. Demand rises: web scales
    on the dear pool, and the decision's record says the agents would have moved it to edge and why not
    (the room, in the pool's own figures). The filler goes: the next rounds move web to edge, every pod
    Ready there. (Pools of its own: the module's are drained, lost and reclaimed by the tests before.)"""
    label = {"dear": "roomy-dear", "edge": "roomy-edge"}
    own = [Pool(p, 2, {POOL_KEY: pool_label(p)}, (Taint("pool", p),)) for p in label.values()]
    placements = [
        {
            "name": name,
            "nodeSelector": {POOL_KEY: pool_label(label[name])},
            "tolerations": [{"key": "pool", "operator": "Equal", "value": label[name], "effect": "NoSchedule"}],
            "pricePerPodHour": price,
        }
        for name, price in (("dear", 1.0), ("edge", 0.1))
    ]

    def requesting(body: dict[str, Any], cpu: str) -> dict[str, Any]:
        body["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": cpu}}
        return body

    with SimulatedKubelets(cluster.api_client(), own, prefix=PREFIX) as kubelets:
        dear, edge = kubelets.nodes_of(label["dear"]), kubelets.nodes_of(label["edge"])
        filler = requesting(pinned(namespace, label["edge"], 2), "3500m")
        filler["metadata"]["name"] = "filler"
        filler["metadata"]["labels"] = {"app": "filler"}  # not opted in: Accord leaves it alone
        filler["spec"]["selector"]["matchLabels"] = filler["spec"]["template"]["metadata"]["labels"] = {"app": "filler"}
        web = requesting(pinned(namespace, label["dear"], 2, annotations={READY_AFTER_ANNOTATION: "1"}), "1")
        apply(cluster, filler, web)
        wait_until(lambda: all_ready_on(pods_wide(cluster, namespace), dear, 2), timeout=60, message="web on dear")
        wait_until(
            lambda: all_ready_on(pods_wide(cluster, namespace, "app=filler"), edge, 2), timeout=60, message="edge full"
        )

        offer_placements(cluster, emulator, namespace, placements)
        emulator.set_demand(namespace, "web", 300.0)  # 300/s at 70% of 100/s a pod: 5 pods
        scaled = find(
            cluster,
            namespace,
            lambda n: phase(n) == "Applied" and any(g["rule"] == "poolCapacity" for g in n["spec"].get("gates", [])),
            timeout=90,
            message="a scale-up on dear that says why not edge",
        )
        assert scaled["spec"]["outcome"]["target"]["placement"] == "dear"
        (gate,) = [g for g in scaled["spec"]["gates"] if g["rule"] == "poolCapacity"]
        wanted = scaled["spec"]["outcome"]["target"]["replicas"]
        assert f"would have agreed on {wanted}@edge, but pool edge cannot take {wanted} pods now" in gate["message"]
        assert "room for 0 pods on 2 schedulable nodes (1 CPU" in gate["message"], gate["message"]
        assert not [r for r in pods_wide(cluster, namespace) if r["node"] in edge]

        cluster.kubectl("delete", "deployment", "filler", "-n", namespace)
        moved = applied_move(cluster, namespace, "edge", timeout=120)
        target = moved["spec"]["outcome"]["target"]["replicas"]
        rows = wait_until(
            lambda: all_ready_on(
                [r for r in pods_wide(cluster, namespace) if r["status"] != "Terminating"], edge, target
            ),
            timeout=90,
            message="every pod of web Ready on edge",
        )
        print(f"\n[e2e] no room on edge: {gate['message']}; then {len(rows)} pods moved to edge")


ZONE = "topology.kubernetes.io/zone"


@pytest.mark.usefixtures("operator")
def test_the_security_agents_zone_spread_is_where_the_pods_run(
    cluster: Cluster, emulator: WorkloadEmulator, namespace: str
) -> None:
    """While the security signal is active (here `vector(1)`, answered by the real Prometheus) the
    security agent requires two zones: the workload runs on the cheap pool, whose nodes are all in one
    zone, and is moved to the dearer pool that spans two; its pods then run in both zones."""
    prefix = f"e2e-{secrets.token_hex(2)}-"
    single, zoned = f"{prefix}single", f"{prefix}zoned"
    taint = (Taint("pool", "zonal"),)
    pools = [
        Pool("single", 2, {POOL_KEY: single, ZONE: "zone-a"}, taint),
        Pool("zoned-a", 1, {POOL_KEY: zoned, ZONE: "zone-a"}, taint),
        Pool("zoned-b", 1, {POOL_KEY: zoned, ZONE: "zone-b"}, taint),
    ]
    toleration = [{"key": "pool", "operator": "Equal", "value": "zonal", "effect": "NoSchedule"}]
    placements = [
        {"name": name, "nodeSelector": {POOL_KEY: label}, "tolerations": toleration, "pricePerPodHour": price}
        for name, label, price in (("single", single, 0.1), ("zoned", zoned, 0.2))
    ]
    with SimulatedKubelets(cluster.api_client(), pools, prefix=prefix) as nodes:
        zone_of = dict.fromkeys(nodes.nodes_of("single") + nodes.nodes_of("zoned-a"), "zone-a")
        zone_of |= dict.fromkeys(nodes.nodes_of("zoned-b"), "zone-b")
        web = deployment(namespace, "web", replicas=4)
        web["spec"]["template"]["spec"]["nodeSelector"] = {POOL_KEY: single}
        web["spec"]["template"]["spec"]["tolerations"] = toleration
        apply(cluster, web)
        wait_until(
            lambda: all_ready_on(pods_wide(cluster, namespace), nodes.nodes_of("single"), 4),
            timeout=60,
            message="4 Ready pods on the single-zone pool",
        )
        offer_placements(cluster, emulator, namespace, placements, bounds={"minReplicas": 4, "maxReplicas": 4})
        security = {
            "apiVersion": "accord.dev/v1alpha1",
            "kind": "Agent",
            "metadata": {"name": "security", "namespace": namespace},
            "spec": {
                "type": "security",
                "veto": True,
                "security": {"signalQuery": "vector(1)", "minZonesDuringSignal": 2},
            },
        }
        apply(cluster, security)
        moved = applied_move(cluster, namespace, "zoned", timeout=120)
        vetoes = [
            p["veto"]
            for proposal in moved["spec"]["proposals"]
            if proposal["agent"] == "security"
            for p in proposal["utilities"]
            if p.get("veto")
        ]
        assert any("spans 1 zone(s), 2 required" in v for v in vetoes), vetoes
        zoned_nodes = nodes.nodes_of("zoned-a") + nodes.nodes_of("zoned-b")
        rows = wait_until(
            lambda: all_ready_on(
                [r for r in pods_wide(cluster, namespace) if r["status"] != "Terminating"], zoned_nodes, 4
            ),
            timeout=90,
            message="4 Ready pods on the two-zone pool",
        )
        zones = sorted(zone_of[r["node"]] for r in rows)
        print(f"\n[e2e] zone spread: pods in {zones}")
        assert set(zones) == {"zone-a", "zone-b"}, rows
