"""The cost agent: prices every candidate and prefers the cheaper, within a budget (agents layer, pure).

A candidate costs replicas times the per-pod-hour price of its pool: the pool's price from the
policy, or a fresher one from Prometheus when a price query is set, plus a risk premium on spot
capacity. Utility is the cheapest acceptable spend over the candidate's (a ratio: halving the spend
counts the same at any scale). Above the budget a candidate is vetoed (or scored 0 when the agent
may not veto).
"""

from __future__ import annotations

from collections.abc import Sequence

from accord.agents.base import (
    Agent,
    Candidate,
    EvidenceRequest,
    Prediction,
    Proposal,
    QueryKind,
    Situation,
    freshness,
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

    def propose(self, situation: Situation, candidates: Sequence[Candidate], evidence: EvidenceSet) -> Proposal:
        prices: dict[str, float] = {}
        used: list[Evidence] = []
        for pool in sorted({c.placement for c in candidates}):
            prices[pool], source = self.price(situation, pool, evidence)
            if source is not None:
                used.append(source)
        used.append(
            Evidence(
                name="prices",
                source=Source.POLICY,
                query="spec.placements[].pricePerPodHour",
                text=", ".join(f"{p}={v:.4f}/pod-hour" for p, v in prices.items()),
                timestamp=situation.now,
                samples=len(prices),
            )
        )
        spend = {c: c.replicas * prices[c.placement] for c in candidates}
        budget = self.settings.budget_per_hour
        vetoes = {
            c: f"spend {v:.2f}/h exceeds the budget of {budget:.2f}/h"
            for c, v in spend.items()
            if budget is not None and v > budget + 1e-9
        }
        allowed = {c: v for c, v in spend.items() if c not in vetoes}
        low = min(allowed.values(), default=0.0)
        # The cheapest spend over this one's, each with one more of the cheapest pods (so that zero
        # spend is scored too): a ratio, so that the agent's say in a Nash product is the same for
        # every doubling of spend, whatever the other candidates cost.
        unit = min(prices.values(), default=0.0) or 1e-9
        utilities = {c: (low + unit) / (v + unit) for c, v in allowed.items()}
        confidence = 1.0
        live = [e for e in used if e.source is Source.PROMETHEUS]
        if live:
            confidence = min(freshness(e.age(situation.now), PRICE_STALE_SECONDS) for e in live)
        current_spend = spend.get(
            situation.current,
            situation.current.replicas
            * prices.get(situation.current.placement, self.settings.default_price_per_pod_hour),
        )
        cheapest = min(allowed, key=lambda c: (allowed[c], c), default=None)
        rationale = (
            f"current spend {current_spend:.2f}/h; cheapest acceptable is {cheapest} at {allowed[cheapest]:.2f}/h"
            if cheapest is not None
            else "every candidate is over budget"
        )
        if budget is not None:
            rationale += f"; budget {budget:.2f}/h"
        return self._proposal(
            utilities=utilities,
            vetoes=vetoes,
            confidence=confidence,
            rationale=rationale,
            evidence=used,
            current=situation.current,
            prediction=Prediction(
                quantity=f"price_per_pod_hour:{situation.current.placement}",
                value=prices.get(situation.current.placement, self.settings.default_price_per_pod_hour),
                horizon_seconds=situation.interval_seconds,
            )
            if live
            else None,
        )
