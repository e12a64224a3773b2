"""Simulated Nodes and kubelets: pods bound by the real scheduler go Running and Ready, with no container.

Development and test infrastructure, not used by the operator itself.

Modelled on SIG Scheduling's kwok ("Kubernetes WithOut Kubelet"): the control plane is real
(kube-apiserver, kube-controller-manager, kube-scheduler) and only the node agents are simulated.
What a kubelet would write, this module writes through the API server, so every controller and
every user sees a cluster where pods run:

- **node-initialize**: a Node per member of each :class:`Pool` (labels, taints, capacity and
  allocatable cpu, memory and pods, addresses, a Ready condition), registered as a kubelet does.
- **node-heartbeat**: a Lease in ``kube-node-lease`` renewed every ``heartbeat_seconds`` (a
  kubelet's default is 10 s), and the Ready condition's heartbeat refreshed now and then; when a
  node is :meth:`~SimulatedKubelets.lose`-t both stop, and the node lifecycle controller marks it
  NotReady (Unknown), taints it ``node.kubernetes.io/unreachable`` and evicts its pods after their
  toleration, as on a real cluster.
- the pod stages of :data:`POD_STAGES`, applied to the pods bound to a live simulated node, the
  first that matches: **pod-delete** (a deletionTimestamp: the containers "stop" and the pod is
  deleted with grace 0, as a kubelet does once they have exited), **pod-running** (bound, not
  started: phase Running, podIP, hostIP, startTime, containers running but not ready),
  **pod-ready** (running, not ready, once its start-up delay has passed: Ready and
  ContainersReady True). The start-up delay is the annotation
  ``kubelets.accord.dev/ready-after-seconds``, else the largest readinessProbe
  ``initialDelaySeconds`` of its containers, else ``default_ready_seconds``.
- node operations: :meth:`~SimulatedKubelets.drain` (cordon, then evict every pod through the
  Eviction API, honouring PodDisruptionBudgets), :meth:`~SimulatedKubelets.lose` (heartbeats stop,
  pods are left as they were), :meth:`~SimulatedKubelets.reclaim` (a spot reclaim: the taint
  :data:`RECLAIM_TAINT_KEY` and a drain at the notice, like a termination handler; the Node is
  deleted when the notice has run out).

Not emulated: containers, images, probes that run, restarts, networking (pod IPs are only
addresses written in the status), resource enforcement (requests count for the scheduler; nothing
limits usage), volumes, logs and exec, DaemonSets' node-level behaviour, node-pressure eviction.

One thread watches bound pods (``spec.nodeName!=``, from a resourceVersion, re-listing on 410);
one clock thread runs the due stages and the heartbeats. Between events both sleep: a few hundred
pods cost a fraction of a core.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from accord_dev.cluster.service import Service

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = [
    "POD_STAGES",
    "READY_AFTER_ANNOTATION",
    "RECLAIM_TAINT_KEY",
    "SIMULATED_LABEL",
    "PodStage",
    "Pool",
    "SimulatedKubelets",
    "Taint",
    "Timing",
    "ready_after",
]

logger = logging.getLogger(__name__)

READY_AFTER_ANNOTATION = "kubelets.accord.dev/ready-after-seconds"
"""Seconds from a pod's start to its readiness; overrides the readinessProbe's initialDelaySeconds."""
SIMULATED_LABEL = "kubelets.accord.dev/simulated"
"""Set to ``"true"`` on every Node this module registers."""
POOL_LABEL = "kubelets.accord.dev/pool"
"""The :class:`Pool` a simulated Node belongs to."""
RECLAIM_TAINT_KEY = "kubelets.accord.dev/reclaimed"
"""The taint (NoSchedule) a node under a reclaim notice carries until it is deleted."""
KUBELET_VERSION = "v1.20.2-simulated"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40
STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"

Pod = dict[str, Any]
Effect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


@dataclass(frozen=True)
class Taint:
    key: str
    value: str = ""
    effect: Effect = "NoSchedule"

    def as_dict(self) -> dict[str, str]:
        return {"key": self.key, "value": self.value, "effect": self.effect}


@dataclass(frozen=True)
class Pool:
    """``count`` identical Nodes named ``<name>-<i>``: labels, taints and what each can hold."""

    name: str
    count: int = 1
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    cpu: str = "4"
    memory: str = "16Gi"
    pods: int = 110

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"pool {self.name!r}: count must be >= 0, got {self.count}")
        if self.pods < 1:
            raise ValueError(f"pool {self.name!r}: pods must be >= 1, got {self.pods}")

    def node_names(self) -> list[str]:
        return [f"{self.name}-{i}" for i in range(self.count)]


# --------------------------------------------------------------------------- the pod stages (pure)


def _conditions(pod: Pod) -> dict[str, str]:
    return {c["type"]: c.get("status", "") for c in (pod.get("status") or {}).get("conditions") or []}


def ready_after(pod: Pod, default: float) -> float:
    """The pod's start-up delay in seconds: the annotation, else its readinessProbes, else `default`."""
    annotation = ((pod.get("metadata") or {}).get("annotations") or {}).get(READY_AFTER_ANNOTATION)
    if annotation is not None:
        try:
            return max(0.0, float(annotation))
        except ValueError:
            logger.warning("pod %s: %s=%r is not a number", _key(pod), READY_AFTER_ANNOTATION, annotation)
    delays = [
        float((c.get("readinessProbe") or {}).get("initialDelaySeconds") or 0)
        for c in (pod.get("spec") or {}).get("containers") or []
        if c.get("readinessProbe")
    ]
    return max(delays) if delays else default


