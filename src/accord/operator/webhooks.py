"""The approval admission webhooks (operator layer), registered only when the webhook is served.

Importing this module registers them with kopf; `accord run --webhook` does so. The validating hook
refuses any edit of a Negotiation's spec and any approval by someone who is not an approver; the
mutating hook stamps who approved from the request's user info. Without the webhook, approvals are
refused unless the policy allows unverified ones (see the README).
"""

from __future__ import annotations

from typing import Any

import kopf

from accord.models.common import GROUP, VERSION
from accord.operator import approvals


# Persistent, failing closed: the registration outlives the operator's process, so while no operator
# answers, nobody can approve (or edit) a Negotiation; no approval slips through a restart or a rollout.
@kopf.on.mutate(GROUP, VERSION, "negotiations", operations=["UPDATE"], id="stamp-approver", persistent=True)
def stamp_approver(
    body: kopf.Body, userinfo: kopf.UserInfo, patch: kopf.Patch, old: kopf.Body | None = None, **_: Any
) -> None:
    for key, value in approvals.stamp(body, old, userinfo).items():
        patch.setdefault("metadata", {}).setdefault("annotations", {})[key] = value


@kopf.on.validate(GROUP, VERSION, "negotiations", operations=["UPDATE"], id="check-approver", persistent=True)
def validate_approver(
    body: kopf.Body, userinfo: kopf.UserInfo, memo: Any, old: kopf.Body | None = None, **_: Any
) -> None:
    try:
        approvals.check_update(state=memo["state"], body=body, old=old, userinfo=userinfo)
    except approvals.ApprovalRefused as exc:
        raise kopf.AdmissionError(str(exc), code=exc.code) from exc
