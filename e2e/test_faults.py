"""Faults on the real control plane: what Accord does when what it depends on stops answering.

The operator runs as a process of its own (`accord run`), against the suite's API server, as in
e2e/test_operator.py, whose fixtures and helpers these tests share.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from accord_dev.cluster.emulator import WorkloadEmulator
from accord_dev.cluster.prometheus import PrometheusServer
from operator_process import OperatorProcess
from providers import Cluster, wait_until
from test_operator import (  # noqa: F401 - fixtures
    DEMAND_QUERY,
    INTERVAL,
    accord_prometheus,
    agents,
    apply,
    crds,
    deployment,
    events,
    get,
    negotiations,
    operator,
    operator_args,
    operator_kubeconfig,
    phase,
    policy,
    prometheus_port,
    replicas,
    setup,
    webhook_port,
)

QUERY_TIMEOUT = 5.0  # `accord run`'s default --prometheus-timeout


@contextmanager
def silent_prometheus(port: int) -> Iterator[list[int]]:
    """A "Prometheus" on 127.0.0.1:port that accepts connections, reads what it is sent and never answers.
    Yields the list of connections it has accepted (their count is its only length)."""
    accepted: list[int] = []
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    writers: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        writers.append(writer)
        while await reader.read(4096):
            pass

    async def serve() -> asyncio.Server:
        return await asyncio.start_server(swallow, "127.0.0.1", port)

    server = loop.run_until_complete(serve())

    def run() -> None:
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="silent-prometheus", daemon=True)
    thread.start()
    ready.wait()
    try:
        yield accepted
    finally:

        async def close() -> None:
            for writer in writers:
                writer.close()
            server.close()
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def samples(process: OperatorProcess, metric: str, **labels: str) -> dict[str, float]:
    """The operator's /metrics samples of one family whose labels include `labels`, by sample name (+le)."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(process.metrics()):
        for s in family.samples:
            if s.name.startswith(metric) and all(s.labels.get(k) == v for k, v in labels.items()):
                found[s.name + (f"{{le={s.labels['le']}}}" if "le" in s.labels else "")] = s.value
    return found


def condition_when(
    cluster: Cluster, namespace: str, kind: str, check: Any, *, timeout: float, message: str
) -> dict[str, Any]:
    """The policy's `kind` condition, once `check(condition)` holds (waited for)."""

    def found() -> dict[str, Any] | None:
        condition = policy_condition(cluster, namespace, kind)
        return condition if check(condition) else None

    result: dict[str, Any] = wait_until(found, timeout=timeout, interval=0.5, message=message)
    return result


def scraped(prometheus: PrometheusServer, namespace: str, workload: str) -> bool:
    """Prometheus answers the agents' demand query for this workload with a sample."""
    return bool(prometheus.query(DEMAND_QUERY.replace("$namespace", namespace).replace("$workload", workload)))


def policy_condition(cluster: Cluster, namespace: str, kind: str) -> dict[str, Any]:
    conditions = (get(cluster, "negotiationpolicy", namespace, "default").get("status") or {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == kind), {})


