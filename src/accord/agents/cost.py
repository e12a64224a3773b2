"""The cost agent: prices every candidate and prefers the cheaper, within a budget (agents layer, pure).

A candidate costs replicas times the per-pod-hour price of its pool: the pool's price from the
policy, or a fresher one from Prometheus when a price query is set, plus a risk premium on spot
capacity. Utility is the cheapest acceptable spend over the candidate's (a ratio: halving the spend
counts the same at any scale). Above the budget a candidate is vetoed (or scored 0 when the agent
may not veto).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from accord.agents.base import (
    Agent,
    Board,
    EvidenceRequest,
    Explanation,
    Flags,
    Floats,
    Ints,
    Prediction,
    QueryKind,
    Scores,
    Situation,
    first,
    freshness,
    top,
)
from accord.metrics.evidence import Evidence, EvidenceSet, Source
from accord.models.agent import AgentType
from accord.models.settings import CostSettings

__all__ = ["CostAgent", "CostSettings"]

PRICE_STALE_SECONDS = 3600.0


class CostAgent(Agent[CostSettings]):
    type = AgentType.COST

    def evidence_needed(self) -> tuple[EvidenceRequest, ...]:
        if not self.settings.price_query:
            return ()
        return (EvidenceRequest(name="price", query=self.settings.price_query, kind=QueryKind.INSTANT),)

    def price(self, situation: Situation, pool_name: str, evidence: EvidenceSet) -> tuple[float, Evidence | None]:
        """Price per pod-hour of a pool, risk premium included, and the evidence it came from."""
        live = evidence.get(f"price:{pool_name}")
        pool = situation.pools.get(pool_name)
        if live is not None and live.value is not None:
            base, used = live.value, live
        elif pool is not None and pool.price_per_pod_hour is not None:
            base, used = pool.price_per_pod_hour, None
        else:
            base, used = self.settings.default_price_per_pod_hour, None
        if pool is not None and pool.capacity_type == "spot":
            base *= 1.0 + self.settings.spot_interruption_penalty
        return base, used

    def propose_many(self, situations: Sequence[Situation], board: Board, evidence: Sequence[EvidenceSet]) -> Scores:
        count = len(situations)
        budget = self.settings.budget_per_hour
        present = np.zeros((count, len(board.pools)), dtype=np.bool_)
        rows, codes = np.nonzero(board.valid)
        present[rows, board.pool[rows, codes]] = True
        named = sorted(range(len(board.pools)), key=board.pools.__getitem__)
        keys = [f"price:{board.pools[p]}" for p in range(len(board.pools))]
        prices = np.full((count, len(board.pools)), np.nan)
        sources: list[list[Evidence]] = []
        # A price depends on the pool and its live price alone: asked once per pair seen.
        known: dict[tuple[int, int, int], tuple[float, Evidence | None]] = {}
        for i, (sit, ev) in enumerate(zip(situations, evidence, strict=True)):
            live: list[Evidence] = []
            for p in named:
                if not present[i, p]:
                    continue
                name = board.pools[p]
                key = (p, id(sit.pools.get(name)), id(ev.get(keys[p])))
                found = known.get(key)
                if found is None:
                    found = known[key] = self.price(sit, name, ev)
                prices[i, p] = found[0]
                if found[1] is not None:
                    live.append(found[1])
            sources.append(live)
        spend = board.replicas * board.by_pool(prices)
        vetoed = board.valid & (spend > budget + 1e-9) if budget is not None else np.zeros(spend.shape, dtype=np.bool_)
        allowed = board.valid & ~vetoed
        low = np.where(allowed, spend, np.inf).min(axis=1, initial=np.inf)
        low = np.where(np.isinf(low), 0.0, low)
        # The cheapest spend over this one's, each with one more of the cheapest pods (so that zero
        # spend is scored too): a ratio, so that the agent's say in a Nash product is the same for
        # every doubling of spend, whatever the other candidates cost.
        unit = np.where(present, prices, np.inf).min(axis=1, initial=np.inf)
        unit = np.where(np.isinf(unit) | (unit == 0), 1e-9, unit)
        utilities = np.where(allowed, (low + unit)[:, None] / (spend + unit[:, None]), np.nan)
        # Prices read from Prometheus age and can be checked; a price from elsewhere is taken as given.
        measured = [[e for e in found if e.source is Source.PROMETHEUS] for found in sources]
        confidence = np.ones(count)
        for i, live in enumerate(measured):
            if live:
                confidence[i] = min(freshness(e.age(situations[i].now), PRICE_STALE_SECONDS) for e in live)
        cheapest = self._cheapest(board, spend, allowed)

        def explain(row: int) -> Explanation:
            sit = situations[row]
            shown = [(board.pools[p], float(prices[row, p])) for p in named if present[row, p]]
            listed = Evidence(
                name="prices",
                source=Source.POLICY,
                query="spec.placements[].pricePerPodHour",
                text=", ".join(f"{p}={v:.4f}/pod-hour" for p, v in shown),
                timestamp=sit.now,
                samples=len(shown),
            )
            own = int(board.current_pool[row])
            price = float(prices[row, own]) if present[row, own] else self.settings.default_price_per_pod_hour
            column = int(cheapest[row])
            why = (
                f"current spend {sit.current.replicas * price:.2f}/h; cheapest acceptable is "
                f"{board.candidate(row, column)} at {float(spend[row, column]):.2f}/h"
                if column >= 0
                else "every candidate is over budget"
            )
            if budget is not None:
                why += f"; budget {budget:.2f}/h"
            return Explanation(why, (*sources[row], listed), predict(row))

        def predict(row: int) -> Prediction | None:
            if not measured[row]:
                return None
            sit = situations[row]
            own = int(board.current_pool[row])
            price = float(prices[row, own]) if present[row, own] else self.settings.default_price_per_pod_hour
            return Prediction(f"price_per_pod_hour:{sit.current.placement}", price, sit.interval_seconds)

        def why_vetoed(row: int, column: int) -> str:
            return f"spend {float(spend[row, column]):.2f}/h exceeds the budget of {budget or 0.0:.2f}/h"

        return Scores(
            utilities=utilities,
            vetoed=vetoed,
            confidence=confidence,
            explain=explain,
            why=why_vetoed,
            predict=predict,
            metrics_missing=np.zeros(count, dtype=np.bool_),
            dropped=[None] * count,
        )

    @staticmethod
    def _cheapest(board: Board, spend: Floats, allowed: Flags) -> Ints:
        """Each row's allowed column of least spend (then fewer replicas, then pool name); -1 if none."""
        rank = np.argsort(np.argsort(np.array(board.pools, dtype=object)))  # each pool's place by name
        return first(top(-rank[board.pool], top(-board.replicas, top(-spend, allowed))))
