"""The built-in agents, in one ordered mapping (agents layer).

Adding an agent: write its module with a settings model and an `Agent` subclass, add one line
here, add its settings block to `AgentSpec`, and its tests.
"""

from __future__ import annotations

from accord.agents.base import Agent
from accord.agents.compliance import ComplianceAgent
from accord.agents.cost import CostAgent
from accord.agents.external import ExternalAgent
from accord.agents.performance import PerformanceAgent
from accord.agents.security import SecurityAgent
from accord.models.agent import AgentSpec, AgentType
from accord.models.common import Model

BUILTIN: dict[AgentType, type[Agent[Model]]] = {
    AgentType.COMPLIANCE: ComplianceAgent,  # type: ignore[dict-item]
    AgentType.COST: CostAgent,  # type: ignore[dict-item]
    AgentType.EXTERNAL: ExternalAgent,  # type: ignore[dict-item]
    AgentType.PERFORMANCE: PerformanceAgent,  # type: ignore[dict-item]
    AgentType.SECURITY: SecurityAgent,  # type: ignore[dict-item]
}


def build_agent(name: str, spec: AgentSpec, *, secret: bytes = b"") -> Agent[Model]:
    """An agent instance for an Agent resource's spec. `secret` is the external agent's HMAC key."""
    settings = spec.settings()
    if spec.type is AgentType.EXTERNAL:
        return ExternalAgent(name, settings, secret=secret)  # type: ignore[arg-type,return-value]
    return BUILTIN[spec.type](name, settings)
