"""What the operator knows of workloads and nodes, read from their API objects (operator layer, pure).

Turns Deployment/StatefulSet and Node bodies into the values the engine takes: the workload's
current replicas and placement, and each of the policy's pools as its Nodes show it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubernetes.utils import parse_quantity

from accord.agents.base import Pool
from accord.models.policy import NegotiationPolicySpec, Placement
from accord.negotiation.lifecycle import Rollout

PAUSED = "accord.dev/paused"
OPT_OUT = "accord.dev/ignore"
NEGOTIATION = "accord.dev/negotiation"
REGION = "topology.kubernetes.io/region"
ZONE = "topology.kubernetes.io/zone"
UNMATCHED_PLACEMENT = "current"
DEFAULT_PLACEMENT = "default"


@dataclass(frozen=True, slots=True)
class WorkloadView:
    kind: str
    namespace: str
    name: str
    uid: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    replicas: int
    ready: int
    node_selector: Mapping[str, str]
    resource_version: str
    generation: int = 0
    tolerations: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)
    # The rollout, from the status: what the controller has seen and done of the pod template.
    observed_generation: int = 0
    updated: int = 0
    available: int = 0
    status_replicas: int = 0
    progressing: tuple[str, str, str] | None = None  # the Progressing condition: status, reason, message
    selector: Mapping[str, str] = field(default_factory=dict)  # spec.selector.matchLabels
    revisions: tuple[str, str] | None = None  # a StatefulSet's currentRevision, updateRevision
    requests: Requests = field(default_factory=lambda: Requests())  # what one of its pods requests

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    @property
    def paused(self) -> bool:
        return self.annotations.get(PAUSED, "").lower() in {"true", "1", "yes"}

    @property
    def opted_out(self) -> bool:
        return self.annotations.get(OPT_OUT, "").lower() in {"true", "1", "yes"}


@dataclass(frozen=True, slots=True)
class Requests:
    """What pods request of a node: CPU in cores, memory in bytes, and a pod slot each."""

    cpu: float = 0.0
    memory: float = 0.0
    pods: int = 0

    def __add__(self, other: Requests) -> Requests:
        return Requests(self.cpu + other.cpu, self.memory + other.memory, self.pods + other.pods)


def _quantity(value: object) -> float:
    """A resource quantity ("250m", "1Gi", 2) as a number; 0 for none or one that cannot be read."""
    if value is None or value == "":
        return 0.0
    try:
        return float(parse_quantity(value))  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, ArithmeticError):
        return 0.0


def pod_requests(pod_spec: Mapping[str, Any]) -> Requests:
    """What one pod of this spec requests: its containers' requests summed, or for each resource its
    largest init container's when that is more (as the scheduler counts), and one pod slot."""

    def total(kind: str, containers: Iterable[Mapping[str, Any]]) -> float:
        return sum(_quantity(((c.get("resources") or {}).get("requests") or {}).get(kind)) for c in containers)

    def largest(kind: str) -> float:
        return max(
            (
                _quantity(((c.get("resources") or {}).get("requests") or {}).get(kind))
                for c in pod_spec.get("initContainers") or ()
            ),
            default=0.0,
        )

    containers = pod_spec.get("containers") or ()
    return Requests(
        max(total("cpu", containers), largest("cpu")), max(total("memory", containers), largest("memory")), 1
    )


@dataclass(frozen=True, slots=True)
class NodeView:
    """A Node as placement needs it: its labels, what it can hold, and whether new pods may land on it."""

    name: str
    labels: Mapping[str, str]
    allocatable: Requests
    schedulable: bool = True  # Ready and not cordoned
    taints: tuple[Mapping[str, Any], ...] = ()  # NoSchedule and NoExecute taints only
    reported: bool = True  # its kubelet has reported its conditions at least once


