"""Seats the agents a policy names (negotiation layer, pure).

Resolves a policy's participants against the Agent resources the caller found, applies weight
overrides and learned trust, and reports participants that do not exist, so the caller can mark
the policy invalid with a message that names them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from accord.agents.base import Agent
from accord.agents.registry import build_agent
from accord.models.agent import AgentSpec
from accord.models.common import Model
from accord.models.policy import NegotiationPolicySpec
from accord.negotiation.engine import Seat


@dataclass(frozen=True, slots=True)
class Table:
    seated: tuple[tuple[Seat, Agent[Model]], ...]
    missing: tuple[str, ...]


def missing_agents(policy: NegotiationPolicySpec, known: Mapping[str, AgentSpec]) -> list[str]:
    return [p.name for p in policy.agents if p.name not in known]


def seat_agents(
    policy: NegotiationPolicySpec,
    agents: Mapping[str, AgentSpec],
    *,
    trust: Mapping[str, float] | None = None,
    secrets: Mapping[str, bytes] | None = None,
) -> Table:
    trust = trust or {}
    secrets = secrets or {}
    seated = []
    for participant in policy.agents:
        spec = agents.get(participant.name)
        if spec is None:
            continue
        seat = Seat(
            name=participant.name,
            weight=spec.weight if participant.weight is None else participant.weight,
            tier=participant.tier,
            may_veto=spec.veto,
            trust=trust.get(participant.name, 1.0),
        )
        seated.append((seat, build_agent(participant.name, spec, secret=secrets.get(participant.name, b""))))
    return Table(tuple(seated), tuple(missing_agents(policy, agents)))
