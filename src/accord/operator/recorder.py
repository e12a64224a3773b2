"""Writes what was decided: Negotiation records, their phases, status and Events (operator layer).

The executor is the only writer of workloads; this module writes only Accord's own resources
and Events, so that `kubectl get negotiations` and `kubectl describe` tell the story.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from accord.models.common import API_VERSION, Condition, ConditionStatus
from accord.models.negotiation import WorkloadRef
from accord.negotiation.lifecycle import Approval, SetPhase, Write, moment
from accord.operator import observability
from accord.operator.kube import Kube

log = logging.getLogger(__name__)

PLURAL = "negotiations"
LABEL_WORKLOAD = "accord.dev/workload"
LABEL_KIND = "accord.dev/workload-kind"
LABEL_POLICY = "accord.dev/policy"
APPROVAL = "accord.dev/approval"
APPROVER = "accord.dev/approver"
APPROVER_GROUPS = "accord.dev/approver-groups"


def now_iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(type_: str, status: bool, reason: str, message: str, generation: int | None = None) -> dict[str, Any]:
    return Condition(
        type=type_,
        status=ConditionStatus.TRUE if status else ConditionStatus.FALSE,
        reason=reason,
        message=message[:2000],
        observed_generation=generation,
        last_transition_time=datetime.now(tz=UTC).replace(microsecond=0),
    ).to_wire()


def merge_conditions(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replace conditions by type, keeping lastTransitionTime when the status did not change."""
    by_type = {c.get("type"): c for c in old}
    for cond in new:
        prior = by_type.get(cond["type"])
        if prior is not None and prior.get("status") == cond["status"] and prior.get("lastTransitionTime"):
            cond = {**cond, "lastTransitionTime": prior["lastTransitionTime"]}
        by_type[cond["type"]] = cond
    return list(by_type.values())


# An Event repeated within this many seconds is counted on the first one instead of written again, so
# that a condition that lasts (a held decision, an autoscaler conflict) keeps one Event, not one a round.
REPEAT_WINDOW = 3600.0
REMEMBERED_EVENTS = 4096


class Recorder:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        # (namespace, kind, name, uid, reason, message, type) -> (Event name, count, first time)
        self.seen: OrderedDict[tuple[str, ...], tuple[str, int, float]] = OrderedDict()

    async def write(self, namespace: str, write: Write) -> None:
        """Create the record the lifecycle decided to write, then its status (a subresource)."""
        record = write.record
        spec = write.spec()
        body = {
            "apiVersion": API_VERSION,
            "kind": "Negotiation",
            "metadata": {
                "name": record.name,
                "namespace": namespace,
                "labels": {
                    LABEL_WORKLOAD: spec.workload.name[:63],
                    LABEL_KIND: spec.workload.kind,
                    LABEL_POLICY: record.policy.rsplit("/", 1)[-1][:63],
                },
            },
            "spec": spec.to_wire(),
        }
        await self.kube.create_custom(PLURAL, namespace, body)
        status: dict[str, Any] = {
            "phase": record.phase.value,
            "message": write.message[:2000],
            "fingerprint": record.fingerprint,
        }
        if record.expires_at is not None:
            status["expiresAt"] = moment(record.expires_at)
        await self.kube.patch_status(PLURAL, namespace, record.name, status)
        observability.DECISIONS.labels(verdict=record.verdict.value, phase=record.phase.value).inc()

    async def set_phase(self, namespace: str, change: SetPhase) -> None:
        status: dict[str, Any] = {"phase": change.phase.value, "message": change.message[:2000]}
        if change.applied_at is not None:
            status["appliedAt"] = moment(change.applied_at)
        if change.superseded_by is not None:
            status["supersededBy"] = change.superseded_by
        if change.generation is not None:
            status["rolloutGeneration"] = change.generation
        if change.approval is not None:
            status["approval"] = approval_status(change.approval)
        try:
            await self.kube.patch_status(PLURAL, namespace, change.name, status)
        except ApiException as exc:
            if exc.status != 404:  # a record deleted meanwhile has nothing left to record
                raise
        observability.DECISIONS.labels(verdict="-", phase=change.phase.value).inc()

    async def delete(self, namespace: str, name: str) -> None:
        await self.kube.delete_custom(PLURAL, namespace, name)

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
        key = (
            namespace,
            str(involved.get("kind")),
            str(meta.get("name")),
            str(meta.get("uid")),
            reason,
            message,
            type_,
        )
        try:
            seen = self.seen.get(key)
            if seen is not None and ts.timestamp() - seen[2] < REPEAT_WINDOW:
                # The same Event again: counted on the one object, as kubectl's and client-go's recorders do.
                count = seen[1] + 1
                try:
                    patch = {"count": count, "lastTimestamp": ts.isoformat()}
                    await self.kube.call(
                        "patch events", self.kube.core.patch_namespaced_event, seen[0], namespace, patch
                    )
                    self.seen[key] = (seen[0], count, seen[2])
                    self.seen.move_to_end(key)
                    return
                except ApiException as exc:
                    if exc.status != 404:
                        raise
            created = await self.kube.call("create events", self.kube.core.create_namespaced_event, namespace, body)
            self.seen[key] = (str(created.metadata.name), 1, ts.timestamp())
            while len(self.seen) > REMEMBERED_EVENTS:
                self.seen.popitem(last=False)
        except ApiException as exc:
            log.warning("could not post event %s on %s/%s: %s", reason, namespace, meta.get("name"), exc.reason)


def approval_status(approval: Approval) -> dict[str, Any]:
    return {
        "decision": approval.decision,
        "user": approval.user if approval.verified else f"{approval.user} (unverified)",
        "groups": list(approval.groups),
        "time": moment(approval.time) if approval.time is not None else now_iso(),
    }


def workload_ref(workload: WorkloadRef) -> dict[str, Any]:
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


def parse_moment(value: object) -> float | None:
    """A status time (`2026-01-01T00:00:00Z`) as unix time; None when absent or not a time."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def expired(expires_at: str | None, now: float) -> bool:
    if not expires_at:
        return False
    moment = datetime.strptime(expires_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return moment <= datetime.fromtimestamp(now, tz=UTC)
