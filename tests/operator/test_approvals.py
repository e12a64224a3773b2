"""Who may approve, what is stamped, and how the watch rebuilds each workload's records."""

from __future__ import annotations

from typing import Any

import pytest

from accord.negotiation.rules import close_enough
from accord.operator.approvals import ApprovalRefused, check_approver, stamp, track
from accord.operator.recorder import expired, merge_conditions
from accord.operator.state import OperatorConfig, State


def negotiation(
    name: str = "web-deploy-1",
    *,
    phase: str = "PendingApproval",
    annotations: dict[str, str] | None = None,
    created: str = "2026-01-01T00:00:00Z",
    target: int = 9,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "shop", "annotations": annotations or {}, "creationTimestamp": created},
        "spec": {
            "workload": {"kind": "Deployment", "namespace": "shop", "name": "web"},
            "policy": "shop/default",
            "protocol": "nash",
            "current": {"replicas": 3, "placement": "default"},
            "candidates": 10,
            "outcome": {
                "verdict": "PendingApproval",
                "target": {"replicas": target, "placement": "default"},
                "confidence": 0.9,
                "reason": "big step",
            },
            "decidedAt": "2026-01-01T00:00:00Z",
        },
        "status": {"phase": phase, "expiresAt": "2026-01-01T01:00:00Z"},
    }


@pytest.fixture
def state() -> State:
    s = State(config=OperatorConfig())
    s.policy_bodies["shop/default"] = {
        "spec": {"agents": [{"name": "cost"}], "approval": {"approvers": ["alice"], "approverGroups": ["sre"]}}
    }
    return s


def approve(by_annotations: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    return negotiation(annotations=by_annotations), negotiation()


@pytest.mark.parametrize(
    ("user", "groups", "allowed"),
    [("alice", [], True), ("bob", ["sre"], True), ("mallory", ["dev"], False), ("", [], False)],
)
def test_only_approvers_may_approve(state: State, user: str, groups: list[str], allowed: bool) -> None:
    body, old = approve({"accord.dev/approval": "approved"})
    info = {"username": user, "groups": groups}
    if allowed:
        check_approver(state=state, body=body, old=old, userinfo=info)
    else:
        with pytest.raises(ApprovalRefused, match="is not an approver of policy shop/default"):
            check_approver(state=state, body=body, old=old, userinfo=info)


@pytest.mark.parametrize(
    ("annotations", "old_phase", "message"),
    [
        ({"accord.dev/approval": "yes"}, "PendingApproval", "must be 'approved' or 'rejected'"),
        ({"accord.dev/approval": "approved"}, "Applied", "only a PendingApproval decision"),
        ({"accord.dev/approver": "alice"}, "PendingApproval", "cannot be set by hand"),
    ],
)
def test_malformed_or_forged_approvals_are_refused(
    state: State, annotations: dict[str, str], old_phase: str, message: str
) -> None:
    with pytest.raises(ApprovalRefused, match=message):
        check_approver(
            state=state,
            body=negotiation(annotations=annotations),
            old=negotiation(phase=old_phase),
            userinfo={"username": "alice"},
        )


def test_other_updates_pass_untouched(state: State) -> None:
    check_approver(
        state=state, body=negotiation(annotations={"note": "x"}), old=negotiation(), userinfo={"username": "anyone"}
    )


def test_the_approver_is_stamped_from_the_request_not_the_user() -> None:
    body, old = approve({"accord.dev/approval": "approved", "accord.dev/approver": "someone-else"})
    assert stamp(body, old, {"username": "alice", "groups": ["sre", "dev"]}) == {
        "accord.dev/approver": "alice",
        "accord.dev/approver-groups": "dev,sre",
    }
    assert stamp(negotiation(), negotiation(), {"username": "alice"}) == {}


def test_the_watch_rebuilds_each_workloads_records_after_a_start(state: State) -> None:
    key = "Deployment/shop/web"
    now = 1767225600.0 + 600
    track(state, negotiation("web-deploy-2", phase="Applied", created="2026-01-01T00:05:00Z"), now=now)
    track(state, negotiation("web-deploy-1", created="2026-01-01T00:00:00Z"), now=now)
    decisions = state.decisions[key]
    assert [r.name for r in decisions.records] == ["web-deploy-1", "web-deploy-2"]
    assert decisions.pending is not None
    assert decisions.pending.name == "web-deploy-1"
    assert decisions.pending.expires_at == 1767225600.0 + 3600
    # Records the operator already knows are its own: a late event does not roll their phase back.
    track(state, negotiation("web-deploy-1", phase="Proposed"), now=now)
    assert state.decisions[key].pending is not None
    track(state, negotiation("web-deploy-1"), deleted=True, now=now)
    assert state.decisions[key].pending is None
    assert [r.name for r in state.decisions[key].records] == ["web-deploy-2"]


def test_an_unreadable_record_is_ignored(state: State) -> None:
    assert track(state, {"metadata": {"name": "x"}, "spec": {"policy": 3}}, now=0.0) is None
    assert state.decisions == {}


def test_expiry() -> None:
    assert expired("2026-01-01T00:00:00Z", 1767225600.0)
    assert not expired("2026-01-01T00:00:01Z", 1767225600.0)
    assert not expired(None, 0)


def test_conditions_keep_their_transition_time_while_unchanged() -> None:
    old = [{"type": "Ready", "status": "True", "lastTransitionTime": "then"}]
    same = merge_conditions(old, [{"type": "Ready", "status": "True", "lastTransitionTime": "now", "reason": "r"}])
    flipped = merge_conditions(old, [{"type": "Ready", "status": "False", "lastTransitionTime": "now"}])
    assert same[0]["lastTransitionTime"] == "then"
    assert flipped[0]["lastTransitionTime"] == "now"


@pytest.mark.parametrize(
    ("pending", "new", "stands"),
    [
        ((12, "a"), (12, "a"), True),
        ((12, "a"), (13, "a"), True),
        ((30, "a"), (33, "a"), True),
        ((30, "a"), (34, "a"), False),
        ((12, "a"), (12, "b"), False),
        ((2, "a"), (4, "a"), False),
    ],
)
def test_a_pending_decision_stands_against_small_wobbles(
    pending: tuple[int, str], new: tuple[int, str], stands: bool
) -> None:
    assert close_enough(pending, new) is stands


def test_a_record_beside_another_namespaces_workload_is_not_taken_for_a_decision(state: State) -> None:
    """Accord writes a workload's records in the workload's namespace: one elsewhere is someone else's."""
    forged = negotiation("web-deploy-9")
    forged["metadata"]["namespace"] = "tenant"
    assert track(state, forged, now=0.0) is None
    assert state.decisions == {}


def test_a_rollout_followed_before_a_start_is_followed_after_it(state: State) -> None:
    body = negotiation("web-deploy-3", phase="RollingOut")
    body["status"] = {"phase": "RollingOut", "appliedAt": "2026-01-01T00:00:05Z", "rolloutGeneration": 7}
    track(state, body, now=1767225600.0 + 60)
    rolling = state.decisions["Deployment/shop/web"].rolling
    assert rolling is not None
    assert (rolling.name, rolling.generation, rolling.applied_at) == ("web-deploy-3", 7, 1767225605.0)
