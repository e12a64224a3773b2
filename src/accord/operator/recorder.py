"""Writes what was decided: Negotiation records, their phases, status and Events (operator layer).

The executor is the only writer of workloads; this module writes only Accord's own resources
and Events, so that `kubectl get negotiations` and `kubectl describe` tell the story.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from accord.models.common import API_VERSION, Condition, ConditionStatus
from accord.models.negotiation import NegotiationSpec, Phase
from accord.operator import observability
from accord.operator.kube import Kube
from accord.operator.state import LatestRecord, State
from accord.operator.workloads import WorkloadView

log = logging.getLogger(__name__)

PLURAL = "negotiations"
LABEL_WORKLOAD = "accord.dev/workload"
LABEL_KIND = "accord.dev/workload-kind"
LABEL_POLICY = "accord.dev/policy"
APPROVAL = "accord.dev/approval"
APPROVER = "accord.dev/approver"
APPROVER_GROUPS = "accord.dev/approver-groups"
KEEP_PHASES = {Phase.PENDING_APPROVAL.value, Phase.APPROVED.value, Phase.PROPOSED.value}
KIND_SHORT = {"Deployment": "deploy", "StatefulSet": "sts"}


def now_iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _base36(value: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while value:
        value, rem = divmod(value, 36)
        out = digits[rem] + out
    return out or "0"


def record_name(workload: WorkloadView, now: float) -> str:
    return f"{workload.name[:200]}-{KIND_SHORT.get(workload.kind, 'w')}-{_base36(int(now * 1000))}"


def condition(type_: str, status: bool, reason: str, message: str, generation: int | None = None) -> dict[str, Any]:
    return Condition(
        type=type_,
        status=ConditionStatus.TRUE if status else ConditionStatus.FALSE,
        reason=reason,
        message=message[:2000],
        observed_generation=generation,
        last_transition_time=datetime.now(tz=UTC).replace(microsecond=0),
    ).to_wire()


def signature(spec: NegotiationSpec) -> str:
    """What makes two decisions the same for de-duplication: verdict, agreement, target and gating rules."""
    agreed = spec.outcome.agreed or spec.outcome.target
    rules = ",".join(sorted({g.rule for g in spec.gates}))
    return (
        f"{spec.outcome.verdict.value}|{spec.current.replicas}@{spec.current.placement}|"
        f"{agreed.replicas}@{agreed.placement}|{spec.outcome.target.replicas}@{spec.outcome.target.placement}|{rules}"
    )


def merge_conditions(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replace conditions by type, keeping lastTransitionTime when the status did not change."""
    by_type = {c.get("type"): c for c in old}
    for cond in new:
        prior = by_type.get(cond["type"])
        if prior is not None and prior.get("status") == cond["status"] and prior.get("lastTransitionTime"):
            cond = {**cond, "lastTransitionTime": prior["lastTransitionTime"]}
        by_type[cond["type"]] = cond
    return list(by_type.values())


class Recorder:
    def __init__(self, kube: Kube, state: State) -> None:
        self.kube = kube
        self.state = state

    async def create(
        self,
        *,
        workload: WorkloadView,
        spec: NegotiationSpec,
        phase: Phase,
        message: str,
        policy_name: str,
        expires_in: float | None = None,
        history_limit: int = 10,
    ) -> str:
        now = time.time()
        name = record_name(workload, now)
        body = {
            "apiVersion": API_VERSION,
            "kind": "Negotiation",
            "metadata": {
                "name": name,
                "namespace": workload.namespace,
                "labels": {
                    LABEL_WORKLOAD: workload.name[:63],
                    LABEL_KIND: workload.kind,
                    LABEL_POLICY: policy_name.rsplit("/", 1)[-1][:63],
                },
            },
            "spec": spec.to_wire(),
        }
        await self.kube.create_custom(PLURAL, workload.namespace, body)
        status: dict[str, Any] = {"phase": phase.value, "message": message[:2000]}
        if expires_in is not None:
            status["expiresAt"] = now_iso(now + expires_in)
        await self.kube.patch_status(PLURAL, workload.namespace, name, status)
        self.state.latest[workload.key] = LatestRecord(
            name=name,
            namespace=workload.namespace,
            phase=phase.value,
            verdict=spec.outcome.verdict.value,
            target=(spec.outcome.target.replicas, spec.outcome.target.placement),
            policy=policy_name,
            signature=signature(spec),
            expires_at=status.get("expiresAt"),
            created=now_iso(now),
        )
        if phase is Phase.PENDING_APPROVAL:
            self.state.pending[workload.key] = self.state.latest[workload.key]
        self.state.records.setdefault(workload.key, {})[name] = (now_iso(now), phase.value)
        observability.DECISIONS.labels(verdict=spec.outcome.verdict.value, phase=phase.value).inc()
        await self.prune(workload, history_limit)
        return name

    async def set_phase(self, namespace: str, name: str, phase: Phase, message: str, **extra: Any) -> None:
        status: dict[str, Any] = {"phase": phase.value, "message": message[:2000], **extra}
        await self.kube.patch_status(PLURAL, namespace, name, status)
        for table in (self.state.latest, self.state.pending):
            for key, rec in list(table.items()):
                if rec.name == name and rec.namespace == namespace:
                    rec.phase = phase.value
                    if table is self.state.pending and phase.value != Phase.PENDING_APPROVAL.value:
                        del table[key]
        for known in self.state.records.values():
            if name in known:
                known[name] = (known[name][0], phase.value)
        observability.DECISIONS.labels(verdict="-", phase=phase.value).inc()

    async def prune(self, workload: WorkloadView, limit: int) -> None:
        """Keep the newest `limit` records of a workload; never drop one that still waits or acts.

        The records are known from the watch (`State.records`), so this costs no list request
        until there is something to delete.
        """
        known = self.state.records.get(workload.key, {})
        if len(known) <= limit:
            return
        newest_first = sorted(known.items(), key=lambda kv: (kv[1][0], kv[0]), reverse=True)
        for name, (_, phase) in newest_first[limit:]:
            if phase in KEEP_PHASES:
                continue
            await self.kube.delete_custom(PLURAL, workload.namespace, name)
            known.pop(name, None)

    async def event(
        self,
        *,
        involved: dict[str, Any],
        reason: str,
        message: str,
        type_: str = "Normal",
    ) -> None:
        """Post a core/v1 Event; losing one is logged, never fatal."""
        meta = involved.get("metadata", {})
        namespace = meta.get("namespace") or "default"
        ts = datetime.now(tz=UTC)
        body = {
            "metadata": {"generateName": f"{meta.get('name', 'accord')[:200]}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta.get("name"),
                # A cluster-scoped object (a ClusterNegotiationPolicy) has none; its Events go to "default".
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "source": {"component": "accord"},
            "firstTimestamp": ts.isoformat(),
            "lastTimestamp": ts.isoformat(),
            "count": 1,
            "reportingComponent": "accord",
            "reportingInstance": "accord-operator",
        }
        try:
            await self.kube.call("create events", self.kube.core.create_namespaced_event, namespace, body)
        except ApiException as exc:
            log.warning("could not post event %s on %s/%s: %s", reason, namespace, meta.get("name"), exc.reason)


def workload_ref(workload: WorkloadView) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": workload.kind,
        "metadata": {"name": workload.name, "namespace": workload.namespace, "uid": workload.uid},
    }


def negotiation_ref(namespace: str, name: str, uid: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Negotiation",
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
    }


def expired(expires_at: str | None, now: float) -> bool:
    if not expires_at:
        return False
    moment = datetime.strptime(expires_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return moment <= datetime.fromtimestamp(now, tz=UTC)