def test_a_prometheus_that_never_answers_turns_into_the_missing_metrics_rule_within_a_round(
    cluster: Cluster,
    emulator: WorkloadEmulator,
    operator: OperatorProcess,  # noqa: F811 - the fixture imported above
    accord_prometheus: PrometheusServer,  # noqa: F811
    prometheus_port: int,  # noqa: F811
    namespace: str,
) -> None:
    """Prometheus accepts connections and never answers: each query ends after its timeout as missing
    evidence, the policy's missing-metrics rule (fallback to 7) takes effect for every workload, none of
    them is skipped, and a round lasts at most the query timeout longer than when Prometheus answers."""
    workloads = ("web", "api")
    rules = {"minConfidence": 0.3, "missingMetrics": {"action": "fallback", "fallbackReplicas": 7}}
    # The policy comes only once Prometheus has scraped every workload's demand: a round before the first
    # scrape would rightly take the fallback, and the scale-up from Prometheus's answers below would not show.
    for w in workloads:
        emulator.add_workload(namespace, w, demand=300.0)
    wait_until(
        lambda: all(scraped(accord_prometheus, namespace, w) for w in workloads),
        timeout=60,
        interval=1.0,
        message="Prometheus holds every workload's demand",
    )
    setup(cluster, emulator, namespace, demand=300.0, workloads=workloads, rules=rules)
    # 300 req/s at 70% of 100 req/s per pod: a scale-up from 2 negotiated from Prometheus's answers, to a
    # count other than the fallback's, so that the fallback taking effect later is visible.
    for w in workloads:
        wait_until(
            lambda w=w: replicas(cluster, namespace, w) not in (2, 7),
            timeout=90,
            interval=1.0,
            message=f"{w} negotiated from Prometheus's answers",
        )
    key = f"{namespace}/default"
    errors = samples(operator, "accord_workload_errors_total", policy=key)

    accord_prometheus.stop()
    try:
        with silent_prometheus(prometheus_port) as accepted:
            hung = time.monotonic()
            rounds = samples(operator, "accord_round_duration_seconds", policy=key)
            missing = condition_when(
                cluster,
                namespace,
                "MetricsMissing",
                lambda c: c.get("status") == "True",
                timeout=2 * INTERVAL + QUERY_TIMEOUT + 5,
                message="MetricsMissing",
            )
            noticed = time.monotonic() - hung
            assert "missing-metrics rule (fallback) applies" in missing["message"]
            assert f"no answer within {QUERY_TIMEOUT:g}s" in missing["message"], missing["message"]
            for w in workloads:
                wait_until(
                    lambda w=w: replicas(cluster, namespace, w) == 7,
                    timeout=2 * (INTERVAL + QUERY_TIMEOUT) + 5,
                    interval=0.5,
                    message=f"{w} at the fallback count",
                )
            time.sleep(2 * (INTERVAL + QUERY_TIMEOUT))  # a few more rounds against the silent server
            assert accepted, "the operator did ask the silent Prometheus"
            ready = policy_condition(cluster, namespace, "Ready")
            assert ready["message"] == "2 of 2 workloads negotiated", "no workload is skipped"
            assert samples(operator, "accord_workload_errors_total", policy=key) == errors
            after = samples(operator, "accord_round_duration_seconds", policy=key)
            count = after["accord_round_duration_seconds_count"] - rounds["accord_round_duration_seconds_count"]
            total = after["accord_round_duration_seconds_sum"] - rounds["accord_round_duration_seconds_sum"]
            bounded = f"accord_round_duration_seconds_bucket{{le={float(INTERVAL + QUERY_TIMEOUT)}}}"
            within = after[bounded] - rounds[bounded]
            print(
                f"\n[e2e] silent Prometheus: MetricsMissing after {noticed:.1f}s; {count:.0f} rounds, "
                f"mean {total / max(count, 1):.2f}s, {within:.0f} within {INTERVAL + QUERY_TIMEOUT:g}s"
            )
            assert count >= 2
            assert within == count, "every round within the interval plus the query timeout"
            assert total / count <= QUERY_TIMEOUT + 2.0
            assert operator.process is not None and operator.process.poll() is None
    finally:
        accord_prometheus.start()
        accord_prometheus.wait_for_targets_up(timeout=30)
    wait_until(
        lambda: policy_condition(cluster, namespace, "MetricsMissing").get("status") == "False",
        timeout=60,
        interval=1.0,
        message="metrics back",
    )
    emulator.set_demand(namespace, "web", 900.0)  # negotiation resumes on Prometheus's answers
    wait_until(lambda: replicas(cluster, namespace, "web") >= 12, timeout=90, interval=1.0, message="web negotiated")


@contextmanager
def self_healing_writer(k8s: Any, namespace: str, name: str, replicas: int) -> Iterator[list[int]]:
    """A writer that keeps the Deployment's spec.replicas at `replicas`, as a GitOps controller with
    self-heal does: it looks twice a second and scales back whatever it finds changed. Yields the list
    of the counts it found and reset."""
    from kubernetes import client

    apps = client.AppsV1Api(k8s)
    stop = threading.Event()
    resets: list[int] = []

    def heal() -> None:
        while not stop.wait(0.5):
            found = apps.read_namespaced_deployment_scale(name, namespace).spec.replicas
            if found != replicas:
                apps.patch_namespaced_deployment_scale(name, namespace, {"spec": {"replicas": replicas}})
                resets.append(int(found))

    thread = threading.Thread(target=heal, name="self-heal", daemon=True)
    thread.start()
    try:
        yield resets
    finally:
        stop.set()
        thread.join(timeout=10)