def node_view(body: Mapping[str, Any]) -> NodeView:
    meta, spec, status = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
    allocatable = status.get("allocatable") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ())
    return NodeView(
        name=str(meta.get("name", "")),
        labels=dict(meta.get("labels") or {}),
        allocatable=Requests(
            _quantity(allocatable.get("cpu")),
            _quantity(allocatable.get("memory")),
            int(_quantity(allocatable.get("pods"))),
        ),
        schedulable=ready and not spec.get("unschedulable"),
        taints=tuple(t for t in spec.get("taints") or () if t.get("effect") in ("NoSchedule", "NoExecute")),
        reported=bool(status.get("conditions")),
    )


def usage(pods: Iterable[Mapping[str, Any]]) -> dict[str, Requests]:
    """What the pods bound to each node request (pods that have ended hold nothing)."""
    found: dict[str, Requests] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if not node or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        found[node] = found.get(node, Requests()) + pod_requests(pod.get("spec") or {})
    return found


def _tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    for t in tolerations:
        if t.get("effect") not in (None, "", taint.get("effect")):
            continue
        if t.get("operator") == "Exists":
            if not t.get("key") or t.get("key") == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def room(
    nodes: Iterable[NodeView], used: Mapping[str, Requests], per_pod: Requests, tolerations: Iterable[Mapping[str, Any]]
) -> tuple[int, str]:
    """How many pods of `per_pod` the nodes can take now, and the figures: on each schedulable node
    whose taints the pods tolerate, the fewest of what its pod slots, CPU and memory left allow."""
    tolerations = list(tolerations)
    total, cpu, memory, slots, counted = 0, 0.0, 0.0, 0, 0
    for node in nodes:
        if not node.schedulable or not all(_tolerates(tolerations, t) for t in node.taints):
            continue
        left = used.get(node.name, Requests())
        free = Requests(
            node.allocatable.cpu - left.cpu, node.allocatable.memory - left.memory, node.allocatable.pods - left.pods
        )
        fits = max(0, free.pods)
        if per_pod.cpu > 0:
            fits = min(fits, max(0, int(free.cpu / per_pod.cpu + 1e-9)))
        if per_pod.memory > 0:
            fits = min(fits, max(0, int(free.memory / per_pod.memory + 1e-9)))
        total, counted = total + fits, counted + 1
        cpu, memory, slots = cpu + max(0.0, free.cpu), memory + max(0.0, free.memory), slots + max(0, free.pods)
    why = (
        f"room for {total} pods on {counted} schedulable nodes ({cpu:g} CPU, {memory / 2**30:.1f} GiB, {slots} pod "
        f"slots free; {per_pod.cpu:g} CPU and {per_pod.memory / 2**30:.2f} GiB a pod)"
    )
    return total, why


def workload_view(kind: str, body: Mapping[str, Any]) -> WorkloadView:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    pod_spec = ((spec.get("template") or {}).get("spec")) or {}
    return WorkloadView(
        kind=kind,
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        labels=dict(meta.get("labels") or {}),
        annotations=dict(meta.get("annotations") or {}),
        replicas=int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1),
        ready=int(status.get("readyReplicas") or 0),
        node_selector=dict(pod_spec.get("nodeSelector") or {}),
        resource_version=str(meta.get("resourceVersion", "")),
        generation=int(meta.get("generation") or 0),
        tolerations=tuple(pod_spec.get("tolerations") or ()),
        observed_generation=int(status.get("observedGeneration") or 0),
        updated=int(status.get("updatedReplicas") or 0),
        # A StatefulSet of this API version reports no availableReplicas: its Ready ones stand for them.
        available=int(status.get("availableReplicas", status.get("readyReplicas")) or 0),
        status_replicas=int(status.get("replicas") or 0),
        progressing=next(
            (
                (str(c.get("status", "")), str(c.get("reason", "")), str(c.get("message", "")))
                for c in status.get("conditions") or ()
                if c.get("type") == "Progressing"
            ),
            None,
        ),
        selector=dict((spec.get("selector") or {}).get("matchLabels") or {}),
        revisions=(
            (str(status.get("currentRevision") or ""), str(status.get("updateRevision") or ""))
            if kind == "StatefulSet"
            else None
        ),
        requests=pod_requests(pod_spec),
    )


