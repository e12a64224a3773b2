"""The compliance agent: data residency, change-freeze windows, an availability commitment
(agents layer, pure).

Pools whose nodes lie outside the allowed regions or zones are vetoed (a pool with no nodes
cannot be shown compliant, so it is vetoed too); while a freeze window is open every change is
vetoed; fewer replicas than the commitment are vetoed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from accord.agents.base import Agent, Board, Explanation, Pool, Scores, Situation
from accord.metrics.evidence import Evidence, EvidenceSet, Source
from accord.models.agent import AgentType
from accord.models.schedule import FreezeWindow
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

    def propose_many(self, situations: Sequence[Situation], board: Board, evidence: Sequence[EvidenceSet]) -> Scores:
        s = self.settings
        count = len(situations)
        present = np.zeros((count, len(board.pools)), dtype=np.bool_)
        rows, columns = np.nonzero(board.valid)
        present[rows, board.pool[rows, columns]] = True
        # Open freeze windows depend on the time alone, residency on the pool alone: each asked once.
        windows_at: dict[float, list[FreezeWindow]] = {}
        residency: dict[tuple[str, int], str | None] = {}
        open_at: list[list[FreezeWindow]] = []
        outside = np.zeros((count, len(board.pools)), dtype=np.bool_)
        problems: dict[tuple[int, int], str] = {}
        for i, sit in enumerate(situations):
            windows = windows_at.get(sit.now)
            if windows is None:
                moment = datetime.fromtimestamp(sit.now, tz=UTC)
                windows = windows_at[sit.now] = [w for w in s.freeze_windows if w.active_at(moment)]
            open_at.append(windows)
            for code in np.flatnonzero(present[i]).tolist():
                name = board.pools[code]
                key = (name, id(sit.pools.get(name)))
                if key not in residency:
                    residency[key] = self.residency_problem(sit, name)
                found = residency[key]
                if found:
                    problems[i, code] = found
                    outside[i, code] = True
        frozen = np.array([bool(w) for w in open_at], dtype=np.bool_).reshape(count)
        current = board.same_pool & (board.replicas == board.current_replicas[:, None])
        vetoed = board.valid & (
            board.by_pool(outside) | (board.replicas < s.min_replicas) | (frozen[:, None] & ~current)
        )
        utilities = np.where(board.valid & ~vetoed, 1.0, np.nan)

        def explain(row: int) -> Explanation:
            sit = situations[row]
            parts = []
            if open_at[row]:
                parts.append(f"freeze window {open_at[row][0].name!r} open: only the current state is allowed")
            if s.allowed_regions or s.allowed_zones:
                parts.append(f"residency {'/'.join(s.allowed_regions + s.allowed_zones)}")
            if s.min_replicas:
                parts.append(f"availability floor {s.min_replicas}")
            parts.append(f"{int(np.count_nonzero(vetoed[row]))} of {int(board.counts[row])} candidates vetoed")
            named = sorted(board.pools[c] for c in np.flatnonzero(present[row]).tolist())
            pools = [sit.pools[p] for p in named if p in sit.pools]
            used = (self._clock(sit.now), self._locations(pools, sit.now)) if pools else (self._clock(sit.now),)
            return Explanation("; ".join(parts), used)

        def why(row: int, column: int) -> str:
            reasons: list[str] = []
            found = problems.get((row, int(board.pool[row, column])))
            if found:
                reasons.append(found)
            if board.replicas[row, column] < s.min_replicas:
                reasons.append(f"availability commitment: at least {s.min_replicas} replicas")
            if open_at[row] and not current[row, column]:
                reasons.append(f"change freeze {open_at[row][0].name!r} is open")
            return "; ".join(reasons)

        return Scores(
            utilities=utilities,
            vetoed=vetoed,
            confidence=np.ones(count),
            explain=explain,
            why=why,
            predict=lambda row: None,
            metrics_missing=np.zeros(count, dtype=np.bool_),
            dropped=[None] * count,
        )

    def _clock(self, now: float) -> Evidence:
        """The clock as evidence, with the freeze windows it was read against."""
        s = self.settings
        moment = datetime.fromtimestamp(now, tz=UTC)
        return Evidence(
            name="clock",
            source=Source.CLOCK,
            query=", ".join(f"{w.name}: {w.schedule} {w.time_zone} {w.duration_minutes}m" for w in s.freeze_windows),
            text=moment.strftime("%Y-%m-%d %H:%M UTC"),
            timestamp=now,
            samples=1,
        )

    @staticmethod
    def _locations(pools: Sequence[Pool], now: float) -> Evidence:
        return Evidence(
            name="pool_locations",
            source=Source.NODES,
            query="node labels topology.kubernetes.io/region, topology.kubernetes.io/zone",
            text="; ".join(
                f"{p.name}: {','.join(sorted(p.regions)) or '?'} / {','.join(sorted(p.zones)) or '?'}" for p in pools
            ),
            timestamp=now,
            samples=sum(p.nodes for p in pools),
        )