def test_a_writer_that_keeps_resetting_replicas_makes_accord_back_off_and_say_so(
    cluster: Cluster,
    emulator: WorkloadEmulator,
    operator: OperatorProcess,  # noqa: F811
    k8s: Any,
    namespace: str,
) -> None:
    """A self-healing GitOps controller owns spec.replicas (2) while the demand needs more: Accord's
    change is overwritten, it tries again, and after `maxOverwrites` (3) overwritten changes it stops:
    a Held record and a CompetingWriter Event say why, the policy's WriterConflict condition names the
    workload, and no further change is applied while the fight would go on. When the writer stops
    fighting (here: it goes away) and the overwrites leave the window (60 s here), Accord acts again."""
    rules = {"minConfidence": 0.3, "competingWriter": {"maxOverwrites": 3, "windowSeconds": 60}}
    setup(cluster, emulator, namespace, demand=900.0, rules=rules)
    with self_healing_writer(k8s, namespace, "web", 2) as resets:
        condition = condition_when(
            cluster,
            namespace,
            "WriterConflict",
            lambda c: c.get("status") == "True",
            timeout=12 * INTERVAL,
            message="WriterConflict",
        )
        assert "Deployment " + namespace + "/web: 3 changes overwritten by another writer" in condition["message"]
        applied = [n for n in negotiations(cluster, namespace) if phase(n) == "Applied"]
        held = [n for n in negotiations(cluster, namespace) if phase(n) == "Held"]
        assert len(applied) == 3, [(n["metadata"]["name"], phase(n)) for n in negotiations(cluster, namespace)]
        assert len(held) == 1
        assert "overwritten 3 times" in held[0]["status"]["message"], held[0]["status"]
        warnings = [e for e in events(cluster, namespace, "CompetingWriter") if e["type"] == "Warning"]
        assert warnings and "Accord backs off" in warnings[0]["message"]
        fights = len(resets)
        time.sleep(4 * INTERVAL)  # rounds go by: no new change, no new record
        assert [n for n in negotiations(cluster, namespace) if phase(n) == "Applied"] == applied
        assert len(resets) == fights, "Accord did not change the workload while backing off"
        assert len([n for n in negotiations(cluster, namespace) if phase(n) == "Held"]) == 1
        assert replicas(cluster, namespace) == 2
    # The writer is gone; once the window has no more than two overwrites, Accord scales again.
    wait_until(lambda: replicas(cluster, namespace) > 2, timeout=60 + 6 * INTERVAL, interval=1.0, message="scaled")
    wait_until(
        lambda: policy_condition(cluster, namespace, "WriterConflict").get("status") == "False",
        timeout=3 * INTERVAL,
        interval=0.5,
        message="WriterConflict cleared",
    )


def chain(cluster: Cluster, namespace: str) -> list[tuple[int, int]]:
    """The (from, to) replica counts of web's Applied records, in decision order."""
    return [
        (n["spec"]["current"]["replicas"], n["spec"]["outcome"]["target"]["replicas"])
        for n in sorted(negotiations(cluster, namespace), key=lambda n: n["spec"]["decidedAt"])
        if phase(n) == "Applied"
    ]


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_a_control_plane_restart_mid_round_loses_nothing_and_applies_nothing_twice(
    cluster: Cluster,
    emulator: WorkloadEmulator,
    operator: OperatorProcess,  # noqa: F811
    namespace: str,
    component: str,
) -> None:
    """The API server (or etcd) goes away for longer than a round while demand rises, then comes back:
    the operator keeps running, its watches recover, the rise is negotiated, every change is applied
    once (each Applied record starts where the one before ended, and the workload is where the last
    one left it), and no record is left half-done (Proposed)."""
    plane = cluster.control_plane
    if plane is None:
        pytest.skip("restarting a control-plane component needs the local provider")
    setup(cluster, emulator, namespace, demand=600.0, rules={"minConfidence": 0.3})
    wait_until(lambda: chain(cluster, namespace), timeout=90, interval=1.0, message="a first change applied")
    wait_until(
        lambda: policy_condition(cluster, namespace, "Ready").get("message") == "1 of 1 workloads negotiated",
        timeout=3 * INTERVAL,
        interval=0.5,
        message="a clean round",
    )
    emulator.set_demand(namespace, "web", 1500.0)  # 1500/s at 70% of 100/s per pod: 22 pods
    time.sleep(INTERVAL / 2)  # into the next round
    plane.restart(component, down_seconds=2 * INTERVAL)
    wait_until(lambda: replicas(cluster, namespace) >= 22, timeout=120, interval=1.0, message="the rise negotiated")
    assert operator.process is not None and operator.process.poll() is None, "the operator kept running"
    wait_until(
        lambda: not [n for n in negotiations(cluster, namespace) if phase(n) in ("", "Proposed")],
        timeout=3 * INTERVAL,
        interval=0.5,
        message="no record left Proposed",
    )
    applied = chain(cluster, namespace)
    assert all(after[0] == before[1] for before, after in itertools.pairwise(applied)), applied
    assert applied[-1][1] == replicas(cluster, namespace), (applied, replicas(cluster, namespace))
    ready = condition_when(
        cluster,
        namespace,
        "Ready",
        lambda c: c.get("message") == "1 of 1 workloads negotiated",
        timeout=3 * INTERVAL,
        message="rounds negotiate every workload again",
    )
    assert ready["status"] == "True"
    print(f"\n[e2e] {component} restarted: applied {applied}")