def rollout_of(workload: WorkloadView, pods: Iterable[Mapping[str, Any]] = ()) -> Rollout:
    """The workload's rollout for the lifecycle: its status, and of its pods (as read) the one the
    scheduler has been failing to place the longest, with the scheduler's reason and message."""
    stuck: list[tuple[float, str]] = []
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        for c in (pod.get("status") or {}).get("conditions") or ():
            if c.get("type") == "PodScheduled" and c.get("status") == "False":
                since = _timestamp(c.get("lastTransitionTime"))
                name = (pod.get("metadata") or {}).get("name", "")
                words = f"pod {name} {c.get('reason') or 'Unschedulable'}: {c.get('message') or ''}".strip()
                if since is not None:
                    stuck.append((since, words))
    oldest = min(stuck) if stuck else None
    return Rollout(
        generation=workload.generation,
        observed_generation=workload.observed_generation,
        replicas=workload.replicas,
        updated=workload.updated,
        available=workload.available,
        total=workload.status_replicas,
        progressing=workload.progressing,
        unschedulable_since=None if oldest is None else oldest[0],
        unschedulable="" if oldest is None else oldest[1],
        revisions=workload.revisions,
    )


def _timestamp(value: object) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def current_placement(policy: NegotiationPolicySpec, workload: WorkloadView) -> str:
    """The pool whose nodeSelector the pod template carries (the most specific match wins)."""
    if not policy.placements:
        return DEFAULT_PLACEMENT
    matches = [
        p
        for p in policy.placements
        if p.node_selector and all(workload.node_selector.get(k) == v for k, v in p.node_selector.items())
    ]
    if not matches:
        return UNMATCHED_PLACEMENT
    return max(matches, key=lambda p: len(p.node_selector)).name


def _pool(
    name: str,
    placement: Placement | None,
    nodes: list[NodeView],
    space: tuple[int, str] | None,
) -> Pool:
    common: dict[str, str] = dict(nodes[0].labels) if nodes else {}
    for node in nodes[1:]:
        common = {k: v for k, v in common.items() if node.labels.get(k) == v}
    return Pool(
        name=name,
        price_per_pod_hour=placement.price_per_pod_hour if placement else None,
        capacity_type=placement.capacity_type if placement else "on-demand",
        node_labels=common,
        regions=frozenset(n.labels[REGION] for n in nodes if REGION in n.labels),
        zones=frozenset(n.labels[ZONE] for n in nodes if ZONE in n.labels),
        nodes=len(nodes),
        room=None if space is None else space[0],
        room_why="" if space is None else space[1],
    )


def pools(
    policy: NegotiationPolicySpec,
    nodes: Iterable[NodeView],
    workload: WorkloadView,
    used: Mapping[str, Requests] | None = None,
) -> dict[str, Pool]:
    """Every placement option as its Nodes show it, plus the workload's current one; with what the
    nodes' pods request (`used`), each policy pool's room for the workload's pods, as they would be
    placed there (the pool's selector and tolerations merged into the workload's own)."""
    known = list(nodes)

    def matching(selector: Mapping[str, str]) -> list[NodeView]:
        return [n for n in known if all(n.labels.get(k) == v for k, v in selector.items())]

    found = {}
    for p in policy.placements:
        template = placed_scheduling(
            {"nodeSelector": dict(workload.node_selector), "tolerations": list(workload.tolerations)}, policy, p
        )
        members = matching(template.get("nodeSelector") or {})
        # Room is known only where pods could be read and some node of the pool has reported its status
        # (a Node object no kubelet has ever reported on says nothing of what it can hold).
        space = (
            None
            if used is None or not any(n.reported for n in members)
            else room(members, used, workload.requests, template.get("tolerations") or ())
        )
        found[p.name] = _pool(p.name, p, members, space)
    current = current_placement(policy, workload)
    if current not in found:
        found[current] = _pool(current, None, matching(workload.node_selector), None)
    return found


