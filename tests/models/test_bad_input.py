"""Malformed specs are refused with a pydantic ValidationError whose description names the field a user wrote.

Each case is a spec as a user would write it in YAML (camelCase), broken in one place, and the
field path `describe_validation_error` must mention. Nothing but ValidationError may escape.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from accord.models import Agent, AgentSpec, AgentType, Negotiation, NegotiationPolicy, NegotiationPolicySpec
from accord.models.common import from_wire
from accord.models.errors import describe_validation_error

# --- builders of otherwise-valid specs -------------------------------------------------------------------------------

HTTPS = "https://agents.example.com/negotiate"
SECRET = {"name": "external-agent-key"}


def policy(**fields: Any) -> dict[str, Any]:
    """A minimal valid policy spec with `fields` set at the top level."""
    return {"agents": [{"name": "performance"}], **fields}


def bounds(**fields: Any) -> dict[str, Any]:
    return policy(bounds=fields)


def rules(**fields: Any) -> dict[str, Any]:
    return policy(rules=fields)


def window(**fields: Any) -> dict[str, Any]:
    """A policy with one freeze window (Fridays 18:00 UTC for an hour) with `fields` overridden."""
    return rules(freezeWindows=[{"schedule": "0 18 * * 5", "durationMinutes": 60, **fields}])


def placement(**fields: Any) -> dict[str, Any]:
    return policy(placements=[{"name": "standard", **fields}])


def participant(**fields: Any) -> dict[str, Any]:
    return {"agents": [{"name": "performance", **fields}]}


def agent(kind: str, **fields: Any) -> dict[str, Any]:
    """An agent spec of type `kind` with top-level `fields`."""
    return {"type": kind, **fields}


def block(kind: str, **settings_fields: Any) -> dict[str, Any]:
    """An agent spec of type `kind` whose settings block holds `settings_fields`."""
    if kind == "external":
        return {"type": kind, "external": {"url": HTTPS, "secretRef": SECRET, **settings_fields}}
    return {"type": kind, kind: settings_fields}


def compliance_window(**fields: Any) -> dict[str, Any]:
    return block("compliance", freezeWindows=[{"schedule": "0 18 * * 5", "durationMinutes": 60, **fields}])


def negotiation(**spec_fields: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "workload": {"kind": "Deployment", "namespace": "shop", "name": "web"},
        "policy": "shop/default",
        "protocol": "nash",
        "current": {"replicas": 4, "placement": "standard"},
        "candidates": 12,
        "outcome": {
            "verdict": "Apply",
            "target": {"replicas": 6, "placement": "standard"},
            "confidence": 0.8,
            "reason": "demand is rising",
        },
        "decidedAt": "2025-06-15T15:06:40Z",
    }
    spec.update(spec_fields)
    return {"apiVersion": "accord.dev/v1alpha1", "kind": "Negotiation", "metadata": {"name": "web-1"}, "spec": spec}


def proposal(**fields: Any) -> dict[str, Any]:
    return {
        "agent": "cost",
        "type": "cost",
        "weight": 1.0,
        "trust": 1.0,
        "confidence": 0.9,
        "rationale": "ok",
        **fields,
    }


NAN = math.nan
# What pytest.raises raises when nothing was raised: the failure of the known-bug cases below.
INF = math.inf
DNS_PATTERN = "agents[0].name"

P = NegotiationPolicySpec
A = AgentSpec

# --- the table -----------------------------------------------------------------------------------------------------

POLICY_CASES = [
    # agents: required, a non-empty list of uniquely named DNS subdomain names
    pytest.param(P, {}, "agents", id="policy-agents-missing"),
    pytest.param(P, {"agents": []}, "agents", id="policy-agents-empty"),
    pytest.param(P, {"agents": None}, "agents", id="policy-agents-null"),
    pytest.param(P, {"agents": "performance"}, "agents", id="policy-agents-string"),
    pytest.param(P, {"agents": ["performance"]}, "agents[0]", id="policy-agent-as-bare-string"),
    pytest.param(P, {"agents": [{"name": "a"}, {"name": "a"}]}, "agents", id="policy-agents-duplicate"),
    pytest.param(P, {"agents": [{"name": f"a{i}"} for i in range(33)]}, "agents", id="policy-agents-33-too-many"),
    pytest.param(P, {"agents": [{}]}, "agents[0].name", id="policy-agent-name-missing"),
    pytest.param(P, {"agents": [{"name": ""}]}, DNS_PATTERN, id="policy-agent-name-empty"),
    pytest.param(P, {"agents": [{"name": None}]}, DNS_PATTERN, id="policy-agent-name-null"),
    pytest.param(P, {"agents": [{"name": 7}]}, DNS_PATTERN, id="policy-agent-name-int"),
    pytest.param(P, {"agents": [{"name": "Performance"}]}, DNS_PATTERN, id="policy-agent-name-uppercase"),
    pytest.param(P, {"agents": [{"name": "agent_1"}]}, DNS_PATTERN, id="policy-agent-name-underscore"),
    pytest.param(P, {"agents": [{"name": "my agent"}]}, DNS_PATTERN, id="policy-agent-name-space"),
    pytest.param(P, {"agents": [{"name": "-cost"}]}, DNS_PATTERN, id="policy-agent-name-leading-dash"),
    pytest.param(P, {"agents": [{"name": "cost."}]}, DNS_PATTERN, id="policy-agent-name-trailing-dot"),
    pytest.param(P, {"agents": [{"name": "cost..a"}]}, DNS_PATTERN, id="policy-agent-name-empty-label"),
    pytest.param(P, {"agents": [{"name": "kostén"}]}, DNS_PATTERN, id="policy-agent-name-accented"),
    pytest.param(P, {"agents": [{"name": "🤖"}]}, DNS_PATTERN, id="policy-agent-name-emoji"),
    pytest.param(P, {"agents": [{"name": "ｃｏｓｔ"}]}, DNS_PATTERN, id="policy-agent-name-fullwidth"),
    pytest.param(P, {"agents": [{"name": "cost\u200b"}]}, DNS_PATTERN, id="policy-agent-name-zero-width-space"),
    pytest.param(P, {"agents": [{"name": "cost\n"}]}, DNS_PATTERN, id="policy-agent-name-trailing-newline"),
    pytest.param(P, {"agents": [{"name": "a" * 254}]}, DNS_PATTERN, id="policy-agent-name-254-chars"),
    pytest.param(P, participant(weight=-1), "agents[0].weight", id="participant-weight-negative"),
    pytest.param(P, participant(weight=NAN), "agents[0].weight", id="participant-weight-nan"),
    pytest.param(P, participant(weight=INF), "agents[0].weight", id="participant-weight-inf"),
    pytest.param(P, participant(weight=1e12), "agents[0].weight", id="participant-weight-1e12"),
    pytest.param(P, participant(weight="heavy"), "agents[0].weight", id="participant-weight-string"),
    pytest.param(P, participant(tier=-1), "agents[0].tier", id="participant-tier-negative"),
    pytest.param(P, participant(tier=1.5), "agents[0].tier", id="participant-tier-fraction"),
    pytest.param(P, participant(tier=10**18), "agents[0].tier", id="participant-tier-10e18"),
    pytest.param(P, participant(type="cost"), "agents[0].type", id="participant-unknown-field"),
    # selection
    pytest.param(P, policy(kinds=[]), "kinds", id="policy-kinds-empty"),
    pytest.param(P, policy(kinds=["CronJob"]), "kinds[0]", id="policy-kinds-unknown"),
    pytest.param(P, policy(kinds="Deployment"), "kinds", id="policy-kinds-string"),
    pytest.param(P, policy(namespaces="default"), "namespaces", id="policy-namespaces-string"),
    pytest.param(P, policy(namespaces=[1]), "namespaces[0]", id="policy-namespaces-int"),
    pytest.param(P, policy(selector="app=web"), "selector", id="selector-string"),
    pytest.param(P, policy(selector={"matchLabels": "app=web"}), "selector.matchLabels", id="selector-labels-string"),
    pytest.param(P, policy(selector={"matchLabels": {"app": 1}}), "selector.matchLabels.app", id="selector-label-int"),
    pytest.param(P, policy(selector={"matchLabel": {}}), "selector.matchLabel", id="selector-unknown-field"),
    pytest.param(
        P,
        policy(selector={"matchExpressions": [{"key": "app", "operator": "Maybe"}]}),
        "selector.matchExpressions[0].operator",
        id="selector-operator-unknown",
    ),
    pytest.param(
        P,
        policy(selector={"matchExpressions": [{"operator": "In"}]}),
        "selector.matchExpressions[0].key",
        id="selector-key-missing",
    ),
    pytest.param(
        P,
        policy(selector={"matchExpressions": [{"key": "", "operator": "Exists"}]}),
        "selector.matchExpressions[0].key",
        id="selector-key-empty",
    ),
    pytest.param(
        P,
        policy(selector={"matchExpressions": [{"key": "app", "operator": "In", "values": "web"}]}),
        "selector.matchExpressions[0].values",
        id="selector-values-string",
    ),
    # top-level scalars
    pytest.param(P, policy(protocol="NASH"), "protocol", id="policy-protocol-wrong-case"),
    pytest.param(P, policy(protocol="auction"), "protocol", id="policy-protocol-unknown"),
    pytest.param(P, policy(mode="dry-run"), "mode", id="policy-mode-unknown"),
    pytest.param(P, policy(lexicographicTolerance=-0.1), "lexicographicTolerance", id="tolerance-negative"),
    pytest.param(P, policy(lexicographicTolerance=1.5), "lexicographicTolerance", id="tolerance-above-one"),
    pytest.param(P, policy(lexicographicTolerance=NAN), "lexicographicTolerance", id="tolerance-nan"),
    pytest.param(P, policy(intervalSeconds=4), "intervalSeconds", id="interval-below-5"),
    pytest.param(P, policy(intervalSeconds=1e12), "intervalSeconds", id="interval-1e12"),
    pytest.param(P, policy(intervalSeconds=INF), "intervalSeconds", id="interval-inf"),
    pytest.param(P, policy(intervalSeconds=30.5), "intervalSeconds", id="interval-fraction"),
    pytest.param(P, policy(intervalSeconds="30s"), "intervalSeconds", id="interval-duration-string"),
    pytest.param(P, policy(historyLimit=0), "historyLimit", id="history-limit-zero"),
    pytest.param(P, policy(historyLimit=10**18), "historyLimit", id="history-limit-10e18"),
    pytest.param(P, policy(interval=30), "interval", id="policy-unknown-field"),
    pytest.param(P, policy(status={}), "status", id="policy-spec-with-status"),
    # bounds
    pytest.param(P, bounds(minReplicas=5, maxReplicas=2), "bounds", id="bounds-min-above-max"),
    pytest.param(P, bounds(minReplicas=101), "bounds", id="bounds-min-above-default-max"),
    pytest.param(P, bounds(minReplicas=-1), "bounds.minReplicas", id="bounds-min-negative"),
    pytest.param(P, bounds(maxReplicas=10**18), "bounds.maxReplicas", id="bounds-max-10e18"),
    pytest.param(P, bounds(maxReplicas=1e12), "bounds.maxReplicas", id="bounds-max-1e12"),
    pytest.param(P, bounds(maxReplicas=NAN), "bounds.maxReplicas", id="bounds-max-nan"),
    pytest.param(P, bounds(maxReplicas="many"), "bounds.maxReplicas", id="bounds-max-string"),
    pytest.param(P, bounds(maxStepUp=0), "bounds.maxStepUp", id="bounds-step-up-zero"),
    pytest.param(P, bounds(maxStepDown=-3), "bounds.maxStepDown", id="bounds-step-down-negative"),
    pytest.param(
        P, bounds(scaleDownStabilizationSeconds=-1), "bounds.scaleDownStabilizationSeconds", id="bounds-stab-negative"
    ),
    pytest.param(
        P, bounds(scaleUpStabilizationSeconds=86401), "bounds.scaleUpStabilizationSeconds", id="bounds-stab-over-a-day"
    ),
    pytest.param(P, bounds(scaleDownTolerance=1.0), "bounds.scaleDownTolerance", id="bounds-tolerance-all"),
    pytest.param(P, bounds(scaleDownTolerance=-0.1), "bounds.scaleDownTolerance", id="bounds-tolerance-negative"),
    pytest.param(P, bounds(scaleDownTolerance="10%"), "bounds.scaleDownTolerance", id="bounds-tolerance-percent"),
    pytest.param(P, bounds(scaleUpTolerance=1.0), "bounds.scaleUpTolerance", id="bounds-up-tolerance-all"),
    pytest.param(P, bounds(scaleUpTolerance=-0.1), "bounds.scaleUpTolerance", id="bounds-up-tolerance-negative"),
    pytest.param(P, bounds(minReplica=1), "bounds.minReplica", id="bounds-unknown-field-typo"),
    pytest.param(P, policy(bounds=[1, 10]), "bounds", id="bounds-list"),
    # placements
    pytest.param(P, policy(placements=[{"name": "a"}, {"name": "a"}]), "placements", id="placements-duplicate"),
    pytest.param(P, policy(placements=[{}]), "placements[0].name", id="placement-name-missing"),
    pytest.param(P, policy(placements=[{"name": "Spot_Pool"}]), "placements[0].name", id="placement-name-invalid"),
    pytest.param(P, policy(placements={"name": "spot"}), "placements", id="placements-object"),
    pytest.param(P, placement(pricePerPodHour=-0.1), "placements[0].pricePerPodHour", id="placement-price-negative"),
    pytest.param(P, placement(pricePerPodHour=NAN), "placements[0].pricePerPodHour", id="placement-price-nan"),
    pytest.param(P, placement(pricePerPodHour=INF), "placements[0].pricePerPodHour", id="placement-price-inf"),
    pytest.param(P, placement(pricePerPodHour=1e12), "placements[0].pricePerPodHour", id="placement-price-1e12"),
    pytest.param(P, placement(pricePerPodHour="cheap"), "placements[0].pricePerPodHour", id="placement-price-string"),
    pytest.param(P, placement(capacityType="preemptible"), "placements[0].capacityType", id="placement-capacity-type"),
    pytest.param(P, placement(nodeSelector=["a"]), "placements[0].nodeSelector", id="placement-selector-list"),
    pytest.param(
        P, placement(nodeSelector={"pool": 5}), "placements[0].nodeSelector.pool", id="placement-selector-value-int"
    ),
    pytest.param(P, placement(affinity=[1]), "placements[0].affinity", id="placement-affinity-list"),
    pytest.param(
        P, placement(tolerations={"key": "x"}), "placements[0].tolerations", id="placement-tolerations-object"
    ),
    pytest.param(
        P,
        placement(tolerations=[{"key": "x", "effect": "NoWay"}]),
        "placements[0].tolerations[0].effect",
        id="toleration-effect-unknown",
    ),
    pytest.param(
        P,
        placement(tolerations=[{"key": "x", "operator": "Matches"}]),
        "placements[0].tolerations[0].operator",
        id="toleration-operator-unknown",
    ),
    pytest.param(
        P,
        placement(tolerations=[{"key": "x", "tolerationSeconds": 1.5}]),
        "placements[0].tolerations[0].tolerationSeconds",
        id="toleration-seconds-fraction",
    ),
    pytest.param(P, placement(price=0.1), "placements[0].price", id="placement-unknown-field"),
    # rules
    pytest.param(P, rules(minConfidence=1.5), "rules.minConfidence", id="rules-min-confidence-above-one"),
    pytest.param(P, rules(minConfidence=-0.5), "rules.minConfidence", id="rules-min-confidence-negative"),
    pytest.param(P, rules(minConfidence=NAN), "rules.minConfidence", id="rules-min-confidence-nan"),
    pytest.param(P, rules(minConfidence=INF), "rules.minConfidence", id="rules-min-confidence-inf"),
    pytest.param(P, rules(minConfidence="high"), "rules.minConfidence", id="rules-min-confidence-string"),
    pytest.param(P, rules(freezeWindow=[]), "rules.freezeWindow", id="rules-unknown-field"),
    pytest.param(
        P,
        rules(missingMetrics={"action": "fallback"}),
        "rules.missingMetrics",
        id="missing-metrics-fallback-without-replicas",
    ),
    pytest.param(
        P,
        rules(missingMetrics={"action": "currentIfHigher"}),
        "rules.missingMetrics",
        id="missing-metrics-current-if-higher-without-replicas",
    ),
    pytest.param(
        P,
        rules(missingMetrics={"action": "currentIfLower", "fallbackReplicas": None}),
        "rules.missingMetrics",
        id="missing-metrics-current-if-lower-null-replicas",
    ),
    pytest.param(
        P, rules(missingMetrics={"action": "panic"}), "rules.missingMetrics.action", id="missing-metrics-unknown-action"
    ),
    pytest.param(
        P,
        rules(missingMetrics={"action": "fallback", "fallbackReplicas": -2}),
        "rules.missingMetrics.fallbackReplicas",
        id="missing-metrics-fallback-negative",
    ),
    pytest.param(
        P,
        rules(missingMetrics={"action": "fallback", "fallbackReplicas": 10**18}),
        "rules.missingMetrics.fallbackReplicas",
        id="missing-metrics-fallback-10e18",
    ),
    pytest.param(
        P,
        rules(requireApproval={"stepPercentAbove": NAN}),
        "rules.requireApproval.stepPercentAbove",
        id="approval-step-percent-nan",
    ),
    pytest.param(
        P,
        rules(requireApproval={"stepReplicasAbove": -1}),
        "rules.requireApproval.stepReplicasAbove",
        id="approval-step-replicas-negative",
    ),
    pytest.param(
        P,
        rules(requireApproval={"costIncreasePerHourAbove": 1e12}),
        "rules.requireApproval.costIncreasePerHourAbove",
        id="approval-cost-increase-1e12",
    ),
    pytest.param(
        P,
        rules(requireApproval={"disagreementAbove": 2}),
        "rules.requireApproval.disagreementAbove",
        id="approval-disagreement-above-one",
    ),
    pytest.param(
        P,
        rules(requireApproval={"confidenceBelow": -INF}),
        "rules.requireApproval.confidenceBelow",
        id="approval-confidence-minus-inf",
    ),
    pytest.param(
        P,
        rules(requireApproval={"placementChange": "maybe"}),
        "rules.requireApproval.placementChange",
        id="approval-placement-change-not-bool",
    ),
    pytest.param(P, rules(budget={"maxCostPerHour": -INF}), "rules.budget.maxCostPerHour", id="budget-cost-minus-inf"),
    pytest.param(P, rules(budget={"maxCostPerHour": 1e12}), "rules.budget.maxCostPerHour", id="budget-cost-1e12"),
    pytest.param(
        P, rules(budget={"maxChangesPerHour": -1}), "rules.budget.maxChangesPerHour", id="budget-changes-negative"
    ),
    pytest.param(
        P, rules(budget={"maxChangesPerHour": 10**18}), "rules.budget.maxChangesPerHour", id="budget-changes-10e18"
    ),
    # freeze windows
    pytest.param(P, rules(freezeWindows={"schedule": "0 18 * * 5"}), "rules.freezeWindows", id="freeze-not-a-list"),
    pytest.param(
        P,
        rules(freezeWindows=[{"durationMinutes": 60}]),
        "rules.freezeWindows[0].schedule",
        id="freeze-schedule-missing",
    ),
    pytest.param(
        P,
        rules(freezeWindows=[{"schedule": "0 18 * * 5"}]),
        "rules.freezeWindows[0].durationMinutes",
        id="freeze-duration-missing",
    ),
    pytest.param(P, window(schedule="not a cron"), "rules.freezeWindows[0].schedule", id="cron-words"),
    pytest.param(P, window(schedule="61 18 * * 5"), "rules.freezeWindows[0].schedule", id="cron-minute-61"),
    pytest.param(P, window(schedule="0 25 * * 5"), "rules.freezeWindows[0].schedule", id="cron-hour-25"),
    pytest.param(P, window(schedule="0 18 0 * *"), "rules.freezeWindows[0].schedule", id="cron-day-zero"),
    pytest.param(P, window(schedule="0 18 1 13 *"), "rules.freezeWindows[0].schedule", id="cron-month-13"),
    pytest.param(P, window(schedule="0 18 * * 8"), "rules.freezeWindows[0].schedule", id="cron-weekday-8"),
    pytest.param(P, window(schedule="*/0 * * * *"), "rules.freezeWindows[0].schedule", id="cron-step-zero"),
    pytest.param(P, window(schedule="0 0 18 * * 5"), "rules.freezeWindows[0].schedule", id="cron-six-fields"),
    pytest.param(P, window(schedule="0 18 * *"), "rules.freezeWindows[0].schedule", id="cron-four-fields"),
    pytest.param(P, window(schedule="@weekly"), "rules.freezeWindows[0].schedule", id="cron-macro"),
    pytest.param(P, window(schedule=0), "rules.freezeWindows[0].schedule", id="cron-int"),
    pytest.param(P, window(schedule="H 18 * * 5"), "rules.freezeWindows[0].schedule", id="cron-jenkins-hash"),
    pytest.param(P, window(schedule="٠ ١٨ * * ٥"), "rules.freezeWindows[0].schedule", id="cron-arabic-digits"),
    pytest.param(
        P,
        window(schedule="0 0 30 2 *"),
        "rules.freezeWindows[0].schedule",
        id="cron-february-30-never-fires",
    ),
    pytest.param(P, window(timeZone="Mars/Olympus_Mons"), "rules.freezeWindows[0].timeZone", id="tz-unknown"),
    pytest.param(P, window(timeZone="europe/berlin"), "rules.freezeWindows[0].timeZone", id="tz-wrong-case"),
    pytest.param(P, window(timeZone="CEST"), "rules.freezeWindows[0].timeZone", id="tz-abbreviation"),
    pytest.param(P, window(timeZone="+02:00"), "rules.freezeWindows[0].timeZone", id="tz-offset"),
    pytest.param(P, window(timeZone=""), "rules.freezeWindows[0].timeZone", id="tz-empty"),
    pytest.param(P, window(timeZone="../../etc/passwd"), "rules.freezeWindows[0].timeZone", id="tz-path-traversal"),
    pytest.param(P, window(timeZone=" Europe/Berlin"), "rules.freezeWindows[0].timeZone", id="tz-leading-space"),
    pytest.param(P, window(timeZone=1), "rules.freezeWindows[0].timeZone", id="tz-int"),
    pytest.param(P, window(durationMinutes=0), "rules.freezeWindows[0].durationMinutes", id="freeze-duration-zero"),
    pytest.param(
        P, window(durationMinutes=-60), "rules.freezeWindows[0].durationMinutes", id="freeze-duration-negative"
    ),
    pytest.param(
        P, window(durationMinutes=10**18), "rules.freezeWindows[0].durationMinutes", id="freeze-duration-10e18"
    ),
    pytest.param(P, window(durationMinutes=NAN), "rules.freezeWindows[0].durationMinutes", id="freeze-duration-nan"),
    pytest.param(P, window(action="warn"), "rules.freezeWindows[0].action", id="freeze-action-unknown"),
    pytest.param(P, window(name=""), "rules.freezeWindows[0].name", id="freeze-name-empty"),
    pytest.param(P, window(end="0 20 * * 5"), "rules.freezeWindows[0].end", id="freeze-unknown-field"),
    # approval
    pytest.param(P, policy(approval={"expirySeconds": 5}), "approval.expirySeconds", id="approval-expiry-too-short"),
    pytest.param(P, policy(approval={"expirySeconds": 10**18}), "approval.expirySeconds", id="approval-expiry-10e18"),
    pytest.param(P, policy(approval={"approvers": "alice"}), "approval.approvers", id="approval-approvers-string"),
    pytest.param(
        P, policy(approval={"approverGroups": [None]}), "approval.approverGroups[0]", id="approval-group-null"
    ),
]

AGENT_CASES = [
    pytest.param(A, {}, "type", id="agent-type-missing"),
    pytest.param(A, [], "(root)", id="agent-spec-list"),
    pytest.param(A, "cost", "(root)", id="agent-spec-string"),
    pytest.param(A, agent("robot"), "type", id="agent-type-unknown"),
    pytest.param(A, agent("Cost"), "type", id="agent-type-wrong-case"),
    pytest.param(A, agent("cost "), "type", id="agent-type-trailing-space"),
    pytest.param(A, agent(None), "type", id="agent-type-null"),
    pytest.param(A, agent("cost", weight=-1), "weight", id="agent-weight-negative"),
    pytest.param(A, agent("cost", weight=-0.001), "weight", id="agent-weight-slightly-negative"),
    pytest.param(A, agent("cost", weight=1001), "weight", id="agent-weight-above-1000"),
    pytest.param(A, agent("cost", weight=1e12), "weight", id="agent-weight-1e12"),
    pytest.param(A, agent("cost", weight=10**18), "weight", id="agent-weight-10e18"),
    pytest.param(A, agent("cost", weight=NAN), "weight", id="agent-weight-nan"),
    pytest.param(A, agent("cost", weight=INF), "weight", id="agent-weight-inf"),
    pytest.param(A, agent("cost", weight=-INF), "weight", id="agent-weight-minus-inf"),
    pytest.param(A, agent("cost", weight=[1]), "weight", id="agent-weight-list"),
    pytest.param(A, agent("cost", veto="sometimes"), "veto", id="agent-veto-not-bool"),
    pytest.param(A, agent("cost", trust=1), "trust", id="agent-unknown-field"),
    pytest.param(A, agent("cost", settings={}), "settings", id="agent-generic-settings-field"),
    # a settings block of another type
    pytest.param(A, agent("cost", performance={}), "spec.performance", id="cost-with-performance-block"),
    pytest.param(A, agent("cost", security={}), "spec.security", id="cost-with-security-block"),
    pytest.param(A, agent("performance", cost={}), "spec.cost", id="performance-with-cost-block"),
    pytest.param(A, agent("security", compliance={}), "spec.compliance", id="security-with-compliance-block"),
    pytest.param(
        A,
        agent("compliance", external={"url": HTTPS, "secretRef": SECRET}),
        "spec.external",
        id="compliance-with-external-block",
    ),
    pytest.param(
        A,
        {"type": "external", "external": {"url": HTTPS, "secretRef": SECRET}, "cost": {}},
        "spec.cost",
        id="external-with-cost-block-too",
    ),
    # a settings block of the right name but the wrong shape
    pytest.param(A, agent("cost", cost=[]), "cost", id="cost-block-list"),
    pytest.param(A, agent("cost", cost="cheap"), "cost", id="cost-block-string"),
    pytest.param(A, agent("performance", performance=[]), "performance", id="performance-block-list"),
    pytest.param(A, agent("security", security=True), "security", id="security-block-bool"),
    pytest.param(A, agent("compliance", compliance=3), "compliance", id="compliance-block-int"),
    # performance settings
    pytest.param(A, block("performance", targetUtilisation=0), "performance.targetUtilisation", id="perf-target-0"),
    pytest.param(A, block("performance", targetUtilisation=1.5), "performance.targetUtilisation", id="perf-target-1.5"),
    pytest.param(A, block("performance", targetUtilisation=NAN), "performance.targetUtilisation", id="perf-target-nan"),
    pytest.param(A, block("performance", sloUtilisation=0), "performance.sloUtilisation", id="perf-slo-0"),
    pytest.param(A, block("performance", sloUtilisation=1.01), "performance.sloUtilisation", id="perf-slo-above-1"),
    pytest.param(
        A,
        block("performance", targetUtilisation=0.7, sloUtilisation=0.69),
        "sloUtilisation (0.69) must not be below targetUtilisation (0.7)",
        id="perf-slo-below-target",
    ),
    pytest.param(
        A, block("performance", targetUtilization=0.7), "performance.targetUtilization", id="perf-unknown-spelling"
    ),
    pytest.param(A, block("performance", capacityPerPod=0), "performance.capacityPerPod", id="perf-capacity-0"),
    pytest.param(A, block("performance", capacityPerPod=-5), "performance.capacityPerPod", id="perf-capacity-negative"),
    pytest.param(A, block("performance", capacityPerPod=INF), "performance.capacityPerPod", id="perf-capacity-inf"),
    pytest.param(A, block("performance", capacityPerPod=1e12), "performance.capacityPerPod", id="perf-capacity-1e12"),
    pytest.param(
        A, block("performance", latencyTargetSeconds=0), "performance.latencyTargetSeconds", id="perf-latency-0"
    ),
    pytest.param(
        A, block("performance", latencyTargetSeconds=NAN), "performance.latencyTargetSeconds", id="perf-latency-nan"
    ),
    pytest.param(A, block("performance", startupSeconds=10**18), "performance.startupSeconds", id="perf-startup-10e18"),
    pytest.param(A, block("performance", startupSeconds=-1), "performance.startupSeconds", id="perf-startup-negative"),
    pytest.param(A, block("performance", historySeconds=59), "performance.historySeconds", id="perf-history-59s"),
    pytest.param(
        A, block("performance", staleAfterSeconds=0), "performance.staleAfterSeconds", id="perf-stale-after-0"
    ),
    pytest.param(A, block("performance", seasonality="daily"), "performance.seasonality", id="perf-seasonality-str"),
    pytest.param(A, block("performance", demandQuery=5), "performance.demandQuery", id="perf-query-int"),
    pytest.param(A, block("performance", demandQuery="x" * 5000), "performance.demandQuery", id="perf-query-too-long"),
    # cost settings
    pytest.param(
        A, block("cost", defaultPricePerPodHour=-0.01), "cost.defaultPricePerPodHour", id="cost-price-negative"
    ),
    pytest.param(A, block("cost", defaultPricePerPodHour=NAN), "cost.defaultPricePerPodHour", id="cost-price-nan"),
    pytest.param(A, block("cost", budgetPerHour=1e12), "cost.budgetPerHour", id="cost-budget-1e12"),
    pytest.param(A, block("cost", budgetPerHour=INF), "cost.budgetPerHour", id="cost-budget-inf"),
    pytest.param(A, block("cost", budgetPerHour=-1), "cost.budgetPerHour", id="cost-budget-negative"),
    pytest.param(A, block("cost", spotInterruptionPenalty=2), "cost.spotInterruptionPenalty", id="cost-penalty-2"),
    pytest.param(A, block("cost", currency="EUR"), "cost.currency", id="cost-unknown-field"),
    # security settings
    pytest.param(
        A, block("security", requiredNodeLabels=["a"]), "security.requiredNodeLabels", id="security-labels-list"
    ),
    pytest.param(
        A,
        block("security", sensitiveSelector={"matchLabels": {"tier": None}}),
        "security.sensitiveSelector.matchLabels.tier",
        id="security-selector-null-value",
    ),
    pytest.param(
        A, block("security", minZonesDuringSignal=0), "security.minZonesDuringSignal", id="security-zones-zero"
    ),
    pytest.param(
        A, block("security", minZonesDuringSignal=65), "security.minZonesDuringSignal", id="security-zones-65"
    ),
    pytest.param(
        A,
        block("security", minReplicasDuringSignal=-1),
        "security.minReplicasDuringSignal",
        id="security-floor-negative",
    ),
    pytest.param(
        A,
        block("security", forbidSpotForSensitive="no way"),
        "security.forbidSpotForSensitive",
        id="security-forbid-spot-not-bool",
    ),
    # compliance settings
    pytest.param(A, block("compliance", allowedRegions="eu-west-1"), "compliance.allowedRegions", id="regions-string"),
    pytest.param(A, block("compliance", allowedZones=[1]), "compliance.allowedZones[0]", id="zones-int"),
    pytest.param(A, block("compliance", minReplicas=100_001), "compliance.minReplicas", id="compliance-min-100001"),
    pytest.param(A, block("compliance", minReplicas=-1), "compliance.minReplicas", id="compliance-min-negative"),
    pytest.param(
        A, compliance_window(schedule="0 18 * * 5L"), "compliance.freezeWindows[0].schedule", id="compliance-cron-bad"
    ),
    pytest.param(
        A,
        compliance_window(schedule="0 0 31 4 *"),
        "compliance.freezeWindows[0].schedule",
        id="compliance-cron-april-31-never-fires",
    ),
    pytest.param(
        A,
        compliance_window(timeZone="Europe/Atlantis"),
        "compliance.freezeWindows[0].timeZone",
        id="compliance-tz-unknown",
    ),
    pytest.param(
        A,
        compliance_window(durationMinutes=60 * 24 * 32),
        "compliance.freezeWindows[0].durationMinutes",
        id="compliance-duration-32-days",
    ),
    pytest.param(
        A,
        compliance_window(action="block"),
        "compliance.freezeWindows[0].action",
        id="compliance-window-has-no-action",
    ),
    # external settings
    pytest.param(A, agent("external"), "spec.external", id="external-block-missing"),
    pytest.param(A, agent("external", external=None), "spec.external", id="external-block-null"),
    pytest.param(
        A,
        agent("external", external={"url": "http://agents.example.com", "secretRef": SECRET}),
        "external.url",
        id="external-http-url",
    ),
    pytest.param(
        A,
        agent("external", external={"url": "ftp://agents.example.com", "secretRef": SECRET}),
        "external.url",
        id="external-ftp-url",
    ),
    pytest.param(
        A, agent("external", external={"url": "not a url", "secretRef": SECRET}), "external.url", id="external-no-url"
    ),
    pytest.param(A, agent("external", external={"secretRef": SECRET}), "external.url", id="external-url-missing"),
    pytest.param(A, agent("external", external={"url": HTTPS}), "external.secretRef", id="external-secret-missing"),
    pytest.param(
        A,
        agent("external", external={"url": HTTPS, "secretRef": "key"}),
        "external.secretRef",
        id="external-secret-string",
    ),
    pytest.param(
        A,
        agent("external", external={"url": HTTPS, "secretRef": {"key": "k"}}),
        "external.secretRef.name",
        id="external-secret-name-missing",
    ),
    pytest.param(
        A,
        agent("external", external={"url": HTTPS, "secretRef": {"name": "Agent_Key"}}),
        "external.secretRef.name",
        id="external-secret-name-invalid",
    ),
    pytest.param(
        A,
        agent("external", external={"url": HTTPS, "secretRef": {"name": "k", "key": ""}}),
        "external.secretRef.key",
        id="external-secret-key-empty",
    ),
    pytest.param(A, block("external", timeoutSeconds=0), "external.timeoutSeconds", id="external-timeout-zero"),
    pytest.param(A, block("external", timeoutSeconds=INF), "external.timeoutSeconds", id="external-timeout-inf"),
    pytest.param(A, block("external", timeoutSeconds=61), "external.timeoutSeconds", id="external-timeout-61"),
    pytest.param(A, block("external", retries=3), "external.retries", id="external-unknown-field"),
]

WHOLE_OBJECT_CASES = [
    pytest.param(Agent, {"kind": "Agent"}, "spec", id="agent-object-spec-missing"),
    pytest.param(Agent, {"kind": "Agentt", "spec": {"type": "cost"}}, "kind", id="agent-object-wrong-kind"),
    pytest.param(
        Agent, {"apiVersion": "accord.dev/v1", "spec": {"type": "cost"}}, "apiVersion", id="agent-object-wrong-version"
    ),
    pytest.param(Agent, {"spec": {"type": "cost"}, "metadata": "web"}, "metadata", id="agent-object-metadata-string"),
    pytest.param(Agent, {"spec": {"type": "cost", "weight": -2}}, "spec.weight", id="agent-object-negative-weight"),
    pytest.param(
        Agent, {"spec": {"type": "cost", "performance": {}}}, "spec.performance", id="agent-object-wrong-block"
    ),
    pytest.param(
        Agent, {"spec": {"type": "cost"}, "status": {"trust": 2}}, "status.trust", id="agent-object-trust-above-one"
    ),
    pytest.param(NegotiationPolicy, {"spec": {"agents": []}}, "spec.agents", id="policy-object-no-agents"),
    pytest.param(
        NegotiationPolicy,
        {"spec": bounds(minReplicas=9, maxReplicas=3)},
        "spec.bounds",
        id="policy-object-min-above-max",
    ),
    pytest.param(
        NegotiationPolicy,
        {"kind": "Policy", "spec": policy()},
        "kind",
        id="policy-object-wrong-kind",
    ),
    pytest.param(
        NegotiationPolicy,
        {"spec": policy(), "status": {"workloads": -1}},
        "status.workloads",
        id="policy-object-negative-workloads",
    ),
    pytest.param(Negotiation, {"spec": {}}, "spec.workload", id="negotiation-empty-spec"),
    pytest.param(
        Negotiation,
        negotiation(workload={"kind": "DaemonSet", "namespace": "shop", "name": "web"}),
        "spec.workload.kind",
        id="negotiation-workload-kind-daemonset",
    ),
    pytest.param(Negotiation, negotiation(candidates=-1), "spec.candidates", id="negotiation-candidates-negative"),
    pytest.param(
        Negotiation,
        negotiation(current={"replicas": -1, "placement": "standard"}),
        "spec.current.replicas",
        id="negotiation-current-negative",
    ),
    pytest.param(
        Negotiation,
        negotiation(
            outcome={"verdict": "Maybe", "target": {"replicas": 1, "placement": "p"}, "confidence": 1, "reason": "r"}
        ),
        "spec.outcome.verdict",
        id="negotiation-verdict-unknown",
    ),
    pytest.param(
        Negotiation,
        negotiation(
            outcome={"verdict": "Apply", "target": {"replicas": 1, "placement": "p"}, "confidence": NAN, "reason": "r"}
        ),
        "spec.outcome.confidence",
        id="negotiation-confidence-nan",
    ),
    pytest.param(
        Negotiation,
        negotiation(proposals=[proposal(confidence=1.5)]),
        "spec.proposals[0].confidence",
        id="negotiation-proposal-confidence-1.5",
    ),
    pytest.param(
        Negotiation,
        negotiation(gates=[{"rule": "minConfidence", "effect": "veto", "message": "m"}]),
        "spec.gates[0].effect",
        id="negotiation-gate-effect-unknown",
    ),
    pytest.param(Negotiation, negotiation(decidedAt="yesterday"), "spec.decidedAt", id="negotiation-decided-at-text"),
    pytest.param(
        Negotiation,
        {**negotiation(), "status": {"phase": "Done"}},
        "status.phase",
        id="negotiation-phase-unknown",
    ),
    pytest.param(
        Negotiation,
        {**negotiation(), "status": {"approval": {"decision": "maybe", "user": "alice"}}},
        "status.approval.decision",
        id="negotiation-approval-decision-unknown",
    ),
]

# Cases that show where the models disagree with what a user wrote or with their own CRD; each is a bug in src/.
KNOWN_BUG_CASES = [
    pytest.param(
        P,
        policy(max_replica=3),
        "max_replica",
        id="unknown-snake-case-field-named-as-written",
    ),
    pytest.param(
        P,
        placement(nodeSelector={"disk_type": 5}),
        "placements[0].nodeSelector.disk_type",
        id="map-key-named-as-written",
    ),
    pytest.param(
        P,
        bounds(minReplicas=True),
        "bounds.minReplicas",
        id="bool-as-integer",
    ),
    pytest.param(
        A,
        agent("cost", weight="1e3"),
        "weight",
        id="string-as-number",
    ),
]


@pytest.mark.parametrize(("model", "data", "path"), POLICY_CASES + AGENT_CASES + WHOLE_OBJECT_CASES + KNOWN_BUG_CASES)
def test_malformed_spec_is_refused_naming_the_field(model: type[BaseModel], data: Any, path: str) -> None:
    with pytest.raises(ValidationError) as info:
        from_wire(model, data)
    described = describe_validation_error(info.value)
    assert path in described, f"expected {path!r} in:\n{described}"


def test_there_are_at_least_120_malformed_cases() -> None:
    assert len(POLICY_CASES) + len(AGENT_CASES) + len(WHOLE_OBJECT_CASES) >= 120


@pytest.mark.parametrize(
    ("model", "data"),
    [
        pytest.param(P, policy(), id="policy"),
        pytest.param(P, bounds(minReplicas=5, maxReplicas=5), id="bounds-equal"),
        pytest.param(P, window(), id="freeze-window"),
        pytest.param(P, window(timeZone="Europe/Berlin"), id="freeze-window-berlin"),
        pytest.param(P, placement(pricePerPodHour=0.1, capacityType="spot"), id="placement"),
        pytest.param(P, rules(missingMetrics={"action": "fallback", "fallbackReplicas": 3}), id="fallback"),
        pytest.param(P, participant(weight=2, tier=1), id="participant"),
        pytest.param(A, agent("cost", weight=1000), id="agent-weight-max"),
        pytest.param(A, block("external"), id="external"),
        pytest.param(A, compliance_window(), id="compliance-window"),
        pytest.param(A, block("performance", targetUtilisation=1.0), id="performance"),
        pytest.param(
            A, block("performance", targetUtilisation=0.7, sloUtilisation=0.7), id="performance-slo-at-target"
        ),
        pytest.param(A, block("security", minZonesDuringSignal=64), id="security"),
        pytest.param(Negotiation, negotiation(proposals=[proposal()]), id="negotiation"),
        pytest.param(Agent, {"spec": {"type": "cost"}}, id="agent-object"),
    ],
)
def test_the_unbroken_bases_validate(model: type[BaseModel], data: Any) -> None:
    """Each malformed case is a valid base with one thing broken: the bases themselves must pass."""
    from_wire(model, data)


def test_description_lists_every_error_with_its_path() -> None:
    data = policy(bounds={"minReplicas": -1}, rules={"minConfidence": 2}, mode="dry-run")
    with pytest.raises(ValidationError) as info:
        from_wire(NegotiationPolicySpec, data)
    lines = describe_validation_error(info.value).splitlines()
    assert sorted(line.split(":")[0].strip() for line in lines) == ["bounds.minReplicas", "mode", "rules.minConfidence"]


# --- properties: anything JSON-shaped either validates or is a ValidationError --------------------------------------


def _aliases(model: type[BaseModel], seen: set[type[BaseModel]] | None = None) -> Iterator[str]:
    """Every wire (camelCase) field name reachable from `model`, so random documents hit real fields."""
    seen = set() if seen is None else seen
    if model in seen:
        return
    seen.add(model)
    for name, info in model.model_fields.items():
        yield info.alias or name
        for arg in _walk_types(info.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                yield from _aliases(arg, seen)


def _walk_types(annotation: Any) -> Iterator[Any]:
    yield annotation
    for arg in getattr(annotation, "__args__", ()):
        yield from _walk_types(arg)


KEYS = sorted({*_aliases(NegotiationPolicySpec), *_aliases(AgentSpec)})
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(
        [
            "0 18 * * 5",
            "0 0 30 2 *",
            "Europe/Berlin",
            "https://a.example",
            "http://a.example",
            "fallback",
            "spot",
            "cost",
            "In",
            "web",
        ]
    )
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)


def _validates_or_refuses(model: type[BaseModel], data: Any) -> None:
    """Validation succeeds or raises ValidationError, which must describe itself; any other exception fails."""
    try:
        from_wire(model, data)
    except ValidationError as exc:
        if not describe_validation_error(exc).strip():
            pytest.fail(f"empty description of {exc!r}")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), JSON, max_size=8))
def test_arbitrary_json_policy_validates_or_raises_validation_error(data: dict[str, Any]) -> None:
    _validates_or_refuses(NegotiationPolicySpec, data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), JSON, max_size=8))
def test_arbitrary_json_agent_validates_or_raises_validation_error(data: dict[str, Any]) -> None:
    _validates_or_refuses(AgentSpec, data)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from([t.value for t in AgentType]), settings_block=JSON, extra=JSON)
def test_agent_with_random_settings_block_validates_or_raises(kind: str, settings_block: Any, extra: Any) -> None:
    _validates_or_refuses(AgentSpec, {"type": kind, kind: settings_block, "weight": extra})


@settings(max_examples=300, deadline=None)
@given(section=st.sampled_from(["bounds", "rules", "approval", "selector"]), value=JSON, agents=JSON)
def test_policy_with_random_sections_validates_or_raises(section: str, value: Any, agents: Any) -> None:
    _validates_or_refuses(NegotiationPolicySpec, {"agents": [{"name": "performance"}], section: value})
    _validates_or_refuses(NegotiationPolicySpec, {"agents": agents})


@settings(max_examples=300, deadline=None)
@given(
    schedule=st.text(alphabet="0123456789*/-,#LW? MONTUEFRISAJANDEC", min_size=9, max_size=30),
    zone=st.text(max_size=20) | st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Etc/GMT+5"]),
    duration=st.integers(min_value=-10, max_value=10**6),
)
def test_random_freeze_windows_validate_or_raise(schedule: str, zone: str, duration: int) -> None:
    data = window(schedule=schedule, timeZone=zone, durationMinutes=duration)
    _validates_or_refuses(NegotiationPolicySpec, data)
