"""Typed settings of the built-in agents (models layer).

They live here rather than beside each agent because the Agent CRD schema is generated from
them and the models layer may not import the agents layer; each agent module re-exports its own.
"""

from __future__ import annotations

from pydantic import Field, HttpUrl, field_validator, model_validator

from accord.models.common import Fraction, LabelSelector, Model, ReplicaCount, SecretKeyRef
from accord.models.schedule import FreezeWindow


class PerformanceSettings(Model):
    """Keeps the workload inside its utilisation (and optionally latency) target."""

    target_utilisation: float = Field(
        default=0.7, gt=0.05, le=1.0, description="Utilisation per pod the agent aims for (0-1]."
    )
    capacity_per_pod: float = Field(
        default=100.0,
        gt=0,
        le=1e9,
        description="Requests per second one ready pod serves at full utilisation.",
    )
    slo_utilisation: float | None = Field(
        default=None,
        gt=0.05,
        le=1.0,
        description="Utilisation per ready pod above which the workload misses its objective. The demand "
        "observed now sets a floor at this utilisation that no decision goes below, whatever the agent's "
        "weight or trust (only a hard veto can, and then a person must approve); while observed "
        "utilisation is above it, no decision goes below the current replicas either. Default: "
        "targetUtilisation x 1.15, the ceiling the agent plans to at most.",
    )
    latency_target_seconds: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="Optional latency objective; exceeding it asks for more pods.",
    )
    startup_seconds: int = Field(
        default=120,
        ge=0,
        le=3600,
        description="Time from asking for a pod until it serves: the forecast horizon.",
    )
    history_seconds: int = Field(
        default=3600,
        ge=60,
        le=14 * 86400,
        description="How much recent demand history the trend is fitted on.",
    )
    seasonality: bool = Field(
        default=True, description="Use daily seasonality when at least a day of history is available."
    )
    stale_after_seconds: int = Field(
        default=180, ge=1, le=86400, description="Evidence older than this lowers confidence to zero."
    )
    demand_query: str | None = Field(
        default=None,
        max_length=4096,
        description="PromQL for requests per second of the workload; $namespace and $workload are substituted.",
    )
    latency_query: str | None = Field(
        default=None, max_length=4096, description="PromQL for the workload's latency in seconds."
    )

    @model_validator(mode="after")
    def _slo_above_target(self) -> PerformanceSettings:
        if self.slo_utilisation is not None and self.slo_utilisation < self.target_utilisation:
            raise ValueError(
                f"sloUtilisation ({self.slo_utilisation}) must not be below targetUtilisation "
                f"({self.target_utilisation}): the agent would aim to miss its own objective"
            )
        return self


class CostSettings(Model):
    """Prices every candidate and prefers the cheaper; honours a budget cap."""

    default_price_per_pod_hour: float = Field(
        default=0.05, ge=0, le=1e6, description="Price of one pod-hour where no placement names a price."
    )
    budget_per_hour: float | None = Field(
        default=None,
        ge=0,
        le=1e9,
        description="Spend per hour above which candidates are vetoed (or scored 0).",
    )
    spot_interruption_penalty: Fraction = Field(
        default=0.1, description="Fraction added to a spot pool's price for the risk of interruption."
    )
    price_query: str | None = Field(
        default=None, max_length=4096, description="PromQL returning a price per pod-hour labelled by pool."
    )


class SecuritySettings(Model):
    """Keeps sensitive workloads on hardened pools and holds a floor while a security signal is active."""

    sensitive_selector: LabelSelector = Field(
        default_factory=lambda: LabelSelector(match_labels={"accord.dev/sensitivity": "high"}),
        description="Workloads whose labels match are treated as sensitive.",
    )
    required_node_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Labels every node of a pool must carry to host a sensitive workload.",
    )
    forbid_spot_for_sensitive: bool = Field(default=True, description="Veto spot pools for sensitive workloads.")
    signal_query: str | None = Field(
        default=None, max_length=4096, description="PromQL that is > 0 while a security signal is active."
    )
    min_replicas_during_signal: ReplicaCount = Field(
        default=3, description="Replica floor held while the signal is active."
    )
    min_zones_during_signal: int = Field(
        default=2, ge=1, le=64, description="Zones a pool must span while the signal is active."
    )


class ComplianceSettings(Model):
    """Data residency, change-freeze windows and an availability commitment."""

    allowed_regions: list[str] = Field(
        default_factory=list, description="Regions a pool's nodes may be in; empty allows all."
    )
    allowed_zones: list[str] = Field(default_factory=list, description="Zones allowed; empty allows all.")
    freeze_windows: list[FreezeWindow] = Field(
        default_factory=list, description="Windows during which every change is vetoed."
    )
    min_replicas: ReplicaCount = Field(default=0, description="Availability commitment: never fewer replicas.")


class ExternalSettings(Model):
    """An agent served over HTTPS; answers are signed with HMAC-SHA256."""

    url: HttpUrl = Field(description="HTTPS endpoint that receives candidates and evidence as JSON.")
    secret_ref: SecretKeyRef = Field(description="Secret holding the shared HMAC key.")
    timeout_seconds: float = Field(default=2.0, gt=0, le=60, description="Answers later than this are dropped.")

    @field_validator("url")
    @classmethod
    def _https(cls, value: HttpUrl) -> HttpUrl:
        if value.scheme != "https":
            raise ValueError("must be an https:// URL: answers are signed, requests are not sent in clear")
        return value
