"""The Negotiation custom resource: the record of one decision for one workload (models layer)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import ConfigDict, Field

from accord.models.common import Condition, Model


class Phase(StrEnum):
    PROPOSED = "Proposed"
    PENDING_APPROVAL = "PendingApproval"
    APPROVED = "Approved"
    ROLLING_OUT = "RollingOut"
    APPLIED = "Applied"
    REJECTED = "Rejected"
    EXPIRED = "Expired"
    SUPERSEDED = "Superseded"
    IMPASSE = "Impasse"
    FAILED = "Failed"
    HELD = "Held"


class WorkloadRef(Model):
    kind: Literal["Deployment", "StatefulSet"] = Field(description="Deployment or StatefulSet.")
    namespace: str = Field(description="Namespace of the workload.")
    name: str = Field(description="Name of the workload.")
    uid: str | None = Field(default=None, description="UID, so a recreated workload is not confused with it.")


class CandidateRecord(Model):
    replicas: int = Field(ge=0, description="Replica count.")
    placement: str = Field(description="Pool name.")


class EvidenceRecord(Model):
    name: str = Field(description="What the value is, e.g. demand or security_signal.")
    source: str = Field(description="Where it came from: prometheus, nodes, workload, policy, clock, external.")
    query: str = Field(default="", description="The query or object that produced it.")
    value: float | None = Field(default=None, description="Latest value, if numeric.")
    samples: int = Field(default=0, ge=0, description="How many samples it rests on.")
    timestamp: datetime | None = Field(default=None, description="Time of the newest sample.")
    age_seconds: float | None = Field(default=None, description="Age of the newest sample at decision time.")


class UtilityRecord(Model):
    replicas: int
    placement: str
    utility: float | None = Field(default=None, ge=0, le=1, description="Utility in [0, 1]; absent when vetoed.")
    veto: str | None = Field(default=None, description="Reason of a veto.")


class ProposalRecord(Model):
    agent: str = Field(description="Agent name.")
    type: str = Field(description="Agent type.")
    weight: float = Field(ge=0, le=1000, description="Effective weight: policy or agent weight times trust.")
    trust: float = Field(ge=0, le=1, description="Trust at the time of the decision.")
    ideal: CandidateRecord | None = Field(default=None, description="The candidate the agent liked best.")
    confidence: float = Field(ge=0, le=1, description="How sure the agent was.")
    rationale: str = Field(description="Why, in words.")
    dropped: str | None = Field(default=None, description="Why the proposal was left out of the agreement.")
    utilities: list[UtilityRecord] = Field(default_factory=list, description="Utility or veto per candidate.")
    evidence: list[EvidenceRecord] = Field(default_factory=list, description="The evidence it used.")


class OfferRecord(Model):
    agent: str
    replicas: int
    placement: str
    utility: float = Field(description="The agent's own utility for its offer.")


class RoundRecord(Model):
    round: int = Field(ge=0)
    offers: list[OfferRecord] = Field(default_factory=list)
    conceded: str | None = Field(default=None, description="The agent that conceded after this round.")


class ConcessionRecord(Model):
    agent: str
    ideal_utility: float = Field(description="Utility of the agent's ideal.")
    agreed_utility: float | None = Field(default=None, description="Utility of the agreed candidate.")
    concession: float | None = Field(default=None, description="ideal - agreed: what the agent gave up.")


class GateRecord(Model):
    rule: str = Field(description="The rule, e.g. minConfidence, freezeWindow, stepPercent, stabilization.")
    effect: Literal["hold", "cap", "approval"] = Field(
        description="hold: nothing applied; cap: target limited; approval: a person must approve."
    )
    message: str = Field(description="What the rule found.")


class Verdict(StrEnum):
    APPLY = "Apply"
    NO_CHANGE = "NoChange"
    HOLD = "Hold"
    PENDING_APPROVAL = "PendingApproval"
    IMPASSE = "Impasse"


class OutcomeRecord(Model):
    verdict: Verdict = Field(description="Apply, NoChange, Hold, PendingApproval or Impasse.")
    target: CandidateRecord = Field(description="What the workload should become.")
    agreed: CandidateRecord | None = Field(default=None, description="What the protocol agreed before the rules.")
    confidence: float = Field(ge=0, le=1, description="Trust-weighted confidence of the agents.")
    reason: str = Field(description="Why, in words.")


class NegotiationSpec(Model):
    """The decision, as the engine made it. Written once; never edited."""

    # API servers with CRD validation rules (1.25 and later) refuse an edit of the spec themselves; on
    # older ones the admission webhook does (`approvals.check_update`), and the operator's fingerprint
    # of the decision refuses to act on an edited record either way.
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self == oldSelf", "message": "a Negotiation's spec is the decision as made and is immutable"}
            ]
        }
    )

    workload: WorkloadRef
    policy: str = Field(
        description="The policy that made the decision: namespace/name of a NegotiationPolicy, or the name "
        "alone (no slash) of a ClusterNegotiationPolicy."
    )
    protocol: str = Field(description="The protocol that produced the agreement.")
    mode: str = Field(default="enforce", description="enforce or audit.")
    current: CandidateRecord = Field(description="The workload before the decision.")
    candidates: int = Field(ge=0, description="How many candidates were considered.")
    proposals: list[ProposalRecord] = Field(default_factory=list)
    rounds: list[RoundRecord] = Field(default_factory=list, description="Rounds of the concession protocol.")
    concessions: list[ConcessionRecord] = Field(default_factory=list)
    gates: list[GateRecord] = Field(default_factory=list, description="Rules that capped, held or gated it.")
    outcome: OutcomeRecord
    decided_at: datetime = Field(description="When the engine decided.")


class ApprovalRecord(Model):
    decision: Literal["approved", "rejected"]
    user: str = Field(description="Who decided, from the API request's user info.")
    groups: list[str] = Field(default_factory=list)
    time: datetime | None = None


class NegotiationStatus(Model):
    phase: Phase = Field(default=Phase.PROPOSED, description="Where the decision stands.")
    message: str = Field(default="", description="What happened last.")
    approval: ApprovalRecord | None = Field(default=None, description="The person's decision, if any.")
    expires_at: datetime | None = Field(default=None, description="When a pending decision expires.")
    applied_at: datetime | None = Field(default=None, description="When the executor applied it.")
    superseded_by: str | None = Field(default=None, description="The Negotiation that replaced this one.")
    rollout_generation: int | None = Field(
        default=None, ge=0, description="The workload's generation the placement change wrote; its rollout is followed."
    )
    fingerprint: str | None = Field(
        default=None, description="The operator's fingerprint of the decision; an edited record is never acted on."
    )
    conditions: list[Condition] = Field(default_factory=list)


class Negotiation(Model):
    """Negotiation: one decision, who proposed what and why, and what was agreed."""

    api_version: Literal["accord.dev/v1alpha1"] = "accord.dev/v1alpha1"
    kind: Literal["Negotiation"] = "Negotiation"
    metadata: dict[str, object] = Field(default_factory=dict)
    spec: NegotiationSpec
    status: NegotiationStatus | None = None
