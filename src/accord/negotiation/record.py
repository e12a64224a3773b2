"""Turns an engine outcome into the Negotiation record people read (negotiation layer, pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from accord.agents.base import Candidate
from accord.metrics.evidence import Evidence
from accord.models.negotiation import (
    CandidateRecord,
    ConcessionRecord,
    EvidenceRecord,
    GateRecord,
    NegotiationSpec,
    OfferRecord,
    OutcomeRecord,
    ProposalRecord,
    RoundRecord,
    UtilityRecord,
    WorkloadRef,
)
from accord.negotiation.engine import Outcome

MAX_UTILITIES = 60


def candidate_record(candidate: Candidate) -> CandidateRecord:
    return CandidateRecord(replicas=candidate.replicas, placement=candidate.placement)


def _time(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC)


def evidence_record(e: Evidence, now: float) -> EvidenceRecord:
    age = e.age(now)
    return EvidenceRecord(
        name=e.name,
        source=e.source.value,
        query=(e.query or "")[:1000] + (f" [{e.text[:300]}]" if e.text and e.source.value != "external" else ""),
        value=e.value,
        samples=e.samples,
        timestamp=_time(e.timestamp),
        age_seconds=None if age is None else round(age, 1),
    )


def build_record(
    outcome: Outcome,
    *,
    workload: WorkloadRef,
    policy: str,
    mode: str,
    now: float,
) -> NegotiationSpec:
    seats = {s.name: s for s in outcome.seats}
    proposals = []
    for p in outcome.proposals:
        seat = seats[p.agent]
        utilities = [
            UtilityRecord(
                replicas=c.replicas,
                placement=c.placement,
                utility=None if c in p.vetoes else round(p.utility(c), 4),
                veto=p.vetoes.get(c),
            )
            for c in outcome.candidates[:MAX_UTILITIES]
        ]
        proposals.append(
            ProposalRecord(
                agent=p.agent,
                type=p.agent_type.value,
                weight=round(seat.effective_weight, 4),
                trust=round(seat.trust, 4),
                ideal=None if p.ideal is None else candidate_record(p.ideal),
                confidence=round(p.confidence, 4),
                rationale=p.rationale[:2000],
                dropped=p.dropped,
                utilities=utilities,
                evidence=[evidence_record(e, now) for e in p.evidence],
            )
        )
    rounds = [
        RoundRecord(
            round=r.number,
            offers=[
                OfferRecord(
                    agent=o.agent,
                    replicas=o.candidate.replicas,
                    placement=o.candidate.placement,
                    utility=round(o.utility, 4),
                )
                for o in r.offers
            ],
            conceded=", ".join(r.conceded) or None,
        )
        for r in outcome.rounds[:100]
    ]
    return NegotiationSpec(
        workload=workload,
        policy=policy,
        protocol=outcome.protocol.value,
        mode=mode,
        current=candidate_record(outcome.current),
        candidates=len(outcome.candidates),
        proposals=proposals,
        rounds=rounds,
        concessions=[
            ConcessionRecord(
                agent=c.agent,
                ideal_utility=round(c.ideal_utility, 4),
                agreed_utility=None if c.agreed_utility is None else round(c.agreed_utility, 4),
                concession=None if c.given is None else round(c.given, 4),
            )
            for c in outcome.concessions
        ],
        gates=[GateRecord(rule=g.rule, effect=g.effect, message=g.message) for g in outcome.gates],
        outcome=OutcomeRecord(
            verdict=outcome.verdict,
            target=candidate_record(outcome.target),
            agreed=None if outcome.agreed is None else candidate_record(outcome.agreed),
            confidence=round(outcome.confidence, 4),
            reason=outcome.reason[:2000],
        ),
        decided_at=datetime.fromtimestamp(now, tz=UTC),
    )
