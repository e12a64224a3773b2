"""Evidence with provenance: what an agent is allowed to see (metrics layer, pure values).

Every value carries where it came from (source and query), when its newest sample was taken
and how many samples it rests on, so agents can compute confidence and records can show it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Source(StrEnum):
    PROMETHEUS = "prometheus"
    NODES = "nodes"
    WORKLOAD = "workload"
    POLICY = "policy"
    CLOCK = "clock"
    EXTERNAL = "external"
    TRACE = "trace"


@dataclass(frozen=True, slots=True)
class Evidence:
    """One named piece of evidence. `series` holds (unix seconds, value) pairs, oldest first."""

    name: str
    source: Source
    query: str = ""
    value: float | None = None
    series: tuple[tuple[float, float], ...] = ()
    timestamp: float | None = None
    samples: int = 0
    text: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def age(self, now: float) -> float | None:
        """Seconds since the newest sample, or None when there is no sample."""
        return None if self.timestamp is None else max(0.0, now - self.timestamp)

    @property
    def missing(self) -> bool:
        return self.value is None and not self.series and self.text is None

    @staticmethod
    def from_series(name: str, source: Source, query: str, series: tuple[tuple[float, float], ...]) -> Evidence:
        return Evidence(
            name=name,
            source=source,
            query=query,
            value=series[-1][1] if series else None,
            series=series,
            timestamp=series[-1][0] if series else None,
            samples=len(series),
        )

    @staticmethod
    def absent(name: str, source: Source, query: str = "", reason: str = "no data") -> Evidence:
        return Evidence(name=name, source=source, query=query, labels={"reason": reason})


EvidenceSet = Mapping[str, Evidence]
