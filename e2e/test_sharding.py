"""Three operator replicas split the namespaces with shard Leases on the real API server: every
workload is negotiated, one replica killed mid-round hands its shards over within a lease
duration, a replica that joins takes a share, and no decision is applied twice.

The replicas are `accord run` processes with `--shards 6` (operator/sharding.py), each named by
POD_ID as the chart's pods are. The module's fixtures and helpers are e2e/test_operator.py's; its
single operator is not started here (it would be a writer outside the shards).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from accord.operator.leadership import DURATION
from accord.operator.sharding import MEMBER_PREFIX, owner, shard_of
from accord_dev.cluster.emulator import WorkloadEmulator
from accord_dev.cluster.prometheus import PrometheusServer
from operator_process import OperatorProcess
from providers import Cluster, wait_until
from test_operator import (  # noqa: F401 - fixtures
    accord_prometheus,
    crds,
    events,
    get,
    negotiations,
    phase,
    prometheus_port,
    replicas,
    setup,
)

SHARDS = 6
LEASE = "sharded"
LEASE_NAMESPACE = "default"


@pytest.fixture
def namespaces(cluster: Cluster, k8s: ApiClient, emulator: WorkloadEmulator) -> Iterator[list[str]]:
    """Eight fresh namespaces (so that most shards have some), deleted afterwards."""
    core = client.CoreV1Api(k8s)
    names = [f"e2e-shard-{i}-{secrets.token_hex(3)}" for i in range(8)]
    for name in names:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield names
    finally:
        for ns, deployment in emulator.workloads():
            if ns in names:
                emulator.remove_workload(ns, deployment)
        for name in names:
            core.delete_namespace(name, propagation_policy="Background")


class Sharded(NamedTuple):
    cluster: Cluster
    emulator: WorkloadEmulator
    prometheus: PrometheusServer
    namespaces: list[str]
    tmp_path: Path


@pytest.fixture
def sharded(
    cluster: Cluster,
    crds: None,  # noqa: F811 - the fixture imported above
    emulator: WorkloadEmulator,
    accord_prometheus: PrometheusServer,  # noqa: F811
    namespaces: list[str],
    tmp_path: Path,
) -> Sharded:
    """What each test here runs on: the CRDs installed, the emulator, Prometheus and fresh namespaces."""
    return Sharded(cluster, emulator, accord_prometheus, namespaces, tmp_path)


def replica(cluster: Cluster, prometheus: PrometheusServer, name: str, tmp_path: Path) -> OperatorProcess:
    process = OperatorProcess(
        kubeconfig=cluster.kubeconfig,
        prometheus_url=prometheus.url,
        log_path=tmp_path / f"{name}.log",
        webhook=False,
        extra_env={"POD_ID": name},
        extra_args=("--shards", str(SHARDS), "--lease-name", LEASE, "--lease-namespace", LEASE_NAMESPACE),
    )
    process.start()
    return process


def holders(cluster: Cluster) -> dict[int, str]:
    """Shard -> the identity its Lease names (only leases whose holder renewed within the duration)."""
    items = get(cluster, "leases", LEASE_NAMESPACE)["items"]
    found: dict[int, str] = {}
    for lease in items:
        name = lease["metadata"]["name"]
        if name.startswith(f"{LEASE}-shard-") and (lease["spec"].get("holderIdentity") or ""):
            found[int(name.rsplit("-", 1)[1])] = lease["spec"]["holderIdentity"]
    return found


def held(process: OperatorProcess) -> int:
    for line in process.metrics().splitlines():
        if line.startswith('accord_shards{state="held"}'):
            return int(float(line.split()[-1]))
    return 0


def applied_moves(cluster: Cluster, namespace: str) -> list[tuple[int, int]]:
    return [
        (n["spec"]["current"]["replicas"], n["spec"]["outcome"]["target"]["replicas"])
        for n in negotiations(cluster, namespace)
        if phase(n) == "Applied"
    ]


def watch_shards(replicas_: dict[str, OperatorProcess], until: Callable[[], bool], timeout: float) -> float:
    """Poll until `until()`; at every look, no shard is counted as held by two live replicas at once
    (their held counts never add up to more than the shards). The seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        counts = {n: held(p) for n, p in replicas_.items() if p.process is not None and p.process.poll() is None}
        assert sum(counts.values()) <= SHARDS, f"a shard held twice: {counts}"
        if until():
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout} s")


