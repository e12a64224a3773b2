"""The NegotiationPolicy custom resource: who negotiates, how, and under which rules (models layer)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from accord.models.common import (
    Condition,
    Fraction,
    LabelSelector,
    Model,
    Name,
    ReplicaCount,
    Toleration,
)
from accord.models.schedule import FreezeWindow


class Protocol(StrEnum):
    NASH = "nash"
    LEXICOGRAPHIC = "lexicographic"
    WEIGHTED = "weighted"
    CONCESSION = "concession"


class Mode(StrEnum):
    ENFORCE = "enforce"
    AUDIT = "audit"


class WorkloadKind(StrEnum):
    DEPLOYMENT = "Deployment"
    STATEFULSET = "StatefulSet"


class MissingMetricsAction(StrEnum):
    HOLD = "hold"
    FALLBACK = "fallback"
    CURRENT_IF_HIGHER = "currentIfHigher"
    CURRENT_IF_LOWER = "currentIfLower"


class FreezeAction(StrEnum):
    BLOCK = "block"
    REQUIRE_APPROVAL = "requireApproval"


class Participant(Model):
    """An Agent (in the policy's namespace) taking part in this policy's negotiations."""

    name: Name = Field(description="Name of an Agent in the policy's namespace.")
    weight: float | None = Field(
        default=None, ge=0.0, le=1000.0, description="Overrides the Agent's own weight for this policy."
    )
    tier: int = Field(
        default=0, ge=0, le=100, description="Precedence tier for the lexicographic protocol; 0 comes first."
    )


class Bounds(Model):
    """Replica bounds and how far one decision may move."""

    min_replicas: ReplicaCount = Field(default=1, description="Fewest replicas any decision may set.")
    max_replicas: ReplicaCount = Field(default=100, description="Most replicas any decision may set.")
    max_step_up: int = Field(default=10, ge=1, le=100_000, description="Most replicas added by one decision.")
    max_step_down: int = Field(default=5, ge=1, le=100_000, description="Most replicas removed by one decision.")
    scale_up_stabilization_seconds: int = Field(
        default=0, ge=0, le=86400, description="Scale up only to the lowest recommendation of this window."
    )
    scale_down_stabilization_seconds: int = Field(
        default=300,
        ge=0,
        le=86400,
        description="Scale down only to the highest recommendation of this window.",
    )
    scale_down_tolerance: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="A scale-down of at most this fraction of the current replicas is not made (the HPA's "
        "tolerance, 0.1 there): small dips do not churn the workload. Scale-ups are not held back by it "
        "(see scaleUpTolerance).",
    )
    scale_up_tolerance: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="A scale-up of at most this fraction of the current replicas is not made (the HPA's "
        "tolerance, 0.1 there, on the way up): a demand hovering at the target does not churn the workload. "
        "Never below the observed floor: what the demand seen now needs at the SLO utilisation is always asked "
        "for. 0 (the default): off.",
    )
    scale_down_dwell_seconds: int = Field(
        default=0,
        ge=0,
        le=3600,
        description="A minimum dwell time: no scale-down until this many seconds after the workload's last "
        "applied change, so that a count just reached is kept long enough to tell a lasting fall from a dip. "
        "Scale-ups are never held back. 0 (the default): off.",
    )
    scale_up_headroom: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="A scale-up goes this fraction above the agreed count (rounded up, within the bounds and "
        "step limit), so that a demand still rising needs no further change a minute later; pair it with "
        "scaleDownTolerance or scaleDownDwellSeconds so that the extra pods are not removed at once. "
        "0 (the default): off.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas ({self.min_replicas}) must not exceed maxReplicas ({self.max_replicas})")
        return self


class Placement(Model):
    """A named pool a workload may run on, with its price."""

    name: Name = Field(description="Pool name, shown in decisions.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="nodeSelector set on the pod template.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Tolerations set on the pod template.")
    affinity: dict[str, Any] | None = Field(
        default=None,
        description="Pod affinity set on the pod template (core/v1 Affinity).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    price_per_pod_hour: float | None = Field(
        default=None,
        ge=0,
        le=1e6,
        description="Price of one pod-hour on this pool; the cost agent's default if unset.",
    )
    capacity_type: Literal["on-demand", "spot"] = Field(default="on-demand", description="on-demand or spot.")


class MissingMetrics(Model):
    """What to do when the evidence a decision needs is missing (like KEDA's fallback)."""

    action: MissingMetricsAction = Field(
        default=MissingMetricsAction.HOLD,
        description="hold (change nothing), fallback (go to fallbackReplicas), currentIfHigher or currentIfLower.",
    )
    fallback_replicas: ReplicaCount | None = Field(
        default=None, description="Replicas for fallback, currentIfHigher and currentIfLower."
    )

    @model_validator(mode="after")
    def _needs_count(self) -> MissingMetrics:
        if self.action is not MissingMetricsAction.HOLD and self.fallback_replicas is None:
            raise ValueError(f"fallbackReplicas is required when action is {self.action.value!r}")
        return self


class ApprovalConditions(Model):
    """Outcomes that wait for a person. Unset conditions never require approval."""

    step_percent_above: float | None = Field(
        default=None, ge=0, le=100_000, description="A change larger than this % of the current replicas."
    )
    step_replicas_above: int | None = Field(
        default=None, ge=0, le=100_000, description="A change of more than this many replicas."
    )
    placement_change: bool = Field(default=True, description="Any change of placement.")
    cost_increase_per_hour_above: float | None = Field(
        default=None, ge=0, le=1e9, description="A rise in spend per hour above this amount."
    )
    disagreement_above: Fraction | None = Field(
        default=None, description="Some agent concedes more than this much utility from its ideal."
    )
    confidence_below: Fraction | None = Field(
        default=None, description="Overall confidence below this (but above minConfidence)."
    )


class Budget(Model):
    """Hard limits on spend and on how often a workload may be changed."""

    max_cost_per_hour: float | None = Field(
        default=None, ge=0, le=1e9, description="Candidates above this spend per hour are not considered."
    )
    max_changes_per_hour: int | None = Field(
        default=None, ge=0, le=3600, description="Changes applied per workload per hour; more are held."
    )


class PolicyFreezeWindow(FreezeWindow):
    action: FreezeAction = Field(
        default=FreezeAction.BLOCK,
        description="block holds every change; requireApproval sends it to a person.",
    )


class CompetingWriter(Model):
    """What Accord does when something else keeps resetting what it applied (a GitOps controller with
    self-heal, a script, a person): it stops changing the workload instead of fighting every round."""

    max_overwrites: int = Field(
        default=3,
        ge=0,
        le=1000,
        description="Changes Accord applied that others overwrote within the window before Accord backs off: "
        "a decision that would change the workload again is held (CompetingWriter Event, WriterConflict "
        "condition) until older overwrites leave the window. 0: never backs off.",
    )
    window_seconds: int = Field(
        default=3600,
        ge=60,
        le=3600,
        description="The window overwrites are counted in (at most an hour: the applied records of the last "
        "hour are kept, so the count survives a restart).",
    )


class Rules(Model):
    min_confidence: Fraction = Field(default=0.5, description="Below this overall confidence nothing is applied.")
    require_approval: ApprovalConditions = Field(
        default_factory=ApprovalConditions, description="Outcomes that need a person's approval."
    )
    freeze_windows: list[PolicyFreezeWindow] = Field(default_factory=list, description="Change-freeze windows.")
    budget: Budget = Field(default_factory=Budget, description="Spend and change budgets.")
    missing_metrics: MissingMetrics = Field(
        default_factory=MissingMetrics, description="What to do when metrics are missing."
    )
    competing_writer: CompetingWriter = Field(
        default_factory=CompetingWriter, description="Backing off when others keep resetting what Accord applied."
    )


class Approval(Model):
    expiry_seconds: int = Field(default=3600, ge=10, le=30 * 86400, description="Pending decisions expire after this.")
    approvers: list[str] = Field(default_factory=list, description="Users who may approve or reject.")
    approver_groups: list[str] = Field(default_factory=list, description="Groups whose members may approve.")
    allow_unverified: bool = Field(
        default=False,
        description="Accept approvals that carry no identity from the admission webhook (recorded as unverified). "
        "Off by default: without the webhook, approvals are refused.",
    )


class Rollout(Model):
    """How Accord follows the rollout a placement change starts."""

    follow: bool = Field(
        default=True,
        description="A change that rolls the pod template is Applied only once the rollout has completed "
        "(RollingOut until then); off: Applied as soon as it is written.",
    )
    rollback: bool = Field(
        default=True, description="Put the workload back where it was when its rollout cannot complete."
    )
    unschedulable_seconds: int = Field(
        default=120,
        ge=0,
        le=86400,
        description="A rollout whose pods the scheduler could not place for this long has failed "
        "(as has one whose Deployment reports ProgressDeadlineExceeded).",
    )


class NegotiationPolicySpec(Model):
    """Which workloads are negotiated, by whom, with which protocol and under which rules."""

    selector: LabelSelector = Field(default_factory=LabelSelector, description="Workloads whose labels match.")
    namespaces: list[str] = Field(
        default_factory=list,
        max_length=256,
        description="Namespaces to select workloads in. A NegotiationPolicy reaches only its own namespace: "
        "leave this empty or name that namespace; naming another one, or '*', makes the policy Invalid "
        "(reaching several namespaces takes a ClusterNegotiationPolicy).",
    )
    kinds: list[WorkloadKind] = Field(
        default_factory=lambda: [WorkloadKind.DEPLOYMENT, WorkloadKind.STATEFULSET],
        min_length=1,
        description="Workload kinds: Deployment, StatefulSet.",
    )
    agents: list[Participant] = Field(min_length=1, max_length=32, description="Agents taking part.")
    protocol: Protocol = Field(
        default=Protocol.NASH, description="nash (default), lexicographic, weighted or concession."
    )
    lexicographic_tolerance: Fraction = Field(
        default=0.05,
        description="Utility a lower tier may cost a higher one under the lexicographic protocol.",
    )
    bounds: Bounds = Field(default_factory=Bounds, description="Replica bounds, step limits, stabilization.")
    placements: list[Placement] = Field(default_factory=list, description="Pools the workloads may be placed on.")
    rules: Rules = Field(default_factory=Rules, description="Confidence, approval, freeze, budget, missing metrics.")
    coordinate_autoscalers: bool = Field(
        default=False,
        description="When an HPA manages a workload's replicas, set its minReplicas instead of reporting a conflict.",
    )
    mode: Mode = Field(default=Mode.ENFORCE, description="enforce, or audit: negotiate and record, never patch.")
    interval_seconds: int = Field(default=30, ge=5, le=86400, description="How often each workload is renegotiated.")
    approval: Approval = Field(default_factory=Approval, description="Expiry and approvers of pending decisions.")
    history_limit: int = Field(default=10, ge=1, le=1000, description="Negotiations kept per workload.")
    rollout: Rollout = Field(default_factory=Rollout, description="Following, and rolling back, placement rollouts.")

    @field_validator("agents")
    @classmethod
    def _unique_agents(cls, value: list[Participant]) -> list[Participant]:
        seen: set[str] = set()
        for participant in value:
            if participant.name in seen:
                raise ValueError(f"agent {participant.name!r} is listed twice")
            seen.add(participant.name)
        return value

    @field_validator("placements")
    @classmethod
    def _unique_placements(cls, value: list[Placement]) -> list[Placement]:
        names = [p.name for p in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"placement names must be unique; repeated: {', '.join(duplicates)}")
        return value


class WorkloadSummary(Model):
    kind: str
    namespace: str
    name: str
    phase: str | None = Field(default=None, description="Phase of the latest Negotiation.")
    replicas: int | None = Field(default=None, description="Current replicas.")


class NegotiationPolicyStatus(Model):
    workloads: int = Field(default=0, ge=0, description="Workloads currently selected.")
    pending_approvals: int = Field(default=0, ge=0, description="Negotiations waiting for a person.")
    last_round_time: datetime | None = Field(default=None, description="When the last round finished.")
    observed_generation: int | None = Field(default=None, description="Generation of the spec last processed.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Invalid, MetricsMissing.")


class NegotiationPolicy(Model):
    """NegotiationPolicy: the rules under which agents negotiate for selected workloads."""

    api_version: Literal["accord.dev/v1alpha1"] = "accord.dev/v1alpha1"
    kind: Literal["NegotiationPolicy"] = "NegotiationPolicy"
    metadata: dict[str, object] = Field(default_factory=dict)
    spec: NegotiationPolicySpec
    status: NegotiationPolicyStatus | None = None


class ClusterNegotiationPolicySpec(NegotiationPolicySpec):
    """A NegotiationPolicy that reaches several namespaces: cluster-scoped, made by cluster administrators.

    It negotiates a workload only when the workload or its namespace opts in (`accord.dev/negotiate=true`),
    and never in a protected namespace.
    """

    namespaces: list[str] = Field(
        default_factory=list,
        max_length=256,
        description="Namespaces to select workloads in; empty or '*' means every namespace the namespaceSelector "
        "admits. Only opted-in workloads are negotiated, and protected namespaces never (naming one makes "
        "the policy Invalid).",
    )
    namespace_selector: LabelSelector | None = Field(
        default=None,
        description="Labels the workload's Namespace must have (together with namespaces, when both are set).",
    )
    agent_namespace: Name = Field(
        description="Namespace of the Agents listed in agents (and of their Secrets). Choose one only cluster "
        "administrators write, such as the operator's own: whoever writes these Agents steers every "
        "decision of this policy."
    )


class ClusterNegotiationPolicy(Model):
    """ClusterNegotiationPolicy: a NegotiationPolicy over opted-in workloads of several namespaces."""

    api_version: Literal["accord.dev/v1alpha1"] = "accord.dev/v1alpha1"
    kind: Literal["ClusterNegotiationPolicy"] = "ClusterNegotiationPolicy"
    metadata: dict[str, object] = Field(default_factory=dict)
    spec: ClusterNegotiationPolicySpec
    status: NegotiationPolicyStatus | None = None
