"""Shared building blocks of the custom resource models (models layer, the lowest).

Every model here is part of a CRD schema: field descriptions become `kubectl explain` text,
bounds become OpenAPI validation, so they are written for the person reading them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "accord.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Kubernetes object names (RFC 1123 subdomain / label).
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

Name = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
ReplicaCount = Annotated[int, Field(ge=0, le=100_000)]


class Model(BaseModel):
    """Base of every resource model: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_enum_values=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-compatible form a user would write in YAML (camelCase, no unset nulls)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


M = TypeVar("M", bound=BaseModel)


def from_wire(model: type[M], data: Any) -> M:
    """Parse what a user or the API server sent, as strictly as the CRD schema does.

    JSON mode with strict types: `true` is no integer and `"30"` no number, as for the API server,
    while strings still become enums, timestamps and URLs as JSON requires.
    """
    return model.model_validate_json(json.dumps(data, default=str), strict=True)


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(Model):
    """A status condition in the shape Kubernetes users know (metav1.Condition)."""

    type: str = Field(description="Condition type, e.g. Ready, Invalid, MetricsMissing.", max_length=316)
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="One-word CamelCase reason.", max_length=1024)
    message: str = Field(default="", description="Human-readable explanation.", max_length=32768)
    observed_generation: int | None = Field(default=None, ge=0, description="Generation the condition is about.")
    last_transition_time: datetime | None = Field(default=None, description="When the status last changed.")


class LabelSelectorRequirement(Model):
    key: str = Field(description="Label key the selector applies to.", min_length=1, max_length=316)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(description="Relation of key to values.")
    values: list[str] = Field(default_factory=list, description="Values for In and NotIn.")


class LabelSelector(Model):
    """A standard Kubernetes label selector; empty selects everything."""

    match_labels: dict[str, str] = Field(default_factory=dict, description="Labels that must all match.")
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, description="Set-based requirements, all of which must hold."
    )

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for req in self.match_expressions:
            present = req.key in labels
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
            if req.operator == "In" and (not present or labels[req.key] not in req.values):
                return False
            if req.operator == "NotIn" and present and labels[req.key] in req.values:
                return False
        return True


class SecretKeyRef(Model):
    name: Name = Field(description="Name of a Secret in the Agent's namespace.")
    key: str = Field(default="secret", description="Key within the Secret.", min_length=1, max_length=253)


class Toleration(Model):
    key: str | None = Field(default=None, description="Taint key the toleration applies to.")
    operator: Literal["Exists", "Equal"] | None = Field(default=None, description="Exists or Equal.")
    value: str | None = Field(default=None, description="Taint value for Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all."
    )
    toleration_seconds: int | None = Field(
        default=None, ge=0, le=10**9, description="How long a NoExecute taint is tolerated."
    )
