"""kopf registrations of ClusterNegotiationPolicies and of Namespaces' labels (operator layer).

Imported by `accord run` only when it watches the whole cluster: an install limited to some
namespaces (`--namespace`) serves NegotiationPolicies alone and holds no cluster-wide rights. A
ClusterNegotiationPolicy reaches only opted-in workloads, and a namespace opts in by a label, so
the operator follows the labels of Namespaces (read-only, `on.event`: nothing is written on them).
"""

from __future__ import annotations

from typing import Any

import kopf

from accord.models.common import GROUP, VERSION
from accord.operator.handlers import _negotiator, handled, remember_policy, watched
from accord.operator.scope import PolicyRef
from accord.operator.state import State

PLURAL = "clusternegotiationpolicies"


watched("", "v1", "namespaces", namespaced=False)


@kopf.on.event("", "v1", "namespaces")
def namespace_event(event: kopf.RawEvent, body: kopf.Body, memo: Any, **_: Any) -> None:
    handled(memo)
    state: State = memo["state"]
    meta = body.get("metadata", {})
    name = meta.get("name", "")
    if event.get("type") == "DELETED":
        state.namespace_labels.pop(name, None)
        return
    labels = dict(meta.get("labels") or {})
    if state.namespace_labels.get(name) != labels:
        state.namespace_labels[name] = labels
        state.wake()  # an opt-in (or out) of a whole namespace: the cluster policies look again


watched(GROUP, VERSION, PLURAL, namespaced=False)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def cluster_policy_event(event: kopf.RawEvent, body: kopf.Body, memo: Any, **_: Any) -> None:
    handled(memo)
    remember_policy(memo["state"], PolicyRef(body.get("metadata", {}).get("name", "")).key, event, body)
    if event.get("type") == "DELETED":
        await _negotiator(memo).release_autoscalers()


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=5.0, initial_delay=3.0)
async def cluster_policy_daemon(name: str, body: kopf.Body, memo: Any, stopped: kopf.DaemonStopped, **_: Any) -> None:
    state: State = memo["state"]
    state.policy_bodies.setdefault(PolicyRef(name).key, dict(body))
    await _negotiator(memo).run_policy(None, name, stopped)