def _started_at(pod: Pod) -> float:
    start = (pod.get("status") or {}).get("startTime")
    if not start:
        return time.time()
    return dt.datetime.fromisoformat(str(start).replace("Z", "+00:00")).timestamp()


def _deleting(pod: Pod) -> bool:
    return pod["metadata"].get("deletionTimestamp") is not None


def _phase(pod: Pod) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def _not_started(pod: Pod) -> bool:
    return _phase(pod) == "Pending"


def _running_not_ready(pod: Pod) -> bool:
    return _phase(pod) == "Running" and _conditions(pod).get("Ready") != "True"


@dataclass(frozen=True)
class Timing:
    """The kubelets' own delays, in seconds."""

    default_ready_seconds: float = 0.0
    termination_seconds: float = 0.5


@dataclass(frozen=True)
class PodStage:
    """kwok's Stage: when a pod `matches`, at the epoch time `due` gives (from now, or from the pod's
    startTime), the kubelet does `next`, provided the pod is still at this stage then."""

    name: str
    matches: Callable[[Pod], bool]
    due: Callable[[Pod, Timing], float]
    next: Literal["delete", "running", "ready"]


POD_STAGES: tuple[PodStage, ...] = (
    # The containers stop at once (there are none): deleted with grace 0 after `termination_seconds`.
    PodStage("pod-delete", _deleting, lambda pod, t: time.time() + t.termination_seconds, "delete"),
    PodStage("pod-running", _not_started, lambda pod, t: time.time(), "running"),
    PodStage(
        "pod-ready",
        _running_not_ready,
        lambda pod, t: _started_at(pod) + ready_after(pod, t.default_ready_seconds),
        "ready",
    ),
)


def stage_for(pod: Pod) -> PodStage | None:
    """The first stage of :data:`POD_STAGES` this pod matches, if any."""
    return next((s for s in POD_STAGES if s.matches(pod)), None)


def _key(pod: Pod) -> tuple[str, str]:
    return (pod["metadata"].get("namespace", ""), pod["metadata"]["name"])


def _now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now_micro() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --------------------------------------------------------------------------- the kubelets


@dataclass
class _Node:
    name: str
    pool: Pool
    index: int  # among all simulated nodes: the third octet of its addresses
    alive: bool = True
    pods_started: int = 0

    @property
    def ip(self) -> str:
        return f"172.31.{self.index}.1"

    def pod_ip(self) -> str:
        self.pods_started += 1
        return f"10.244.{self.index}.{self.pods_started % 250 + 2}"


