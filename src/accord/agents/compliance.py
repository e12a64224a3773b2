"""The compliance agent: data residency, change-freeze windows, an availability commitment
(agents layer, pure).

Pools whose nodes lie outside the allowed regions or zones are vetoed (a pool with no nodes
cannot be shown compliant, so it is vetoed too); while a freeze window is open every change is
vetoed; fewer replicas than the commitment are vetoed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from accord.agents.base import Agent, Candidate, Proposal, Situation
from accord.metrics.evidence import Evidence, EvidenceSet, Source
from accord.models.agent import AgentType
from accord.models.settings import ComplianceSettings

__all__ = ["ComplianceAgent", "ComplianceSettings"]


class ComplianceAgent(Agent[ComplianceSettings]):
    type = AgentType.COMPLIANCE

    def residency_problem(self, situation: Situation, pool_name: str) -> str | None:
        s = self.settings
        pool = situation.pools.get(pool_name)
        if s.allowed_regions:
            regions = pool.regions if pool is not None else frozenset()
            if not regions:
                return f"pool {pool_name} has no nodes with a known region: residency cannot be shown"
            outside = sorted(regions - set(s.allowed_regions))
            if outside:
                return f"data residency: pool {pool_name} has nodes in {', '.join(outside)}"
        if s.allowed_zones:
            zones = pool.zones if pool is not None else frozenset()
            if not zones:
                return f"pool {pool_name} has no nodes with a known zone: residency cannot be shown"
            outside = sorted(zones - set(s.allowed_zones))
            if outside:
                return f"data residency: pool {pool_name} has nodes in zones {', '.join(outside)}"
        return None

    def propose(self, situation: Situation, candidates: Sequence[Candidate], evidence: EvidenceSet) -> Proposal:
        s = self.settings
        now = datetime.fromtimestamp(situation.now, tz=UTC)
        open_windows = [w for w in s.freeze_windows if w.active_at(now)]
        residency = {pool: self.residency_problem(situation, pool) for pool in {c.placement for c in candidates}}
        vetoes: dict[Candidate, str] = {}
        for c in candidates:
            reasons: list[str] = []
            if residency[c.placement]:
                reasons.append(residency[c.placement] or "")
            if c.replicas < s.min_replicas:
                reasons.append(f"availability commitment: at least {s.min_replicas} replicas")
            if open_windows and c != situation.current:
                reasons.append(f"change freeze {open_windows[0].name!r} is open")
            if reasons:
                vetoes[c] = "; ".join(reasons)
        utilities = {c: 1.0 for c in candidates if c not in vetoes}
        used = [
            Evidence(
                name="clock",
                source=Source.CLOCK,
                query=", ".join(
                    f"{w.name}: {w.schedule} {w.time_zone} {w.duration_minutes}m" for w in s.freeze_windows
                ),
                text=now.strftime("%Y-%m-%d %H:%M UTC"),
                timestamp=situation.now,
                samples=1,
            )
        ]
        pools = [situation.pools[p] for p in sorted(residency) if p in situation.pools]
        if pools:
            used.append(
                Evidence(
                    name="pool_locations",
                    source=Source.NODES,
                    query="node labels topology.kubernetes.io/region, topology.kubernetes.io/zone",
                    text="; ".join(
                        f"{p.name}: {','.join(sorted(p.regions)) or '?'} / {','.join(sorted(p.zones)) or '?'}"
                        for p in pools
                    ),
                    timestamp=situation.now,
                    samples=sum(p.nodes for p in pools),
                )
            )
        parts = []
        if open_windows:
            parts.append(f"freeze window {open_windows[0].name!r} open: only the current state is allowed")
        if s.allowed_regions or s.allowed_zones:
            parts.append(f"residency {'/'.join(s.allowed_regions + s.allowed_zones)}")
        if s.min_replicas:
            parts.append(f"availability floor {s.min_replicas}")
        parts.append(f"{len(vetoes)} of {len(candidates)} candidates vetoed")
        return self._proposal(
            utilities=utilities,
            vetoes=vetoes,
            confidence=1.0,
            rationale="; ".join(parts),
            evidence=used,
            current=situation.current,
        )
