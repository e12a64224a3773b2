"""The external agent: a negotiator served over HTTPS, speaking signed JSON (agents layer, pure).

The caller POSTs `request_body(...)` to the agent's URL with the `X-Accord-Signature` header and
hands the answer back as evidence named `response` (body as text; labels `signature`, `status`,
and the request's `nonce`, `sent` and `received` times). This module only builds the request and
judges the answer: an unsigned, badly signed, replayed, stale, late or malformed answer is
dropped with its reason, so it lowers nothing but this agent's own say.

Request: a JSON object with the workload, the candidates and the shared evidence, plus a fresh
random `nonce` (hex) and the `timestamp` (unix seconds) it was sent at, signed as
`X-Accord-Signature: sha256=<hex HMAC-SHA256 of the body with the shared secret>`.

Answer format::

    {"nonce": "<the request's nonce>", "timestamp": 1700000000.5,
     "utilities": [{"replicas": 3, "placement": "default", "utility": 0.8},
                   {"replicas": 4, "placement": "default", "veto": "reason"}],
     "confidence": 0.9, "rationale": "why"}

signed the same way over the exact bytes of the answer body. Because the signed body carries the
request's nonce, a recorded answer replayed to another request does not verify; its `timestamp`
must lie within `MAX_SKEW_SECONDS` of the exchange. The body is at most `MAX_ANSWER_BYTES` and
must be UTF-8.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from accord.agents.base import Agent, Candidate, Proposal, Situation
from accord.metrics.evidence import EvidenceSet
from accord.models.agent import AgentType
from accord.models.settings import ExternalSettings

__all__ = ["MAX_ANSWER_BYTES", "SIGNATURE_HEADER", "ExternalAgent", "ExternalSettings", "host_allowed", "sign"]

SIGNATURE_HEADER = "X-Accord-Signature"
MAX_ANSWER_BYTES = 1024 * 1024  # an answer lists each candidate once: far below this
MAX_SKEW_SECONDS = 30.0  # clocks of the operator and the agent may differ this much


def sign(body: bytes, secret: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(body: bytes, signature: object, secret: bytes) -> bool:
    """A signature is only worth something with a secret: an empty key is one anyone can use."""
    if not secret or not isinstance(signature, str):
        return False
    return hmac.compare_digest(sign(body, secret).encode(), signature.strip().encode("utf-8", "replace"))


def host_allowed(host: str | None, allowed: Sequence[str]) -> bool:
    """Whether an agent's endpoint host is in the operator's allowlist (empty: every host).

    An entry is a host name (`agents.example.com`, matched exactly, case aside) or `*.` and a
    domain (`*.example.com`: any name under it, not the domain itself)."""
    if not allowed:
        return True
    if not host:
        return False
    host = host.lower().rstrip(".")
    for entry in allowed:
        entry = entry.lower().rstrip(".")
        if entry.startswith("*.") and host.endswith(entry[1:]) and len(host) > len(entry) - 1:
            return True
        if host == entry:
            return True
    return False


class MalformedAnswerError(ValueError):
    pass


class ExternalAgent(Agent[ExternalSettings]):
    type = AgentType.EXTERNAL

    def __init__(self, name: str, settings: ExternalSettings, *, secret: bytes = b"") -> None:
        super().__init__(name, settings)
        self._secret = secret

    def request_body(
        self,
        situation: Situation,
        candidates: Sequence[Candidate],
        evidence: EvidenceSet,
        *,
        nonce: str,
        timestamp: float,
    ) -> bytes:
        """The JSON the caller POSTs: the workload, the candidates, the shared evidence, and the
        nonce and send time the answer must match (the caller draws the nonce: this stays pure)."""
        payload = {
            "nonce": nonce,
            "timestamp": timestamp,
            "workload": {"kind": situation.kind, "namespace": situation.namespace, "name": situation.name},
            "labels": dict(situation.labels),
            "current": {"replicas": situation.current.replicas, "placement": situation.current.placement},
            "readyReplicas": situation.ready_replicas,
            "time": situation.now,
            "candidates": [{"replicas": c.replicas, "placement": c.placement} for c in candidates],
            "evidence": {
                name: {
                    "source": e.source.value,
                    "value": e.value,
                    "timestamp": e.timestamp,
                    "samples": e.samples,
                }
                for name, e in sorted(evidence.items())
                if name != "response"
            },
        }
        return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()

    def signature(self, body: bytes) -> str:
        return sign(body, self._secret)

    def propose(self, situation: Situation, candidates: Sequence[Candidate], evidence: EvidenceSet) -> Proposal:
        response = evidence.get("response")
        used = [response] if response is not None else []
        reason: str | None
        if response is None or response.text is None:
            status = response.labels.get("status", "no answer") if response is not None else "no answer"
            reason = f"no usable answer from {self.settings.url}: {status}"
        elif response.labels.get("status", "ok") != "ok":
            reason = f"answer from {self.settings.url} not usable: {response.labels.get('status')}"
        elif not self._secret:
            reason = "no shared secret is configured: answers cannot be verified"
        elif not verify(response.text.encode("utf-8", "replace"), response.labels.get("signature"), self._secret):
            reason = "answer is unsigned or its HMAC-SHA256 signature does not match"
        elif not response.labels.get("nonce"):
            reason = "no request nonce to check the answer against"
        else:
            reason = None
        if reason is None and response is not None and response.text is not None:
            try:
                utilities, vetoes, confidence, rationale = parse_answer(
                    response.text, candidates, exchange=Exchange.of(response.labels)
                )
            except MalformedAnswerError as exc:
                reason = f"malformed answer: {exc}"
            else:
                return self._proposal(
                    utilities=utilities,
                    vetoes=vetoes,
                    confidence=confidence,
                    rationale=rationale,
                    evidence=used,
                    current=situation.current,
                )
        return Proposal(
            agent=self.name,
            agent_type=self.type,
            utilities=dict.fromkeys(candidates, 0.0),
            vetoes={},
            ideal=None,
            confidence=0.0,
            rationale=reason or "dropped",
            evidence=tuple(used),
            dropped=reason,
        )


@dataclass(frozen=True, slots=True)
class Exchange:
    """What the answer must match: the request's nonce, and when it was sent and answered."""

    nonce: str
    sent: float
    received: float

    @staticmethod
    def of(labels: Mapping[str, str]) -> Exchange:
        def seconds(name: str) -> float:
            try:
                return float(labels.get(name, "nan"))
            except ValueError:
                return math.nan

        return Exchange(labels.get("nonce", ""), seconds("sent"), seconds("received"))


