"""A readable account of one Negotiation, for `accord explain` (top layer, pure formatting)."""

from __future__ import annotations

from typing import Any

from accord.models.common import from_wire
from accord.models.negotiation import NegotiationSpec


def explain(body: dict[str, Any]) -> str:
    spec = from_wire(NegotiationSpec, body["spec"])
    status = body.get("status") or {}
    meta = body.get("metadata") or {}
    w = spec.workload
    out = [
        f"Negotiation {meta.get('namespace')}/{meta.get('name')}",
        f"  workload:  {w.kind} {w.namespace}/{w.name}",
        f"  policy:    {spec.policy} (protocol {spec.protocol}, mode {spec.mode})",
        f"  decided:   {spec.decided_at:%Y-%m-%d %H:%M:%S} UTC over {spec.candidates} candidates",
        f"  phase:     {status.get('phase', '?')}" + (f" - {status['message']}" if status.get("message") else ""),
        "",
        f"Outcome: {spec.outcome.verdict.value}  "
        f"{spec.current.replicas}@{spec.current.placement} -> "
        f"{spec.outcome.target.replicas}@{spec.outcome.target.placement}"
        f"  (confidence {spec.outcome.confidence:.2f})",
        f"  {spec.outcome.reason}",
    ]
    if spec.outcome.agreed and (spec.outcome.agreed != spec.outcome.target):
        out.append(f"  the agents agreed on {spec.outcome.agreed.replicas}@{spec.outcome.agreed.placement}")
    if spec.gates:
        out += ["", "Rules:"]
        out += [f"  [{g.effect}] {g.rule}: {g.message}" for g in spec.gates]
    out += ["", "Proposals:"]
    for p in spec.proposals:
        ideal = f"{p.ideal.replicas}@{p.ideal.placement}" if p.ideal else "-"
        vetoes = [u for u in p.utilities if u.veto]
        target = next(
            (
                u
                for u in p.utilities
                if u.replicas == spec.outcome.target.replicas and u.placement == spec.outcome.target.placement
            ),
            None,
        )
        at_target = (
            "vetoed"
            if target and target.veto
            else (f"{target.utility:.2f}" if target and target.utility is not None else "?")
        )
        out.append(
            f"  {p.agent} ({p.type}) weight {p.weight:.2f} trust {p.trust:.2f}: wants {ideal}, "
            f"confidence {p.confidence:.2f}, utility of the outcome {at_target}"
        )
        out.append(f"      {p.rationale}")
        if p.dropped:
            out.append(f"      DROPPED: {p.dropped}")
        if vetoes:
            reasons = sorted({u.veto or "" for u in vetoes})
            out.append(f"      vetoed {len(vetoes)} candidate(s): " + "; ".join(reasons[:3]))
        for e in p.evidence:
            age = f", {e.age_seconds:.0f}s old" if e.age_seconds is not None else ""
            value = f" = {e.value:g}" if e.value is not None else ""
            out.append(f"      evidence {e.name}{value} from {e.source} ({e.samples} samples{age}): {e.query[:120]}")
    if spec.concessions:
        out += ["", "Concessions:"]
        out += [
            f"  {c.agent}: ideal {c.ideal_utility:.2f}, agreed {c.agreed_utility or 0:.2f}"
            f" (gave up {c.concession or 0:.2f})"
            for c in spec.concessions
        ]
    if spec.rounds:
        out += ["", f"Rounds ({len(spec.rounds)}):"]
        for r in spec.rounds[:20]:
            offers = ", ".join(f"{o.agent}:{o.replicas}@{o.placement}" for o in r.offers)
            out.append(f"  {r.round}: {offers}" + (f"  -> {r.conceded} concedes" if r.conceded else ""))
    approval = status.get("approval")
    if approval:
        out += ["", f"Approval: {approval.get('decision')} by {approval.get('user')} at {approval.get('time')}"]
    return "\n".join(out)