def test_readyz_turns_ready_only_once_the_watches_have_listed(
    cluster: Cluster,
    crds: None,  # noqa: F811
    accord_prometheus: PrometheusServer,  # noqa: F811
    operator_kubeconfig: Path,  # noqa: F811
    namespace: str,
    tmp_path: Path,
) -> None:
    """A second operator (no leader election, no webhook) starts on a namespace that holds 80 opted-in
    Deployments and a policy: /readyz answers 503 while the watches list, and the first time it answers
    200 the operator already knows every one of the Deployments and the policy. On an empty namespace
    (nothing to list) it turns ready too."""
    count = 80
    apply(cluster, *agents(namespace), policy(namespace), *(deployment(namespace, f"w{i}") for i in range(count)))
    empty = f"{namespace}-empty"[:63]
    cluster.kubectl("create", "namespace", empty)
    try:
        for watched, expected in ((namespace, f"{count} workloads, 1 policies, 4 agents"), (empty, "0 workloads")):
            process = OperatorProcess(
                kubeconfig=operator_kubeconfig,
                prometheus_url=accord_prometheus.url,
                log_path=tmp_path / f"{watched}.log",
                webhook=False,
                namespaces=(watched,),
                extra_args=("--no-leader-election",),
            )
            process.start()
            try:
                answers: list[tuple[int, str]] = []

                def ready(answers: list[tuple[int, str]] = answers, process: OperatorProcess = process) -> bool:
                    answers.append(process.readyz())
                    return answers[-1][0] == 200

                wait_until(ready, timeout=60, interval=0.05, message=f"/readyz on {watched}")
                first = answers[-1][1]
                assert first.startswith("ready: ") and expected in first, (first, answers[:3])
                assert all(code == 503 for code, _ in answers[:-1]), answers
                print(f"\n[e2e] /readyz on {watched}: {len(answers) - 1} answers 503, then {first.strip()!r}")
            finally:
                process.stop()
    finally:
        cluster.kubectl("delete", "namespace", empty, "--wait=false")


def test_records_stay_bounded_however_often_the_workloads_change(
    cluster: Cluster,
    emulator: WorkloadEmulator,
    operator: OperatorProcess,  # noqa: F811
    namespace: str,
) -> None:
    """Six workloads whose demand climbs by one pod's worth (70/s at 70% of 100/s) every round, so that
    every round changes each of them, for 30 rounds: each workload's Negotiations never exceed the
    history limit (3) plus the changes the rules still count (4: the competing-writer rule reads 3
    overwrites) plus the one being applied, although each workload is changed far more often."""
    names = tuple(f"ramp{i}" for i in range(6))
    start = time.monotonic()

    def ramp(t: float) -> float:
        return 100.0 + 70.0 * max(0.0, time.monotonic() - start) / INTERVAL

    for name in names:
        emulator.add_workload(namespace, name, demand=ramp)
    apply(cluster, *agents(namespace), policy(namespace, historyLimit=3), *(deployment(namespace, n) for n in names))
    bound = 3 + 4 + 1
    most: dict[str, int] = dict.fromkeys(names, 0)
    changes: dict[str, set[str]] = {n: set() for n in names}
    deadline = time.monotonic() + 30 * INTERVAL
    while time.monotonic() < deadline:
        items = get(cluster, "negotiations", namespace)["items"]
        for name in names:
            mine = [n for n in items if n["spec"]["workload"]["name"] == name]
            most[name] = max(most[name], len(mine))
            changes[name].update(n["metadata"]["name"] for n in mine if phase(n) in ("Applied", "Proposed"))
            assert len(mine) <= bound, (name, sorted((n["metadata"]["name"], phase(n)) for n in mine))
        time.sleep(2.0)
    made = {n: len(c) for n, c in changes.items()}
    kinds = {e["reason"] for e in get(cluster, "events", namespace)["items"]}
    print(f"\n[e2e] 30 rounds of ramps: changes seen per workload {made}, most records at once {most}; Events {kinds}")
    assert all(count > bound for count in made.values()), f"each workload changed more often than the bound: {made}"
    assert operator.process is not None and operator.process.poll() is None