def parse_answer(
    text: str, candidates: Sequence[Candidate], *, exchange: Exchange
) -> tuple[dict[Candidate, float], dict[Candidate, str], float, str]:
    try:
        data: Any = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise MalformedAnswerError(f"not JSON, or nested too deeply ({type(exc).__name__})") from exc
    if not isinstance(data, dict):
        raise MalformedAnswerError("the answer must be a JSON object")
    nonce = data.get("nonce")
    if not isinstance(nonce, str) or not exchange.nonce or nonce != exchange.nonce:  # not secret: == will do
        raise MalformedAnswerError("its nonce is not this request's: an answer to another request is refused")
    stamp = data.get("timestamp")
    if not isinstance(stamp, int | float) or isinstance(stamp, bool) or not math.isfinite(stamp):
        raise MalformedAnswerError("timestamp must be a number of unix seconds")
    if not exchange.sent - MAX_SKEW_SECONDS <= stamp <= exchange.received + MAX_SKEW_SECONDS:
        raise MalformedAnswerError(
            f"its timestamp {stamp} is more than {MAX_SKEW_SECONDS:.0f}s outside the exchange "
            f"({exchange.sent:.3f} to {exchange.received:.3f}): stale or from the future"
        )
    confidence = data.get("confidence")
    if not isinstance(confidence, int | float) or isinstance(confidence, bool) or not 0 <= confidence <= 1:
        raise MalformedAnswerError("confidence must be a number in [0, 1]")
    rationale = data.get("rationale", "")
    if not isinstance(rationale, str):
        raise MalformedAnswerError("rationale must be a string")
    entries = data.get("utilities")
    if not isinstance(entries, list):
        raise MalformedAnswerError("utilities must be a list")
    wanted = set(candidates)
    utilities: dict[Candidate, float] = {}
    vetoes: dict[Candidate, str] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise MalformedAnswerError("each utility must be an object")
        replicas, placement = entry.get("replicas"), entry.get("placement")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or not isinstance(placement, str):
            raise MalformedAnswerError("each utility needs integer replicas and a placement string")
        candidate = Candidate(replicas, placement)
        if candidate not in wanted:
            raise MalformedAnswerError(f"{candidate} is not one of the candidates")
        veto = entry.get("veto")
        if veto is not None:
            if not isinstance(veto, str) or not veto:
                raise MalformedAnswerError("a veto must be a non-empty reason")
            vetoes[candidate] = veto
            continue
        utility = entry.get("utility")
        if (
            not isinstance(utility, int | float)
            or isinstance(utility, bool)
            or not math.isfinite(utility)
            or not 0 <= utility <= 1
        ):
            raise MalformedAnswerError(f"utility of {candidate} must be a number in [0, 1]")
        utilities[candidate] = float(utility)
    missing = wanted - set(utilities) - set(vetoes)
    if missing:
        raise MalformedAnswerError(f"{len(missing)} candidate(s) have neither a utility nor a veto")
    return utilities, vetoes, float(confidence), rationale[:2000]
