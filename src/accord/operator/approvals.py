"""Human approval of pending decisions (operator layer).

A person annotates a Negotiation with `accord.dev/approval: approved` (or `rejected`). With the
admission webhook on, a mutating hook stamps who did it (`accord.dev/approver`, from the API
request's user info, overwriting anything the user wrote) and a validating hook refuses anyone
who is not among the policy's approvers. The operator then hands the annotation to the decision
lifecycle (`lifecycle.approve`), which re-checks the record's fingerprint, its expiry and the approver
against the policy that made the decision, and hands an approved decision to the executor.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from accord.models.common import GROUP, VERSION, from_wire
from accord.models.negotiation import NegotiationSpec, Phase
from accord.negotiation import lifecycle
from accord.operator.loop import Negotiator
from accord.operator.recorder import APPROVAL, APPROVER, APPROVER_GROUPS, parse_moment
from accord.operator.scope import PolicyRef
from accord.operator.state import State, parse_policy

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


def check_update(
    *, state: State, body: Mapping[str, Any], old: Mapping[str, Any] | None, userinfo: Mapping[str, Any]
) -> None:
    """Refuse an edit of a Negotiation's spec (it is the decision as made: evidence, never a request)
    and an approval annotation from someone who may not give it. Pure apart from `state` reads."""
    if old is not None and (body.get("spec") or {}) != (old.get("spec") or {}):
        raise ApprovalRefused(
            "a Negotiation's spec is the decision as made and is immutable; "
            "approve or reject it with the accord.dev/approval annotation",
            code=422,
        )
    check_approver(state=state, body=body, old=old, userinfo=userinfo)


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


def track(
    state: State, body: Mapping[str, Any], *, deleted: bool = False, now: float, follow: bool = False
) -> NegotiationSpec | None:
    """A Negotiation seen by the watch, folded into its workload's decision state (so the state is
    rebuilt from the records after a restart). `follow`: another operator writes the records now, so
    what the watch shows of a known record is newer than what this one remembers."""
    meta = body.get("metadata") or {}
    try:
        spec = from_wire(NegotiationSpec, body.get("spec") or {})
    except ValidationError:
        return None
    if meta.get("namespace") != spec.workload.namespace:
        return None  # Accord writes a workload's records beside it; anything else is not a decision of its own
    key = f"{spec.workload.kind}/{spec.workload.namespace}/{spec.workload.name}"
    record = lifecycle.record_from(
        name=str(meta.get("name", "")), spec=spec, status=body.get("status") or {}, parse_time=parse_moment
    )
    state.decisions[key] = lifecycle.observe(
        state.decisions.get(key, lifecycle.Decisions()), record, deleted=deleted, now=now, follow=follow
    )
    return spec


async def act_on_approval(negotiator: Negotiator, body: Mapping[str, Any], *, webhook: bool) -> None:
    """Carry out a person's decision on a pending Negotiation. Safe to run again after a restart."""
    state = negotiator.state
    meta = body.get("metadata") or {}
    phase = (body.get("status") or {}).get("phase")
    decision = _annotations(body).get(APPROVAL)
    if decision not in DECISIONS or phase not in (Phase.PENDING_APPROVAL.value, Phase.APPROVED.value):
        return
    try:
        spec = from_wire(NegotiationSpec, body.get("spec") or {})
    except ValidationError:
        return
    namespace, name = meta["namespace"], meta["name"]
    key = f"{spec.workload.kind}/{spec.workload.namespace}/{spec.workload.name}"
    if not negotiator.writes(namespace):
        return  # the holder of the namespace's shard carries it out
    async with state.lock(key):
        # Events can arrive late and twice (our own status patch is one): act on the object as it is now.
        try:
            fresh = await negotiator.kube.get_custom("negotiations", namespace, name)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        annotations = _annotations(fresh)
        if annotations.get(APPROVAL) != decision:
            return
        try:
            fingerprint = lifecycle.fingerprint_of(from_wire(NegotiationSpec, fresh.get("spec") or {}))
        except ValidationError:
            fingerprint = "(unreadable)"
        now = negotiator.clock()
        approver = annotations.get(APPROVER, "")
        approval = lifecycle.Approval(
            decision="approved" if decision == "approved" else "rejected",
            user=approver or "(unknown)",
            groups=tuple(g for g in (annotations.get(APPROVER_GROUPS) or "").split(",") if g),
            # Only the webhook stamps an identity from the request's user info; without it, or when it
            # was bypassed, the annotation is whatever the writer typed.
            verified=webhook and bool(approver),
            time=now,
        )
        decisions = state.decisions.get(key, lifecycle.Decisions())
        record = decisions.find(name)
        policy = None if record is None else state.policy(record.policy)
        step = lifecycle.approve(
            decisions, name, approval, policy=policy, workload=spec.workload, fingerprint=fingerprint, now=now
        )
        await negotiator.carry_out(key, step, workload=spec.workload, now=now)


async def resume(negotiator: Negotiator, *, webhook: bool) -> None:
    """On taking the Lease: carry out the approvals given while this operator did not write (another
    held the Lease, or none did while this one started). Each is re-read and checked as any other."""
    config = negotiator.state.config
    kube = negotiator.kube
    if config.namespaces:
        found = [n for ns in config.namespaces for n in await kube.list_custom("negotiations", ns)]
    else:
        listed = await kube.call(
            "list negotiations", kube.custom.list_cluster_custom_object, GROUP, VERSION, "negotiations"
        )
        found = list(listed.get("items", []))
    for body in found:
        if _annotations(body).get(APPROVAL) in DECISIONS:
            try:
                await act_on_approval(negotiator, body, webhook=webhook)
            except Exception:
                log.warning(
                    "could not carry out the approval of %s", (body.get("metadata") or {}).get("name"), exc_info=True
                )
