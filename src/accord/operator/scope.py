"""Which workloads a policy may reach, and whether it asks for more (operator layer, pure).

Accord holds write rights its users may not have, so a policy reaches only what its author could
be trusted with:

- a NegotiationPolicy reaches its own namespace only; `spec.namespaces` may name that namespace,
  nothing else (no other namespace, no `*`);
- a ClusterNegotiationPolicy (cluster-scoped: only cluster administrators create one) reaches the
  namespaces it names or selects, and there only workloads that opt in, themselves or through
  their namespace (`accord.dev/negotiate: "true"`); a workload may opt out with `"false"`;
- protected namespaces (kube-system, kube-public, kube-node-lease and the operator's configured
  list) are never reached, by any policy.

A policy that asks for more than it may have is Invalid as a whole: it acts on nothing, rather
than on the part it may have, so that its author sees the refusal instead of a silent shrink.

Keys follow client-go's cache keys: `namespace/name` for a NegotiationPolicy, the bare `name` for
a ClusterNegotiationPolicy (namespace names have no slash). A Negotiation's `spec.policy` is that key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from accord.models.common import LabelSelector
from accord.models.policy import ClusterNegotiationPolicySpec, NegotiationPolicySpec
from accord.operator.workloads import WorkloadView

OPT_IN = "accord.dev/negotiate"
ALWAYS_PROTECTED = frozenset({"kube-system", "kube-public", "kube-node-lease"})
ALL = "*"
TRUE = frozenset({"true", "1", "yes"})
FALSE = frozenset({"false", "0", "no"})


@dataclass(frozen=True, slots=True)
class PolicyRef:
    """A NegotiationPolicy (namespace set) or a ClusterNegotiationPolicy (namespace None)."""

    name: str
    namespace: str | None = None

    @property
    def cluster(self) -> bool:
        return self.namespace is None

    @property
    def kind(self) -> str:
        return "ClusterNegotiationPolicy" if self.cluster else "NegotiationPolicy"

    @property
    def plural(self) -> str:
        return "clusternegotiationpolicies" if self.cluster else "negotiationpolicies"

    @property
    def key(self) -> str:
        return self.name if self.namespace is None else f"{self.namespace}/{self.name}"

    @classmethod
    def from_key(cls, key: str) -> PolicyRef:
        namespace, slash, name = key.partition("/")
        return cls(name=name, namespace=namespace) if slash else cls(name=key)

    def __str__(self) -> str:
        return f"{self.kind} {self.key}"


def protected_namespaces(configured: Iterable[str] = ()) -> frozenset[str]:
    """The namespaces no policy reaches: Kubernetes' own, plus the operator's configured list."""
    return ALWAYS_PROTECTED | {n for n in configured if n}


def _flag(value: str | None) -> bool | None:
    if value is None:
        return None
    lowered = value.strip().lower()
    return True if lowered in TRUE else False if lowered in FALSE else None


def opted_in(workload: WorkloadView, namespace_labels: Mapping[str, str] | None) -> bool:
    """The workload says yes (label or annotation), or its namespace's label does and the workload
    does not say no."""
    own = _flag(workload.labels.get(OPT_IN))
    if own is None:
        own = _flag(workload.annotations.get(OPT_IN))
    if own is not None:
        return own
    return _flag((namespace_labels or {}).get(OPT_IN)) is True


def scope_problems(
    spec: NegotiationPolicySpec,
    ref: PolicyRef,
    *,
    protected: frozenset[str],
    placements_allowed: bool = True,
) -> list[str]:
    """Why the policy asks for more than it may have; empty when it asks for nothing more."""
    problems: list[str] = []
    if ref.namespace is not None:
        others = sorted({n for n in spec.namespaces if n != ref.namespace})
        if others:
            named = ", ".join(repr(n) for n in others)
            problems.append(
                f"a NegotiationPolicy reaches only its own namespace ({ref.namespace}), but spec.namespaces "
                f"names {named}; reaching other namespaces takes a ClusterNegotiationPolicy, which only "
                "cluster administrators create"
            )
        if ref.namespace in protected:
            problems.append(f"namespace {ref.namespace} is protected: Accord negotiates nothing there")
    else:
        refused = sorted(set(spec.namespaces) & protected)
        if refused:
            problems.append(
                f"spec.namespaces names the protected namespace(s) {', '.join(refused)}: "
                "Accord negotiates nothing there, for any policy"
            )
    if spec.placements and not placements_allowed:
        problems.append(
            "spec.placements is set, but this Accord install may not change pod templates (placements are "
            "disabled: chart value placements.enabled, or `accord run --no-placements`); remove spec.placements "
            "or enable placements"
        )
    return problems


def _namespace_admitted(spec: ClusterNegotiationPolicySpec, namespace: str, labels: Mapping[str, str]) -> bool:
    if spec.namespaces and ALL not in spec.namespaces and namespace not in spec.namespaces:
        return False
    selector: LabelSelector | None = spec.namespace_selector
    return selector is None or selector.matches(labels)


def reaches(
    spec: NegotiationPolicySpec,
    ref: PolicyRef,
    workload: WorkloadView,
    *,
    namespace_labels: Mapping[str, Mapping[str, str]],
    protected: frozenset[str],
) -> bool:
    """Whether this (valid) policy negotiates this workload: scope first, then kinds and labels."""
    if workload.namespace in protected:
        return False
    if ref.namespace is not None:
        if workload.namespace != ref.namespace:
            return False
    else:
        if not isinstance(spec, ClusterNegotiationPolicySpec):
            return False
        labels = namespace_labels.get(workload.namespace)
        if labels is None:
            return False  # a namespace not (yet) seen: its labels decide, so nothing until they are known
        if not _namespace_admitted(spec, workload.namespace, labels) or not opted_in(workload, labels):
            return False
    if workload.kind not in {k.value for k in spec.kinds}:
        return False
    return spec.selector.matches(workload.labels)


def owner(claims: Iterable[tuple[str, str]]) -> str | None:
    """Of the policies that select one workload, the one that negotiates it: the oldest (by creation
    time, then key). The others leave it alone and say so. `claims`: (creationTimestamp, key) pairs;
    RFC 3339 times in UTC order as text."""
    found = sorted(claims)
    return found[0][1] if found else None