class SimulatedKubelets(Service):
    """The Nodes of `pools` and a kubelet for each, writing through `api_client`.

    ``with SimulatedKubelets(api, [Pool("cheap", 2, {"pool": "cheap"})]) as nodes: ...``; on stop
    the Nodes (and with them their Leases) are deleted. ``prefix`` is put before every Node's name,
    so that two sets of kubelets on one cluster do not collide.
    """

    def __init__(
        self,
        api_client: ApiClient,
        pools: Iterable[Pool],
        *,
        prefix: str = "",
        heartbeat_seconds: float = 10.0,
        status_report_seconds: float = 60.0,
        default_ready_seconds: float = 0.0,
        termination_seconds: float = 0.5,
        watch_timeout_seconds: int = 30,
    ) -> None:
        self._api = api_client
        self.pools = tuple(pools)
        names = [n for p in self.pools for n in p.node_names()]
        if len(set(names)) != len(names) or len({p.name for p in self.pools}) != len(self.pools):
            raise ValueError(f"pool names must be unique: {[p.name for p in self.pools]}")
        self.prefix = prefix
        self.heartbeat_seconds = heartbeat_seconds
        self.status_report_seconds = status_report_seconds
        self.timing = Timing(default_ready_seconds, termination_seconds)
        self._watch_timeout = watch_timeout_seconds
        self._nodes: dict[str, _Node] = {}
        self._pods: dict[tuple[str, str], Pod] = {}
        self._scheduled: set[tuple[str, str]] = set()  # (pod uid, stage name) waiting in the heap
        self._heap: list[tuple[float, int, str, tuple[str, str], str]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watch: Any = None

    # ----------------------------------------------------------------- public

    @property
    def node_names(self) -> list[str]:
        return list(self._nodes)

    def nodes_of(self, pool: str) -> list[str]:
        return [n.name for n in self._nodes.values() if n.pool.name == pool]

    def start(self) -> None:
        index = itertools.count(1)
        for pool in self.pools:
            for name in pool.node_names():
                node = _Node(f"{self.prefix}{name}", pool, next(index))
                self._register(node)
                self._nodes[node.name] = node
        now = time.time()
        self._push(now, "heartbeat", ("", ""), "")
        self._push(now + self.status_report_seconds, "status", ("", ""), "")
        for target, name in ((self._watch_loop, "pods"), (self._clock_loop, "clock")):
            thread = threading.Thread(target=target, name=f"accord-kubelets-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._watch is not None:
            self._watch.stop()
        for thread in self._threads:
            thread.join(timeout=self._watch_timeout + 5)
        self._threads.clear()
        core = self._core()
        for name in list(self._nodes):
            with contextlib.suppress(Exception):
                core.delete_node(name)
        self._nodes.clear()

    def lose(self, node: str) -> None:
        """The node stops heartbeating and its kubelet stops acting, as when a machine is cut off."""
        self._node(node).alive = False

    def drain(self, node: str, *, timeout: float = 60.0) -> None:
        """`kubectl drain`: cordon, then evict each pod (a PodDisruptionBudget may make it wait)."""
        from kubernetes.client.exceptions import ApiException

        self._node(node)
        core = self._core()
        core.patch_node(node, {"spec": {"unschedulable": True}}, _content_type=STRATEGIC)
        deadline = time.monotonic() + timeout
        while True:
            pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
            remaining = [p for p in pods if p.metadata.deletion_timestamp is None]
            if not remaining:
                return
            for pod in remaining:
                body = {
                    "apiVersion": "policy/v1beta1",
                    "kind": "Eviction",
                    "metadata": {"name": pod.metadata.name, "namespace": pod.metadata.namespace},
                }
                try:
                    core.create_namespaced_pod_eviction(pod.metadata.name, pod.metadata.namespace, body)
                except ApiException as exc:
                    if exc.status not in (404, 429):  # gone already; a budget says not yet
                        raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"drain of {node}: {len(remaining)} pod(s) still there after {timeout:.0f}s")
            time.sleep(1.0)

    def reclaim(self, node: str, *, notice_seconds: float = 30.0, drain: bool = True) -> None:
        """A spot reclaim: the taint and (like a termination handler) a drain now; the Node deleted after the notice."""
        self._node(node)
        core = self._core()
        current = core.read_node(node)
        taints = [t.to_dict() for t in (current.spec.taints or [])]
        taints.append(Taint(RECLAIM_TAINT_KEY, "true", "NoSchedule").as_dict())
        core.patch_node(node, {"spec": {"taints": taints}}, _content_type=MERGE)
        self._push(time.time() + notice_seconds, "reclaim", ("", node), "")
        if drain:
            self.drain(node, timeout=max(notice_seconds, 1.0))

    # ----------------------------------------------------------------- the API

    def _core(self) -> Any:
        from kubernetes.client import CoreV1Api

        return CoreV1Api(self._api)

    def _node(self, name: str) -> _Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise KeyError(f"{name!r} is not a simulated node (they are: {', '.join(self._nodes)})") from None

    def _register(self, node: _Node) -> None:
        pool = node.pool
        capacity = {"cpu": pool.cpu, "memory": pool.memory, "pods": str(pool.pods)}
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": node.name,
                "labels": {
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/hostname": node.name,
                    SIMULATED_LABEL: "true",
                    POOL_LABEL: pool.name,
                    **pool.labels,
                },
            },
            "spec": {
                "taints": [t.as_dict() for t in pool.taints],
                "podCIDR": f"10.244.{node.index}.0/24",
            },
            "status": {
                "capacity": capacity,
                "allocatable": capacity,
                "addresses": [
                    {"type": "InternalIP", "address": node.ip},
                    {"type": "Hostname", "address": node.name},
                ],
                "conditions": self._node_conditions(),
                "nodeInfo": {
                    "architecture": "amd64",
                    "operatingSystem": "linux",
                    "kubeletVersion": KUBELET_VERSION,
                    "kubeProxyVersion": KUBELET_VERSION,
                    "containerRuntimeVersion": "simulated://0",
                    "kernelVersion": "",
                    "osImage": "accord simulated node",
                    "bootID": "",
                    "machineID": "",
                    "systemUUID": "",
                },
            },
        }
        created = self._core().create_node(body)
        # Status is not taken on create by every server version: written again through its subresource.
        self._core().patch_node_status(node.name, {"status": body["status"]}, _content_type=STRATEGIC)
        self._renew_lease(node, uid=created.metadata.uid)

    @staticmethod
    def _node_conditions() -> list[dict[str, str]]:
        now = _now_rfc3339()

        def condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }

        return [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "simulated"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "simulated"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "simulated"),
            condition("Ready", "True", "KubeletReady", "simulated kubelet is posting ready status"),
        ]

    def _renew_lease(self, node: _Node, *, uid: str | None = None) -> None:
        from kubernetes.client import CoordinationV1Api
        from kubernetes.client.exceptions import ApiException

        leases = CoordinationV1Api(self._api)
        spec = {
            "holderIdentity": node.name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": _now_micro(),
        }
        try:
            leases.patch_namespaced_lease(node.name, LEASE_NAMESPACE, {"spec": spec}, _content_type=MERGE)
        except ApiException as exc:
            if exc.status != 404:
                raise
            owner = [{"apiVersion": "v1", "kind": "Node", "name": node.name, "uid": uid}] if uid else []
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": node.name, "namespace": LEASE_NAMESPACE, "ownerReferences": owner},
                "spec": spec,
            }
            leases.create_namespaced_lease(LEASE_NAMESPACE, body)  # type: ignore[arg-type]

    def _report_status(self, node: _Node) -> None:
        self._core().patch_node_status(
            node.name, {"status": {"conditions": self._node_conditions()}}, _content_type=STRATEGIC
        )

    # ----------------------------------------------------------------- the clock

    def _push(self, due: float, what: str, key: tuple[str, str], uid: str) -> None:
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._seq), what, key, uid))
            self._cond.notify()

    def _clock_loop(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                while not self._stop.is_set() and (not self._heap or self._heap[0][0] > time.time()):
                    wait = (self._heap[0][0] - time.time()) if self._heap else None
                    self._cond.wait(timeout=wait)
                if self._stop.is_set():
                    return
                due, _, what, key, uid = heapq.heappop(self._heap)
            try:
                self._run(due, what, key, uid)
            except Exception:
                logger.exception("simulated kubelets: %s %s failed", what, "/".join(key))

    def _run(self, due: float, what: str, key: tuple[str, str], uid: str) -> None:
        if what in ("heartbeat", "status"):
            # The next beat is booked first: an API server that fails one beat does not stop them all.
            period = self.heartbeat_seconds if what == "heartbeat" else self.status_report_seconds
            self._push(due + period, what, key, uid)
            beat = self._renew_lease if what == "heartbeat" else self._report_status
            for node in list(self._nodes.values()):
                if node.alive:
                    try:
                        beat(node)
                    except Exception as exc:
                        logger.warning("simulated kubelets: %s of %s failed: %s", what, node.name, exc)
        elif what == "reclaim":
            self._delete_node(key[1])
        else:
            with self._cond:
                self._scheduled.discard((uid, what))
                pod = self._pods.get(key)
            # Acted on only if the pod is still the same one, still at that stage, on a live node.
            if pod is None or pod["metadata"]["uid"] != uid or self._live_node(pod) is None:
                return
            stage = stage_for(pod)
            if stage is None or stage.name != what:
                return
            try:
                self._act(stage, pod)
            except Exception as exc:
                logger.warning("simulated kubelets: %s of %s failed, again in 1 s: %s", what, "/".join(key), exc)
                with self._cond:
                    self._scheduled.add((uid, what))
                self._push(time.time() + 1.0, what, key, uid)

    def _delete_node(self, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        node = self._nodes.pop(name, None)
        if node is None:
            return
        node.alive = False
        try:
            self._core().delete_node(name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    # ----------------------------------------------------------------- the pods

    def _live_node(self, pod: Pod) -> _Node | None:
        node = self._nodes.get((pod.get("spec") or {}).get("nodeName") or "")
        return node if node is not None and node.alive else None

    def _consider(self, pod: Pod) -> None:
        if self._live_node(pod) is None:
            return
        stage = stage_for(pod)
        if stage is None:
            return
        uid = pod["metadata"]["uid"]
        with self._cond:
            if (uid, stage.name) in self._scheduled:
                return
            self._scheduled.add((uid, stage.name))
        self._push(stage.due(pod, self.timing), stage.name, _key(pod), uid)

    def _act(self, stage: PodStage, pod: Pod) -> None:
        from kubernetes.client.exceptions import ApiException

        namespace, name = _key(pod)
        core = self._core()
        try:
            if stage.next == "delete":
                core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
            elif stage.next == "running":
                node = self._live_node(pod)
                assert node is not None
                core.patch_namespaced_pod_status(name, namespace, self._running(pod, node), _content_type=STRATEGIC)
            else:
                core.patch_namespaced_pod_status(name, namespace, self._ready(pod), _content_type=STRATEGIC)
        except ApiException as exc:
            if exc.status not in (404, 409):  # gone, or changed under us: the watch brings the news
                raise

    @staticmethod
    def _container_statuses(pod: Pod, *, ready: bool, started_at: str) -> list[dict[str, Any]]:
        return [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "containerID": f"simulated://{pod['metadata']['uid']}/{c['name']}",
                "ready": ready,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": started_at}},
            }
            for c in pod["spec"].get("containers") or []
        ]

    def _running(self, pod: Pod, node: _Node) -> dict[str, Any]:
        now = _now_rfc3339()
        ip = node.pod_ip()
        return {
            "status": {
                "phase": "Running",
                "hostIP": node.ip,
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "startTime": now,
                "conditions": [
                    {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                    {"type": "Ready", "status": "False", "reason": "ContainersNotReady", "lastTransitionTime": now},
                    {
                        "type": "ContainersReady",
                        "status": "False",
                        "reason": "ContainersNotReady",
                        "lastTransitionTime": now,
                    },
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                ],
                "containerStatuses": self._container_statuses(pod, ready=False, started_at=now),
            }
        }

    def _ready(self, pod: Pod) -> dict[str, Any]:
        now = _now_rfc3339()
        started = (pod.get("status") or {}).get("startTime") or now
        return {
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": None, "lastTransitionTime": now},
                    {"type": "ContainersReady", "status": "True", "reason": None, "lastTransitionTime": now},
                ],
                "containerStatuses": self._container_statuses(pod, ready=True, started_at=started),
            }
        }

    # ----------------------------------------------------------------- the watch

    def _watch_loop(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        core = self._core()
        resource_version = ""
        while not self._stop.is_set():
            self._watch = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                # Without a resourceVersion the watch begins with every bound pod as ADDED (a list).
                for event in self._watch.stream(
                    core.list_pod_for_all_namespaces,
                    field_selector="spec.nodeName!=",
                    resource_version=resource_version,
                    timeout_seconds=self._watch_timeout,
                    allow_watch_bookmarks=True,
                ):
                    pod: Pod = event["raw_object"]
                    resource_version = pod["metadata"].get("resourceVersion", resource_version)
                    if event["type"] == "BOOKMARK":
                        continue
                    with self._cond:
                        if event["type"] == "DELETED":
                            self._pods.pop(_key(pod), None)
                            continue
                        self._pods[_key(pod)] = pod
                    self._consider(pod)
                    if self._stop.is_set():
                        break
            except ApiException as exc:
                if exc.status == 410:  # too old: list again
                    resource_version = ""
                else:
                    logger.warning("simulated kubelets: pod watch failed: %s", exc.reason)
                    self._stop.wait(1.0)
            except Exception as exc:
                if not self._stop.is_set():
                    logger.warning("simulated kubelets: pod watch failed: %s", exc)
                    self._stop.wait(1.0)
