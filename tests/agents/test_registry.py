"""The registry of built-in agents: complete, ordered, one class per type, and buildable from an Agent spec."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import pytest

import accord.agents
from accord.agents.base import Agent
from accord.agents.compliance import ComplianceAgent
from accord.agents.cost import CostAgent
from accord.agents.external import ExternalAgent
from accord.agents.performance import PerformanceAgent
from accord.agents.registry import BUILTIN, build_agent
from accord.agents.security import SecurityAgent
from accord.models.agent import AgentSpec, AgentType
from accord.models.settings import (
    ComplianceSettings,
    CostSettings,
    ExternalSettings,
    PerformanceSettings,
    SecuritySettings,
)

EXPECTED: dict[AgentType, tuple[type[Any], type[Any]]] = {
    AgentType.COST: (CostAgent, CostSettings),
    AgentType.PERFORMANCE: (PerformanceAgent, PerformanceSettings),
    AgentType.SECURITY: (SecurityAgent, SecuritySettings),
    AgentType.COMPLIANCE: (ComplianceAgent, ComplianceSettings),
    AgentType.EXTERNAL: (ExternalAgent, ExternalSettings),
}

SPECS: dict[AgentType, dict[str, Any]] = {
    AgentType.COST: {"type": "cost", "cost": {"budgetPerHour": 5}},
    AgentType.PERFORMANCE: {"type": "performance", "performance": {"targetUtilisation": 0.6}},
    AgentType.SECURITY: {"type": "security", "security": {"minZonesDuringSignal": 3}},
    AgentType.COMPLIANCE: {"type": "compliance", "compliance": {"minReplicas": 2}},
    AgentType.EXTERNAL: {
        "type": "external",
        "external": {"url": "https://agents.example.com/negotiate", "secretRef": {"name": "external-agent-key"}},
    },
}


def all_agent_classes() -> set[type[Any]]:
    """Every concrete Agent subclass defined in the accord.agents package."""
    for module in pkgutil.iter_modules(accord.agents.__path__):
        importlib.import_module(f"accord.agents.{module.name}")
    found: set[type[Any]] = set()
    pending: list[type[Any]] = [Agent]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            pending.append(sub)
            if sub.__module__.startswith("accord.agents.") and not getattr(sub, "__abstractmethods__", None):
                found.add(sub)
    return found


def test_every_agent_type_has_exactly_one_builtin() -> None:
    assert set(BUILTIN) == set(AgentType)
    assert len(set(BUILTIN.values())) == len(AgentType)


@pytest.mark.parametrize("agent_type", list(AgentType), ids=[t.value for t in AgentType])
def test_builtin_class_declares_its_own_type(agent_type: AgentType) -> None:
    cls = BUILTIN[agent_type]
    assert cls.type is agent_type
    assert cls is EXPECTED[agent_type][0]


def test_every_agent_class_in_the_package_is_registered() -> None:
    assert all_agent_classes() == set(BUILTIN.values())


def test_registry_is_in_sorted_order() -> None:
    assert [t.value for t in BUILTIN] == sorted(t.value for t in AgentType)


@pytest.mark.parametrize("agent_type", list(AgentType), ids=[t.value for t in AgentType])
def test_build_agent_from_a_spec(agent_type: AgentType) -> None:
    spec = AgentSpec.model_validate(SPECS[agent_type])
    built = build_agent("my-agent", spec, secret=b"key")
    cls, settings_cls = EXPECTED[agent_type]
    assert type(built) is cls
    assert built.name == "my-agent"
    assert built.type is agent_type
    assert isinstance(built.settings, settings_cls)
    assert built.settings == spec.settings()


@pytest.mark.parametrize(
    ("agent_type", "field", "value"),
    [
        (AgentType.COST, "budget_per_hour", 5.0),
        (AgentType.PERFORMANCE, "target_utilisation", 0.6),
        (AgentType.SECURITY, "min_zones_during_signal", 3),
        (AgentType.COMPLIANCE, "min_replicas", 2),
    ],
    ids=["cost", "performance", "security", "compliance"],
)
def test_build_agent_keeps_the_settings_the_user_wrote(agent_type: AgentType, field: str, value: object) -> None:
    built = build_agent("a", AgentSpec.model_validate(SPECS[agent_type]))
    assert getattr(built.settings, field) == value


@pytest.mark.parametrize(
    "agent_type", [t for t in AgentType if t is not AgentType.EXTERNAL], ids=lambda t: str(t.value)
)
def test_build_agent_without_a_settings_block_uses_defaults(agent_type: AgentType) -> None:
    built = build_agent("a", AgentSpec(type=agent_type))
    assert built.settings == EXPECTED[agent_type][1]()


def test_external_agent_gets_the_secret() -> None:
    spec = AgentSpec.model_validate(SPECS[AgentType.EXTERNAL])
    built = build_agent("oracle", spec, secret=b"key")
    assert isinstance(built, ExternalAgent)
    assert spec.external is not None
    assert built.signature(b"{}") == ExternalAgent("x", spec.external, secret=b"key").signature(b"{}")
    assert built.signature(b"{}") != ExternalAgent("x", spec.external, secret=b"other").signature(b"{}")
