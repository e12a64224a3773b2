"""The security agent: hardened pools for sensitive workloads, a floor while a signal is active
(agents layer, pure).

A workload is sensitive when its labels match the agent's selector. Sensitive workloads may only
run on pools whose every node carries the required labels, and not on spot capacity if so set.
While the security signal (a Prometheus expression > 0) is active, the agent holds a replica and
zone-spread floor. Otherwise it mildly prefers staying where the workload is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from accord.agents.base import Agent, Board, EvidenceRequest, Explanation, QueryKind, Scores, Situation, freshness
from accord.metrics.evidence import EvidenceSet
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

    def propose_many(self, situations: Sequence[Situation], board: Board, evidence: Sequence[EvidenceSet]) -> Scores:
        s = self.settings
        count = len(situations)
        sensitive: list[bool] = []
        signal: list[bool] = []
        confidence = np.ones(count)
        for i, (sit, ev) in enumerate(zip(situations, evidence, strict=True)):
            sensitive.append(s.sensitive_selector.matches(sit.labels))
            signal_evidence = ev.get("security_signal")
            signal.append(
                bool(signal_evidence is not None and signal_evidence.value is not None and signal_evidence.value > 0)
            )
            if s.signal_query is None:
                continue
            if signal_evidence is None or signal_evidence.value is None:
                confidence[i] = 0.5  # the signal is configured but unknown: assume quiet, say so
            else:
                confidence[i] = max(0.5, freshness(signal_evidence.age(sit.now), SIGNAL_STALE_SECONDS))
        # Problems of each pool, the same for every workload alike in sensitivity, signal and the pool seen.
        known: dict[tuple[str, int, bool, bool], list[str]] = {}

        def problems(row: int, code: int) -> list[str]:
            sit = situations[row]
            pool = sit.pools.get(board.pools[code])
            key = (board.pools[code], id(pool), sensitive[row], signal[row])
            found = known.get(key)
            if found is None:
                found = known[key] = self.pool_problems(
                    sit, board.pools[code], sensitive=sensitive[row], signal=signal[row]
                )
            return found

        barred = np.zeros((count, len(board.pools)), dtype=np.bool_)
        rows, columns = np.nonzero(board.valid)
        barred[rows, board.pool[rows, columns]] = True  # the pools each workload has candidates on, for now
        seen, codes = np.nonzero(barred)
        for i, code in zip(seen.tolist(), codes.tolist(), strict=True):
            barred[i, code] = bool(problems(i, code))
        flagged = np.array(signal, dtype=np.bool_).reshape(count)
        floor = flagged[:, None] & (board.replicas < s.min_replicas_during_signal)
        vetoed = board.valid & (board.by_pool(barred) | floor)
        utilities = np.where(vetoed | ~board.valid, np.nan, np.where(board.same_pool, 1.0, 1.0 - MOVE_PENALTY))

        def explain(row: int) -> Explanation:
            parts = [f"workload is {'sensitive' if sensitive[row] else 'not sensitive'}"]
            if s.signal_query is not None:
                parts.append("security signal ACTIVE" if signal[row] else "no security signal")
            vetoes = int(np.count_nonzero(vetoed[row]))
            if vetoes:
                parts.append(f"{vetoes} of {int(board.counts[row])} candidates vetoed")
            signal_evidence = evidence[row].get("security_signal")
            return Explanation("; ".join(parts), (signal_evidence,) if signal_evidence is not None else ())

        def why(row: int, column: int) -> str:
            reasons = list(problems(row, int(board.pool[row, column])))
            if signal[row] and board.replicas[row, column] < s.min_replicas_during_signal:
                reasons.append(f"security signal active: at least {s.min_replicas_during_signal} replicas are held")
            return "; ".join(reasons)

        return Scores(
            utilities=utilities,
            vetoed=vetoed,
            confidence=confidence,
            explain=explain,
            why=why,
            predict=lambda row: None,
            metrics_missing=np.zeros(count, dtype=np.bool_),
            dropped=[None] * count,
        )
