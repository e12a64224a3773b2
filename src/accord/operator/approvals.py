"""Human approval of pending decisions (operator layer).

A person annotates a Negotiation with `accord.dev/approval: approved` (or `rejected`). With the
admission webhook on, a mutating hook stamps who did it (`accord.dev/approver`, from the API
request's user info, overwriting anything the user wrote) and a validating hook refuses anyone
who is not among the policy's approvers. The operator then acts on the annotation: it records
the approval, re-checks expiry, and hands an approved decision to the executor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from accord.models.common import from_wire
from accord.models.negotiation import NegotiationSpec, Phase
from accord.operator.loop import Negotiator
from accord.operator.recorder import (
    APPROVAL,
    APPROVER,
    APPROVER_GROUPS,
    expired,
    negotiation_ref,
    now_iso,
    signature,
)
from accord.operator.scope import PolicyRef
from accord.operator.state import LatestRecord, State, parse_policy

log = logging.getLogger(__name__)

DECISIONS = ("approved", "rejected")


class ApprovalRefused(Exception):  # noqa: N818 - surfaced to the user as the webhook's message
    def __init__(self, message: str, code: int = 403) -> None:
        super().__init__(message)
        self.code = code


def _annotations(body: Mapping[str, Any] | None) -> Mapping[str, str]:
    return ((body or {}).get("metadata") or {}).get("annotations") or {}


def approval_changed(body: Mapping[str, Any], old: Mapping[str, Any] | None) -> bool:
    return _annotations(body).get(APPROVAL) != _annotations(old).get(APPROVAL)


def check_approver(
    *, state: State, body: Mapping[str, Any], old: Mapping[str, Any] | None, userinfo: Mapping[str, Any]
) -> None:
    """Refuse an approval annotation from someone who may not give it. Pure apart from `state` reads."""
    if not approval_changed(body, old):
        if _annotations(body).get(APPROVER) != _annotations(old).get(APPROVER) or _annotations(body).get(
            APPROVER_GROUPS
        ) != _annotations(old).get(APPROVER_GROUPS):
            raise ApprovalRefused(f"{APPROVER} is recorded by Accord and cannot be set by hand")
        return
    value = _annotations(body).get(APPROVAL)
    if value not in DECISIONS:
        raise ApprovalRefused(f"{APPROVAL} must be 'approved' or 'rejected', not {value!r}", code=422)
    phase = ((old or {}).get("status") or {}).get("phase")
    if phase != Phase.PENDING_APPROVAL.value:
        raise ApprovalRefused(
            f"only a PendingApproval decision can be approved or rejected; this one is {phase}", code=409
        )
    policy_key = (body.get("spec") or {}).get("policy", "")
    policy_body = state.policy_bodies.get(policy_key)
    if policy_body is None:
        raise ApprovalRefused(f"policy {policy_key} is not known to the operator", code=409)
    try:
        policy = parse_policy(PolicyRef.from_key(policy_key), policy_body.get("spec") or {})
    except ValidationError as exc:
        raise ApprovalRefused(f"policy {policy_key} is invalid", code=409) from exc
    user = str(userinfo.get("username", ""))
    groups = set(userinfo.get("groups") or [])
    if user in policy.approval.approvers or groups & set(policy.approval.approver_groups):
        return
    raise ApprovalRefused(f"{user or 'an anonymous user'} is not an approver of policy {policy_key}")


def stamp(body: Mapping[str, Any], old: Mapping[str, Any] | None, userinfo: Mapping[str, Any]) -> dict[str, str]:
    """Annotations the mutating hook sets: who approved, taken from the request, never from the user."""
    if not approval_changed(body, old):
        return {}
    return {
        APPROVER: str(userinfo.get("username", "")),
        APPROVER_GROUPS: ",".join(sorted(userinfo.get("groups") or [])),
    }


def track(state: State, body: Mapping[str, Any], deleted: bool = False) -> NegotiationSpec | None:
    """Keep the newest Negotiation and the pending one of each workload in memory (rebuilt on restart)."""
    meta = body.get("metadata") or {}
    try:
        spec = from_wire(NegotiationSpec, body.get("spec") or {})
    except ValidationError:
        return None
    key = f"{spec.workload.kind}/{spec.workload.namespace}/{spec.workload.name}"
    status = body.get("status") or {}
    rec = LatestRecord(
        name=meta.get("name", ""),
        namespace=meta.get("namespace", ""),
        phase=status.get("phase", Phase.PROPOSED.value),
        verdict=spec.outcome.verdict.value,
        target=(spec.outcome.target.replicas, spec.outcome.target.placement),
        policy=spec.policy,
        signature=signature(spec),
        expires_at=status.get("expiresAt"),
        created=meta.get("creationTimestamp", ""),
    )
    for table in (state.latest, state.pending):
        if deleted and table.get(key) is not None and table[key].name == rec.name:
            del table[key]
    if deleted:
        state.records.get(key, {}).pop(rec.name, None)
        return spec
    state.records.setdefault(key, {})[rec.name] = (rec.created, rec.phase)
    current = state.latest.get(key)
    if current is None or (current.created, current.name) <= (rec.created, rec.name) or current.name == rec.name:
        state.latest[key] = rec
    if rec.phase == Phase.PENDING_APPROVAL.value:
        state.pending[key] = rec
    elif state.pending.get(key) is not None and state.pending[key].name == rec.name:
        del state.pending[key]
    return spec


async def act_on_approval(negotiator: Negotiator, body: Mapping[str, Any], *, webhook: bool) -> None:
    """Carry out a person's decision on a pending Negotiation. Safe to run again after a restart."""
    state = negotiator.state
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    phase = status.get("phase")
    decision = _annotations(body).get(APPROVAL)
    if decision not in DECISIONS or phase not in (Phase.PENDING_APPROVAL.value, Phase.APPROVED.value):
        return
    spec = from_wire(NegotiationSpec, body.get("spec") or {})
    namespace, name = meta["namespace"], meta["name"]
    key = f"{spec.workload.kind}/{spec.workload.namespace}/{spec.workload.name}"
    approver = _annotations(body).get(APPROVER) or ("(unverified: the admission webhook is off)" if not webhook else "")
    groups = [g for g in (_annotations(body).get(APPROVER_GROUPS) or "").split(",") if g]
    record = {"decision": decision, "user": approver or "(unknown)", "groups": groups, "time": now_iso()}
    async with state.lock(key):
        # Events can arrive late and twice (our own status patch is one): act on the object as it is now.
        try:
            fresh = await negotiator.kube.get_custom("negotiations", namespace, name)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        status = fresh.get("status") or {}
        phase = status.get("phase")
        if _annotations(fresh).get(APPROVAL) != decision or phase not in (
            Phase.PENDING_APPROVAL.value,
            Phase.APPROVED.value,
        ):
            return
        if phase == Phase.PENDING_APPROVAL.value and expired(status.get("expiresAt"), time.time()):
            await negotiator.recorder.set_phase(
                namespace, name, Phase.EXPIRED, f"{decision} after it expired at {status.get('expiresAt')}"
            )
            return
        if webhook and not _annotations(body).get(APPROVER):
            # Only reachable if the webhook was bypassed (e.g. it was down and failurePolicy ignored it).
            await negotiator.recorder.set_phase(
                namespace,
                name,
                Phase.REJECTED,
                "approval without a recorded approver is not accepted",
                approval={**record, "decision": "rejected"},
            )
            return
        if decision == "rejected":
            await negotiator.recorder.set_phase(
                namespace, name, Phase.REJECTED, f"rejected by {record['user']}", approval=record
            )
            await negotiator.recorder.event(
                involved=negotiation_ref(namespace, name, meta.get("uid")),
                reason="Rejected",
                message=f"rejected by {record['user']}",
            )
            return
        if phase == Phase.PENDING_APPROVAL.value:
            await negotiator.recorder.set_phase(
                namespace, name, Phase.APPROVED, f"approved by {record['user']}", approval=record
            )
        policy_body = state.policy_bodies.get(spec.policy)
        if policy_body is None:
            await negotiator.recorder.set_phase(namespace, name, Phase.FAILED, f"policy {spec.policy} is gone")
            return
        policy = state.policy(spec.policy)
        w = state.workloads.get(key)
        if w is None:
            await negotiator.recorder.set_phase(namespace, name, Phase.SUPERSEDED, "the workload is gone")
            return
        if policy is None or namespace != w.namespace or not state.selects(policy, PolicyRef.from_key(spec.policy), w):
            await negotiator.recorder.set_phase(
                namespace, name, Phase.FAILED, f"policy {spec.policy} is invalid or does not reach {w.key}"
            )
            return
        await negotiator.execute(name, spec, policy, w)