# -- placement: the pod-template fields a move owns ------------------------------------------------------------
SCHEDULING_FIELDS = ("nodeSelector", "tolerations", "affinity")
_NODE = "nodeAffinity"
_REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
_PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"
_TERMS = "nodeSelectorTerms"
_TERM_LISTS = ("matchExpressions", "matchFields")


def _clean(value: Any) -> Any:
    """A value as the API server hands it back: no nulls (so equal things compare equal). Empty maps
    stay: an empty labelSelector matches everything, a missing one nothing."""
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _toleration(t: Mapping[str, Any]) -> dict[str, Any]:
    """A toleration in one form: `operator` defaults to Equal, empty strings are unset."""
    found = {k: v for k, v in _clean(t).items() if v != ""}
    found.setdefault("operator", "Equal")
    return found


def _without(items: Sequence[Any], unwanted: Sequence[Any]) -> list[Any]:
    return [i for i in items if i not in unwanted]


def _with(items: Sequence[Any], wanted: Sequence[Any]) -> list[Any]:
    out = list(items)
    out.extend(w for w in wanted if w not in out)
    return out


def _term_minus(term: Mapping[str, Any], pool_terms: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A node selector term without the requirements any pool's term carries."""
    out: dict[str, Any] = {}
    for key in _TERM_LISTS:
        pooled = [r for p in pool_terms for r in p.get(key, [])]
        kept = _without(term.get(key, []), pooled)
        if kept:
            out[key] = kept
    return out


def _term_plus(term: Mapping[str, Any], pool_term: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in _TERM_LISTS:
        merged = _with(term.get(key, []), pool_term.get(key, []))
        if merged:
            out[key] = merged
    return out


def _required_terms(
    own: Sequence[Mapping[str, Any]], pools_terms: Sequence[Mapping[str, Any]], target: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Required node affinity: terms are ORed, a term's requirements ANDed. A pool's terms are ANDed
    with the workload's own by adding each pool term's requirements to each own term (a cross
    product); taking them out strips those requirements again and drops the terms left empty (an
    empty term matches no node) and the duplicates the cross product made."""
    stripped: list[dict[str, Any]] = []
    for term in own:
        rest = _term_minus(term, pools_terms)
        if rest and rest not in stripped:
            stripped.append(rest)
    if not target:
        return stripped
    if not stripped:
        return [_clean(t) for t in target]
    merged: list[dict[str, Any]] = []
    for term in stripped:
        for pool_term in target:
            combined = _term_plus(term, pool_term)
            if combined not in merged:
                merged.append(combined)
    return merged


def _affinity(
    own: Mapping[str, Any], policy_affinities: Sequence[Mapping[str, Any]], target: Mapping[str, Any]
) -> dict[str, Any]:
    """The workload's affinity less every pool's terms, plus the target pool's; no empty structure is left."""
    out: dict[str, Any] = {k: v for k, v in own.items() if k not in {_NODE, "podAffinity", "podAntiAffinity"}}
    for kind in (_NODE, "podAffinity", "podAntiAffinity"):
        mine: Mapping[str, Any] = own.get(kind, {})
        theirs = [a.get(kind, {}) for a in policy_affinities]
        wanted: Mapping[str, Any] = target.get(kind, {})
        block: dict[str, Any] = {k: v for k, v in mine.items() if k not in {_REQUIRED, _PREFERRED}}
        # Preferred terms (every kind) and required pod (anti-)affinity terms are independent items of a list.
        preferred = _with(
            _without(mine.get(_PREFERRED, []), [p for t in theirs for p in t.get(_PREFERRED, [])]),
            wanted.get(_PREFERRED, []),
        )
        if preferred:
            block[_PREFERRED] = preferred
        if kind == _NODE:
            terms = _required_terms(
                mine.get(_REQUIRED, {}).get(_TERMS, []),
                [term for t in theirs for term in t.get(_REQUIRED, {}).get(_TERMS, [])],
                wanted.get(_REQUIRED, {}).get(_TERMS, []),
            )
            if terms:
                block[_REQUIRED] = {**{k: v for k, v in mine.get(_REQUIRED, {}).items() if k != _TERMS}, _TERMS: terms}
        else:
            required = _with(
                _without(mine.get(_REQUIRED, []), [r for t in theirs for r in t.get(_REQUIRED, [])]),
                wanted.get(_REQUIRED, []),
            )
            if required:
                block[_REQUIRED] = required
        if block:
            out[kind] = block
    return out


def placed_scheduling(pod_spec: Mapping[str, Any], policy: NegotiationPolicySpec, target: Placement) -> dict[str, Any]:
    """The pod template's nodeSelector, tolerations and affinity after a move to `target`.

    A placement owns only its own keys: every pair, toleration and affinity term that one of the
    policy's pools sets is taken out, the target pool's are put in, and everything else the
    workload had stays. Where the target sets a nodeSelector key the workload also sets, the
    target's value wins (a map holds one value per key; the move would mean nothing otherwise). A
    field left empty is None: the caller removes it rather than writing an empty structure.
    Pool terms are recognised by equality, so a constraint of the workload's own that equals a
    pool's is taken for the pool's."""
    own = {k: _clean(pod_spec.get(k)) for k in SCHEDULING_FIELDS if pod_spec.get(k)}
    selector: dict[str, str] = dict(own.get("nodeSelector", {}))
    for pool in policy.placements:
        for key, value in pool.node_selector.items():
            if selector.get(key) == value:
                del selector[key]
    selector.update(target.node_selector)
    pooled = [_toleration(t.to_wire()) for p in policy.placements for t in p.tolerations]
    tolerations = [t for t in own.get("tolerations", []) if _toleration(t) not in pooled]
    for toleration in (t.to_wire() for t in target.tolerations):
        if _toleration(toleration) not in map(_toleration, tolerations):
            tolerations.append(toleration)
    affinity = _affinity(
        own.get("affinity", {}),
        [_clean(p.affinity) for p in policy.placements if p.affinity],
        _clean(target.affinity or {}),
    )
    return {"nodeSelector": selector or None, "tolerations": tolerations or None, "affinity": affinity or None}


ORIGINAL_MIN = "accord.dev/original-min-replicas"
ORIGINAL_MAX = "accord.dev/original-max-replicas"


@dataclass(frozen=True, slots=True)
class AutoscalerView:
    """A HorizontalPodAutoscaler as the operator needs it: its bounds, what they were before Accord
    raised them (kept in its annotations, so that they can be given back), and a KEDA ScaledObject
    that owns it (KEDA reconciles its HPA: a patch of it would be reverted, an endless fight)."""

    name: str
    namespace: str
    target: str  # the key of the workload it scales
    min_replicas: int | None
    max_replicas: int
    original: tuple[int | None, int] | None = None
    keda_owner: str | None = None


def autoscaler_view(body: Mapping[str, Any]) -> AutoscalerView:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    target = spec.get("scaleTargetRef") or {}
    annotations = meta.get("annotations") or {}
    original = None
    high = str(annotations.get(ORIGINAL_MAX, ""))
    if high.isdigit():
        low = str(annotations.get(ORIGINAL_MIN, ""))
        original = (int(low) if low.isdigit() else None, int(high))
    keda = next(
        (
            f"{o.get('kind')} {o.get('name')}"
            for o in meta.get("ownerReferences") or []
            if str(o.get("apiVersion", "")).startswith("keda.sh/")
        ),
        None,
    )
    return AutoscalerView(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        target=f"{target.get('kind')}/{meta.get('namespace')}/{target.get('name')}",
        min_replicas=spec.get("minReplicas"),
        max_replicas=int(spec.get("maxReplicas") or 1),
        original=original,
        keda_owner=keda,
    )