def test_three_replicas_split_the_namespaces_and_a_killed_ones_share_moves_within_a_lease_duration(
    sharded: Sharded,
) -> None:
    cluster, emulator, prometheus, namespaces, tmp_path = sharded
    running = {name: replica(cluster, prometheus, name, tmp_path) for name in ("replica-a", "replica-b", "replica-c")}
    try:
        # Every shard is held, each by one of the replicas, and the replicas count as many as there are.
        # Every shard is held by the replica rendezvous hashing names among the three, and the replicas
        # count as many as there are.
        expected = {i: owner(i, list(running)) for i in range(SHARDS)}
        assert len(set(expected.values())) >= 2, expected

        def settled() -> bool:
            return holders(cluster) == expected and sum(held(p) for p in running.values()) == SHARDS

        watch_shards(running, settled, timeout=4 * DURATION)

        # Every workload is negotiated, whichever replica holds its namespace.
        for ns in namespaces:
            setup(cluster, emulator, ns, demand=900.0)
        for ns in namespaces:
            wait_until(lambda ns=ns: replicas(cluster, ns) > 2, timeout=90, interval=1.0, message=f"{ns} scaled up")

        # Kill (SIGKILL, no clean-up) the replica that holds the most namespaces, while rounds run.
        owners = holders(cluster)
        share = {name: [ns for ns in namespaces if owners[shard_of(ns, SHARDS)] == name] for name in running}
        victim = max(share, key=lambda name: len(share[name]))
        assert share[victim], share
        lost = {i for i, holder in owners.items() if holder == victim}
        before = {ns: replicas(cluster, ns) for ns in namespaces}
        running[victim].kill()
        for ns in namespaces:
            emulator.set_demand(ns, "web", 2400.0)
        survivors = {n: p for n, p in running.items() if n != victim}

        def taken_over() -> bool:
            now = holders(cluster)
            return all(now.get(i) == owner(i, list(survivors)) for i in lost)

        took = watch_shards(survivors, taken_over, timeout=4 * DURATION)
        print(f"\n[e2e] shards {sorted(lost)} of {victim} taken over {took:.1f} s after the kill")
        # The Lease lapses one duration after its last renewal (at most a third of one before the kill);
        # the new owner looks every fifth of one.
        assert took <= DURATION + DURATION / 5 + 2.0, took

        for ns in namespaces:
            wait_until(
                lambda ns=ns: replicas(cluster, ns) > before[ns],
                timeout=90,
                interval=1.0,
                message=f"{ns} negotiated again after the kill",
            )

        # A replica that joins takes a share of the shards from the others.
        running["replica-d"] = replica(cluster, prometheus, "replica-d", tmp_path)
        live = {n: p for n, p in running.items() if n != victim}
        expected = {i: owner(i, list(live)) for i in range(SHARDS)}
        joined = watch_shards(live, lambda: holders(cluster) == expected, timeout=4 * DURATION)
        print(f"[e2e] replica-d holds {held(running['replica-d'])} shards; all placed {joined:.1f} s after it started")
        assert joined <= DURATION + DURATION / 5 + 2.0, joined
        watch_shards(live, lambda: sum(held(p) for p in live.values()) == SHARDS, timeout=4 * DURATION)

        # Nothing applied twice: each applied change once, and one Negotiated Event for each.
        for ns in namespaces:
            moves = applied_moves(cluster, ns)
            assert moves, ns
            assert len(moves) == len(set(moves)), f"a decision applied twice in {ns}: {moves}"
            for n in negotiations(cluster, ns):
                if phase(n) == "Applied":
                    said = [
                        e for e in events(cluster, ns, "Negotiated") if n["metadata"]["name"] in e.get("message", "")
                    ]
                    assert len(said) == 1, (ns, said)
    finally:
        for process in running.values():
            process.stop()
        print(f"[e2e] replica logs: {tmp_path}")


def test_a_replica_counting_shards_otherwise_writes_nothing_until_it_is_alone(sharded: Sharded) -> None:
    """An upgrade that changes the number of shards: old and new replicas would hash namespaces to other
    shards, so while both run, neither writes; once the old one is gone, the new one takes every shard."""
    cluster, emulator, prometheus, namespaces, tmp_path = sharded
    old = replica(cluster, prometheus, "replica-old", tmp_path)
    new = OperatorProcess(
        kubeconfig=cluster.kubeconfig,
        prometheus_url=prometheus.url,
        log_path=tmp_path / "replica-new.log",
        webhook=False,
        extra_env={"POD_ID": "replica-new"},
        extra_args=("--shards", str(SHARDS + 1), "--lease-name", LEASE, "--lease-namespace", LEASE_NAMESPACE),
    )
    try:
        wait_until(lambda: held(old) == SHARDS, timeout=60, interval=0.5, message="the old replica holds every shard")
        new.start()
        wait_until(
            lambda: held(old) == 0 and 'accord_shards{state="disagreeing"} 1.0' in old.metrics(),
            timeout=30,
            interval=0.5,
            message="the old replica gives its shards up",
        )
        ns = namespaces[0]
        setup(cluster, emulator, ns, demand=900.0)
        time.sleep(DURATION / 2)
        assert held(new) == 0, "the new replica writes nothing while the old one counts otherwise"
        assert not negotiations(cluster, ns), "nobody decided while the replicas disagreed"
        old.stop()
        wait_until(lambda: held(new) == SHARDS + 1, timeout=4 * DURATION, interval=0.5, message="new takes all")
        wait_until(lambda: replicas(cluster, ns) > 2, timeout=60, interval=1.0, message="negotiated again")
        members = json.loads(
            cluster.kubectl("get", "lease", f"{LEASE}-members", "-n", LEASE_NAMESPACE, "-o", "json").stdout
        )["metadata"]["annotations"]
        assert f"{MEMBER_PREFIX}replica-old" not in members, "a replica that stops cleanly leaves the members"
        assert f"{MEMBER_PREFIX}replica-new" in members
    finally:
        new.stop()
        old.stop()
