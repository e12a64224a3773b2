"""The security agent: hardened pools for sensitive workloads, a floor while a signal is active
(agents layer, pure).

A workload is sensitive when its labels match the agent's selector. Sensitive workloads may only
run on pools whose every node carries the required labels, and not on spot capacity if so set.
While the security signal (a Prometheus expression > 0) is active, the agent holds a replica and
zone-spread floor. Otherwise it mildly prefers staying where the workload is.
"""

from __future__ import annotations

from collections.abc import Sequence

from accord.agents.base import Agent, Candidate, EvidenceRequest, Proposal, QueryKind, Situation, freshness
from accord.metrics.evidence import Evidence, EvidenceSet
from accord.models.agent import AgentType
from accord.models.settings import SecuritySettings

__all__ = ["SecurityAgent", "SecuritySettings"]

SIGNAL_STALE_SECONDS = 300.0
MOVE_PENALTY = 0.1


class SecurityAgent(Agent[SecuritySettings]):
    type = AgentType.SECURITY

    def evidence_needed(self) -> tuple[EvidenceRequest, ...]:
        if not self.settings.signal_query:
            return ()
        return (EvidenceRequest(name="security_signal", query=self.settings.signal_query, kind=QueryKind.INSTANT),)

    def pool_problems(self, situation: Situation, pool_name: str, *, sensitive: bool, signal: bool) -> list[str]:
        s = self.settings
        pool = situation.pools.get(pool_name)
        problems: list[str] = []
        if sensitive:
            labels = pool.node_labels if pool is not None else {}
            missing = [f"{k}={v}" for k, v in sorted(s.required_node_labels.items()) if labels.get(k) != v]
            if missing:
                problems.append(
                    f"pool {pool_name} lacks node labels {', '.join(missing)} required for sensitive workloads"
                )
            if s.forbid_spot_for_sensitive and pool is not None and pool.capacity_type == "spot":
                problems.append(f"pool {pool_name} is spot capacity, not allowed for sensitive workloads")
        if signal:
            zones = len(pool.zones) if pool is not None else 0
            if zones < s.min_zones_during_signal:
                problems.append(
                    f"security signal active: pool {pool_name} spans {zones} zone(s), "
                    f"{s.min_zones_during_signal} required"
                )
        return problems

    def propose(self, situation: Situation, candidates: Sequence[Candidate], evidence: EvidenceSet) -> Proposal:
        s = self.settings
        sensitive = s.sensitive_selector.matches(dict(situation.labels))
        signal_evidence = evidence.get("security_signal")
        signal = bool(signal_evidence is not None and signal_evidence.value is not None and signal_evidence.value > 0)
        used: list[Evidence] = [signal_evidence] if signal_evidence is not None else []
        if s.signal_query is None:
            confidence = 1.0
        elif signal_evidence is None or signal_evidence.value is None:
            confidence = 0.5  # the signal is configured but unknown: assume quiet, say so
        else:
            confidence = max(0.5, freshness(signal_evidence.age(situation.now), SIGNAL_STALE_SECONDS))
        pool_problems = {
            pool: self.pool_problems(situation, pool, sensitive=sensitive, signal=signal)
            for pool in {c.placement for c in candidates}
        }
        vetoes: dict[Candidate, str] = {}
        utilities: dict[Candidate, float] = {}
        for c in candidates:
            reasons = list(pool_problems[c.placement])
            if signal and c.replicas < s.min_replicas_during_signal:
                reasons.append(f"security signal active: at least {s.min_replicas_during_signal} replicas are held")
            if reasons:
                vetoes[c] = "; ".join(reasons)
            else:
                utilities[c] = 1.0 if c.placement == situation.current.placement else 1.0 - MOVE_PENALTY
        parts = [f"workload is {'sensitive' if sensitive else 'not sensitive'}"]
        if s.signal_query is not None:
            parts.append("security signal ACTIVE" if signal else "no security signal")
        if vetoes:
            parts.append(f"{len(vetoes)} of {len(candidates)} candidates vetoed")
        return self._proposal(
            utilities=utilities,
            vetoes=vetoes,
            confidence=confidence,
            rationale="; ".join(parts),
            evidence=used,
            current=situation.current,
        )
