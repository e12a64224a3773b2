"""Factories with overrides for the pure core's tests: small defaults, change what the test is about."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from accord.agents.base import Candidate, Pool, Situation
from accord.metrics.evidence import Evidence, Source
from accord.models.agent import AgentSpec
from accord.models.policy import NegotiationPolicySpec

NOW = 1_750_000_000.0  # a fixed moment: 2025-06-15 15:06:40 UTC, a Sunday


def pools(**overrides: Pool) -> dict[str, Pool]:
    base = {
        "standard": Pool(
            name="standard",
            price_per_pod_hour=0.10,
            node_labels={"accord.dev/hardened": "true", "topology.kubernetes.io/region": "eu-west-1"},
            regions=frozenset({"eu-west-1"}),
            zones=frozenset({"eu-west-1a", "eu-west-1b"}),
            nodes=3,
        ),
        "spot": Pool(
            name="spot",
            price_per_pod_hour=0.03,
            capacity_type="spot",
            node_labels={"topology.kubernetes.io/region": "eu-west-1"},
            regions=frozenset({"eu-west-1"}),
            zones=frozenset({"eu-west-1a"}),
            nodes=2,
        ),
    }
    base.update(overrides)
    return base


def situation(
    *,
    replicas: int = 4,
    placement: str = "standard",
    ready: int | None = None,
    labels: Mapping[str, str] | None = None,
    pool_map: Mapping[str, Pool] | None = None,
    now: float = NOW,
    interval: float = 30.0,
) -> Situation:
    return Situation(
        namespace="shop",
        name="web",
        kind="Deployment",
        labels=dict(labels or {"app": "web"}),
        current=Candidate(replicas, placement),
        ready_replicas=replicas if ready is None else ready,
        pools=dict(pool_map if pool_map is not None else pools()),
        now=now,
        interval_seconds=interval,
    )


def demand(
    values: Sequence[float] | None = None,
    *,
    level: float = 300.0,
    slope: float = 0.0,
    minutes: int = 30,
    step: float = 60.0,
    now: float = NOW,
    age: float = 0.0,
) -> Evidence:
    """A demand series ending `age` seconds before `now`: given values, or a line level + slope*i."""
    if values is None:
        values = [level + slope * i for i in range(minutes)]
    end = now - age
    series = tuple((end - step * (len(values) - 1 - i), float(v)) for i, v in enumerate(values))
    return Evidence.from_series("demand", Source.PROMETHEUS, "sum(rate(http_requests_total[2m]))", series)


def daily(
    values_per_minute: int = 1440 * 2, *, base: float = 500.0, amplitude: float = 300.0, now: float = NOW
) -> tuple[tuple[float, float], ...]:
    """A two-day sinusoid with a 24h period, one sample a minute, ending at `now`."""
    return tuple(
        (
            now - 60.0 * (values_per_minute - 1 - i),
            base + amplitude * math.sin(2 * math.pi * (now - 60.0 * (values_per_minute - 1 - i)) / 86400.0),
        )
        for i in range(values_per_minute)
    )


def policy(**overrides: Any) -> NegotiationPolicySpec:
    """A policy spec from wire-form (camelCase) overrides on top of four agents."""
    spec: dict[str, Any] = {
        "agents": [{"name": "performance"}, {"name": "cost"}, {"name": "security"}, {"name": "compliance"}],
        "bounds": {
            "minReplicas": 1,
            "maxReplicas": 50,
            "maxStepUp": 10,
            "maxStepDown": 5,
            "scaleDownStabilizationSeconds": 0,
        },
        "placements": [
            {"name": "standard", "pricePerPodHour": 0.10},
            {"name": "spot", "pricePerPodHour": 0.03, "capacityType": "spot"},
        ],
        "rules": {"requireApproval": {"placementChange": False}},
    }
    spec.update(overrides)
    return NegotiationPolicySpec.model_validate(spec)


def agent_specs(**overrides: dict[str, Any]) -> dict[str, AgentSpec]:
    base: dict[str, dict[str, Any]] = {
        "performance": {"type": "performance", "weight": 2},
        "cost": {"type": "cost"},
        "security": {
            "type": "security",
            "veto": True,
            "security": {"requiredNodeLabels": {"accord.dev/hardened": "true"}},
        },
        "compliance": {
            "type": "compliance",
            "veto": True,
            "compliance": {"allowedRegions": ["eu-west-1"], "minReplicas": 2},
        },
    }
    base.update(overrides)
    return {name: AgentSpec.model_validate(spec) for name, spec in base.items()}
