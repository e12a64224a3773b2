"""The Agent custom resource: one negotiator and its typed settings (models layer)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from accord.models.common import Condition, Model
from accord.models.settings import (
    ComplianceSettings,
    CostSettings,
    ExternalSettings,
    PerformanceSettings,
    SecuritySettings,
)


class AgentType(StrEnum):
    COST = "cost"
    PERFORMANCE = "performance"
    SECURITY = "security"
    COMPLIANCE = "compliance"
    EXTERNAL = "external"


SETTINGS_FIELD: dict[AgentType, str] = {t: t.value for t in AgentType}


class AgentSpec(Model):
    """What an agent is and how much say it has. Set only the settings block of its type."""

    type: AgentType = Field(description="cost, performance, security, compliance or external.")
    weight: float = Field(default=1.0, ge=0.0, le=1000.0, description="Say in the negotiation, before trust.")
    veto: bool = Field(
        default=False,
        description="Whether the agent may veto candidates; otherwise a veto counts as utility 0.",
    )
    performance: PerformanceSettings | None = Field(default=None, description="Settings of a performance agent.")
    cost: CostSettings | None = Field(default=None, description="Settings of a cost agent.")
    security: SecuritySettings | None = Field(default=None, description="Settings of a security agent.")
    compliance: ComplianceSettings | None = Field(default=None, description="Settings of a compliance agent.")
    external: ExternalSettings | None = Field(default=None, description="Settings of an external agent.")

    @model_validator(mode="after")
    def _one_settings_block(self) -> AgentSpec:
        for other in AgentType:
            if other is not self.type and getattr(self, SETTINGS_FIELD[other]) is not None:
                raise ValueError(
                    f"spec.{SETTINGS_FIELD[other]} is set but spec.type is {self.type.value!r}: "
                    f"only spec.{SETTINGS_FIELD[self.type]} may be set"
                )
        if self.type is AgentType.EXTERNAL and self.external is None:
            raise ValueError("spec.external (url and secretRef) is required for an external agent")
        return self

    def settings(
        self,
    ) -> PerformanceSettings | CostSettings | SecuritySettings | ComplianceSettings | ExternalSettings:
        """The settings of this agent's type, defaults filled in."""
        block = getattr(self, SETTINGS_FIELD[self.type])
        if block is not None:
            return block  # type: ignore[no-any-return]
        defaults: dict[AgentType, type[Model]] = {
            AgentType.PERFORMANCE: PerformanceSettings,
            AgentType.COST: CostSettings,
            AgentType.SECURITY: SecuritySettings,
            AgentType.COMPLIANCE: ComplianceSettings,
        }
        return defaults[self.type]()  # type: ignore[return-value]


class LastProposal(Model):
    workload: str = Field(description="namespace/name of the workload.")
    negotiation: str | None = Field(default=None, description="The Negotiation that recorded it.")
    ideal_replicas: int | None = Field(default=None, description="Replicas the agent wanted.")
    ideal_placement: str | None = Field(default=None, description="Placement the agent wanted.")
    confidence: float = Field(ge=0, le=1, description="The agent's confidence.")
    time: datetime | None = Field(default=None, description="When it was made.")


class AgentStatus(Model):
    trust: float = Field(default=1.0, ge=0, le=1, description="Trust learned from the agent's track record.")
    trust_samples: int = Field(default=0, ge=0, description="Predictions checked against observations so far.")
    mean_error: float | None = Field(default=None, ge=0, description="Smoothed relative prediction error.")
    last_proposal: LastProposal | None = Field(default=None, description="The agent's most recent proposal.")
    observed_generation: int | None = Field(default=None, description="Generation of the spec last processed.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Invalid.")


class Agent(Model):
    """Agent: a negotiator with its own objective and evidence."""

    api_version: Literal["accord.dev/v1alpha1"] = "accord.dev/v1alpha1"
    kind: Literal["Agent"] = "Agent"
    metadata: dict[str, object] = Field(default_factory=dict)
    spec: AgentSpec
    status: AgentStatus | None = None
