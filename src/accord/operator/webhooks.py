"""The approval admission webhooks (operator layer), registered only when the webhook is served.

Importing this module registers them with kopf; `accord run --webhook` does so. Without it, who
may approve is left to RBAC on Negotiations (see the README).
"""

from __future__ import annotations

from typing import Any

import kopf

from accord.models.common import GROUP, VERSION
from accord.operator import approvals


@kopf.on.mutate(GROUP, VERSION, "negotiations", operations=["UPDATE"], id="stamp-approver")
def stamp_approver(
    body: kopf.Body, userinfo: kopf.UserInfo, patch: kopf.Patch, old: kopf.Body | None = None, **_: Any
) -> None:
    for key, value in approvals.stamp(body, old, userinfo).items():
        patch.setdefault("metadata", {}).setdefault("annotations", {})[key] = value


@kopf.on.validate(GROUP, VERSION, "negotiations", operations=["UPDATE"], id="check-approver")
def validate_approver(
    body: kopf.Body, userinfo: kopf.UserInfo, memo: Any, old: kopf.Body | None = None, **_: Any
) -> None:
    try:
        approvals.check_update(state=memo["state"], body=body, old=old, userinfo=userinfo)
    except approvals.ApprovalRefused as exc:
        raise kopf.AdmissionError(str(exc), code=exc.code) from exc
