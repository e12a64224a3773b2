"""Pydantic models of Accord's custom resources: the single source of the CRD schemas (lowest layer)."""

from accord.models.agent import Agent, AgentSpec, AgentStatus, AgentType
from accord.models.common import API_VERSION, GROUP, VERSION, Condition, LabelSelector
from accord.models.negotiation import Negotiation, NegotiationSpec, NegotiationStatus, Phase, Verdict
from accord.models.policy import (
    ClusterNegotiationPolicy,
    ClusterNegotiationPolicySpec,
    NegotiationPolicy,
    NegotiationPolicySpec,
    NegotiationPolicyStatus,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "Agent",
    "AgentSpec",
    "AgentStatus",
    "AgentType",
    "ClusterNegotiationPolicy",
    "ClusterNegotiationPolicySpec",
    "Condition",
    "LabelSelector",
    "Negotiation",
    "NegotiationPolicy",
    "NegotiationPolicySpec",
    "NegotiationPolicyStatus",
    "NegotiationSpec",
    "NegotiationStatus",
    "Phase",
    "Verdict",
]
