"""The external agent: signed JSON answers become proposals; anything else is dropped with a reason, never raised."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.agents.base import Candidate
from accord.agents.external import SIGNATURE_HEADER, ExternalAgent, host_allowed, sign, verify
from accord.metrics.evidence import Evidence, EvidenceSet, Source
from accord.models.settings import ExternalSettings
from tests.factories import NOW, demand, situation

SECRET = b"shared-hmac-key"
NONCE = "5f1d3c0a9b8e7d6c5f1d3c0a9b8e7d6c"
URL = "https://agents.example.com/negotiate"
CANDIDATES = [Candidate(3, "standard"), Candidate(4, "standard"), Candidate(4, "spot")]


def agent(secret: bytes = SECRET) -> ExternalAgent:
    settings = ExternalSettings.model_validate({"url": URL, "secretRef": {"name": "external-agent-key"}})
    return ExternalAgent("oracle", settings, secret=secret)


def answer(**overrides: Any) -> dict[str, Any]:
    """A well-formed answer covering every candidate: two utilities and one veto."""
    body: dict[str, Any] = {
        "nonce": NONCE,
        "timestamp": NOW + 0.2,
        "utilities": [
            {"replicas": 3, "placement": "standard", "utility": 0.25},
            {"replicas": 4, "placement": "standard", "utility": 0.75},
            {"replicas": 4, "placement": "spot", "veto": "spot is not allowed on Sundays"},
        ],
        "confidence": 0.8,
        "rationale": "the forecast service expects a quiet evening",
    }
    body.update(overrides)
    return body


def response(
    text: str | None,
    *,
    signature: str | None = None,
    status: str | None = None,
    secret: bytes = SECRET,
    nonce: str = NONCE,
    sent: float = NOW,
    received: float = NOW + 0.5,
) -> EvidenceSet:
    """The evidence the caller hands over: the body as text, the signature header, a status label, and
    the request's nonce and times."""
    labels: dict[str, str] = {"nonce": nonce, "sent": repr(sent), "received": repr(received)}
    if signature is not None:
        labels["signature"] = signature
    elif text is not None:
        labels["signature"] = sign(text.encode(), secret)
    if status is not None:
        labels["status"] = status
    return {
        "response": Evidence(
            name="response", source=Source.EXTERNAL, query=URL, text=text, timestamp=NOW, samples=1, labels=labels
        )
    }


def signed(body: Any) -> EvidenceSet:
    return response(json.dumps(body))


# --- a good answer -------------------------------------------------------------------------------------------------


def test_signed_answer_becomes_the_proposal() -> None:
    proposal = agent().propose(situation(), CANDIDATES, signed(answer()))
    assert proposal.dropped is None
    assert proposal.utilities == {Candidate(3, "standard"): 0.25, Candidate(4, "standard"): 0.75}
    assert proposal.vetoes == {Candidate(4, "spot"): "spot is not allowed on Sundays"}
    assert proposal.confidence == 0.8
    assert proposal.rationale == "the forecast service expects a quiet evening"
    assert proposal.ideal == Candidate(4, "standard")
    assert proposal.agent == "oracle"
    assert [e.name for e in proposal.evidence] == ["response"]


@pytest.mark.parametrize(
    ("overrides", "expected_confidence", "expected_rationale"),
    [
        pytest.param({"confidence": 0}, 0.0, "the forecast service expects a quiet evening", id="confidence-zero"),
        pytest.param({"confidence": 1}, 1.0, "the forecast service expects a quiet evening", id="confidence-int-one"),
        pytest.param({"rationale": ""}, 0.8, "", id="empty-rationale"),
        pytest.param({"rationale": None}, 0.8, "", id="missing-rationale"),
        pytest.param({"rationale": "x" * 5000}, 0.8, "x" * 2000, id="long-rationale-truncated"),
    ],
)
def test_edges_of_a_good_answer(overrides: dict[str, Any], expected_confidence: float, expected_rationale: str) -> None:
    body = {k: v for k, v in answer(**overrides).items() if v is not None}
    proposal = agent().propose(situation(), CANDIDATES, signed(body))
    assert proposal.dropped is None
    assert proposal.confidence == expected_confidence
    assert proposal.rationale == expected_rationale


def test_integer_utilities_and_all_vetoes_are_accepted() -> None:
    body = answer(
        utilities=[
            {"replicas": 3, "placement": "standard", "utility": 0},
            {"replicas": 4, "placement": "standard", "utility": 1},
            {"replicas": 4, "placement": "spot", "utility": 1},
        ]
    )
    proposal = agent().propose(situation(), CANDIDATES, signed(body))
    assert proposal.utilities == {
        Candidate(3, "standard"): 0.0,
        Candidate(4, "standard"): 1.0,
        Candidate(4, "spot"): 1.0,
    }
    assert proposal.ideal == Candidate(4, "standard")  # ties go to the current placement
    vetoes = [{"replicas": c.replicas, "placement": c.placement, "veto": "no"} for c in CANDIDATES]
    proposal = agent().propose(situation(), CANDIDATES, signed(answer(utilities=vetoes)))
    assert proposal.dropped is None
    assert proposal.utilities == {}
    assert set(proposal.vetoes) == set(CANDIDATES)


@pytest.mark.parametrize("stamp", [NOW - 30.0, NOW, NOW + 0.5 + 30.0], ids=["oldest", "sent", "newest"])
def test_an_answer_within_the_skew_of_the_exchange_is_fresh(stamp: float) -> None:
    proposal = agent().propose(situation(), CANDIDATES, signed(answer(timestamp=stamp)))
    assert proposal.dropped is None


def test_a_recorded_answer_replayed_to_a_later_request_is_refused() -> None:
    """An attacker who recorded a signed answer serves it again: the new request has a new nonce."""
    recorded = json.dumps(answer())
    fresh = agent().propose(situation(), CANDIDATES, response(recorded))
    assert fresh.dropped is None
    replayed = agent().propose(
        situation(), CANDIDATES, response(recorded, nonce="a" * 32, sent=NOW + 60, received=NOW + 60.2)
    )
    assert replayed.dropped is not None
    assert "nonce is not this request's" in replayed.dropped
    assert replayed.confidence == 0.0


def test_signature_with_surrounding_whitespace_verifies() -> None:
    text = json.dumps(answer())
    proposal = agent().propose(situation(), CANDIDATES, response(text, signature=f"  {sign(text.encode(), SECRET)}\n"))
    assert proposal.dropped is None


# --- bad answers are dropped ---------------------------------------------------------------------------------------

GOOD = json.dumps(answer())
DROPPED = [
    # transport and signature
    pytest.param({}, "no usable answer from https://agents.example.com/negotiate: no answer", id="no-answer"),
    pytest.param(response(None, status="timeout"), "no usable answer", id="timeout-without-body"),
    pytest.param(response(GOOD, status="timeout"), "not usable: timeout", id="status-timeout-with-signed-body"),
    pytest.param(response(GOOD, status="http 500"), "not usable: http 500", id="status-http-500"),
    pytest.param(response(GOOD, signature=""), "unsigned", id="empty-signature"),
    pytest.param(
        {"response": Evidence(name="response", source=Source.EXTERNAL, text=GOOD)}, "unsigned", id="no-signature"
    ),
    pytest.param(response(GOOD, secret=b"wrong-key"), "signature does not match", id="signed-with-another-key"),
    pytest.param(
        response(GOOD, signature=sign(GOOD.encode(), SECRET).upper()), "does not match", id="signature-wrong-case"
    ),
    pytest.param(
        response(GOOD, signature=sign(GOOD.encode(), SECRET).removeprefix("sha256=")), "does not match", id="no-prefix"
    ),
    pytest.param(
        response(GOOD, signature="sha1=" + hmac.new(SECRET, GOOD.encode(), hashlib.sha1).hexdigest()),
        "does not match",
        id="sha1-signature",
    ),
    pytest.param(
        response(GOOD.replace("0.75", "0.95"), signature=sign(GOOD.encode(), SECRET)),
        "does not match",
        id="body-tampered-after-signing",
    ),
    # body
    pytest.param(response("<html>502 Bad Gateway</html>"), "malformed answer: not JSON", id="html"),
    pytest.param(response(""), "malformed answer: not JSON", id="empty-body"),
    pytest.param(response("[1, 2, 3]"), "must be a JSON object", id="json-array"),
    pytest.param(response('"ok"'), "must be a JSON object", id="json-string"),
    pytest.param(response("null"), "must be a JSON object", id="json-null"),
    pytest.param(signed(answer(confidence=1.5)), "confidence must be a number in [0, 1]", id="confidence-1.5"),
    pytest.param(signed(answer(confidence=-0.1)), "confidence must be a number in [0, 1]", id="confidence-negative"),
    pytest.param(signed(answer(confidence="high")), "confidence must be a number", id="confidence-string"),
    pytest.param(signed(answer(confidence=True)), "confidence must be a number", id="confidence-true"),
    pytest.param(signed(answer(confidence=None)), "confidence must be a number", id="confidence-null"),
    pytest.param(
        signed({k: v for k, v in answer().items() if k != "confidence"}),
        "confidence must be a number",
        id="confidence-missing",
    ),
    pytest.param(response(GOOD.replace("0.8", "NaN")), "confidence must be a number", id="confidence-nan"),
    pytest.param(response(GOOD.replace("0.8", "Infinity")), "confidence must be a number", id="confidence-infinity"),
    pytest.param(signed(answer(rationale=["why"])), "rationale must be a string", id="rationale-list"),
    pytest.param(signed(answer(utilities={"3@standard": 1})), "utilities must be a list", id="utilities-object"),
    pytest.param(signed(answer(utilities=None)), "utilities must be a list", id="utilities-null"),
    pytest.param(signed(answer(utilities=[1, 2, 3])), "each utility must be an object", id="utilities-of-numbers"),
    pytest.param(
        signed(answer(utilities=[{"replicas": "3", "placement": "standard", "utility": 1}])),
        "integer replicas",
        id="replicas-string",
    ),
    pytest.param(
        signed(answer(utilities=[{"replicas": 3.0, "placement": "standard", "utility": 1}])),
        "integer replicas",
        id="replicas-float",
    ),
    pytest.param(
        signed(answer(utilities=[{"replicas": True, "placement": "standard", "utility": 1}])),
        "integer replicas",
        id="replicas-bool",
    ),
    pytest.param(
        signed(answer(utilities=[{"replicas": 3, "utility": 1}])), "a placement string", id="placement-missing"
    ),
    pytest.param(
        signed(answer(utilities=[{"replicas": 99, "placement": "standard", "utility": 1}])),
        "99@standard is not one of the candidates",
        id="unknown-candidate-replicas",
    ),
    pytest.param(
        signed(answer(utilities=[{"replicas": 3, "placement": "gpu", "utility": 1}])),
        "3@gpu is not one of the candidates",
        id="unknown-candidate-pool",
    ),
    pytest.param(
        signed(answer(utilities=answer()["utilities"][:2])),
        "1 candidate(s) have neither a utility nor a veto",
        id="one-candidate-missing",
    ),
    pytest.param(
        signed(answer(utilities=[])), "3 candidate(s) have neither a utility nor a veto", id="all-candidates-missing"
    ),
    pytest.param(
        signed(answer(utilities=[*answer()["utilities"][:2], {"replicas": 4, "placement": "spot", "utility": 1.2}])),
        "utility of 4@spot must be a number in [0, 1]",
        id="utility-above-one",
    ),
    pytest.param(
        signed(answer(utilities=[*answer()["utilities"][:2], {"replicas": 4, "placement": "spot", "utility": -0.1}])),
        "utility of 4@spot must be a number in [0, 1]",
        id="utility-negative",
    ),
    pytest.param(
        signed(answer(utilities=[*answer()["utilities"][:2], {"replicas": 4, "placement": "spot", "utility": "1"}])),
        "utility of 4@spot must be a number",
        id="utility-string",
    ),
    pytest.param(
        signed(answer(utilities=[*answer()["utilities"][:2], {"replicas": 4, "placement": "spot", "utility": False}])),
        "utility of 4@spot must be a number",
        id="utility-bool",
    ),
    pytest.param(
        signed(answer(utilities=[*answer()["utilities"][:2], {"replicas": 4, "placement": "spot"}])),
        "utility of 4@spot must be a number",
        id="neither-utility-nor-veto",
    ),
    pytest.param(
        response(GOOD.replace('"utility": 0.75', '"utility": NaN')),
        "utility of 4@standard must be a number in [0, 1]",
        id="utility-nan",
    ),
    pytest.param(
        signed(answer(utilities=[*answer()["utilities"][:2], {"replicas": 4, "placement": "spot", "veto": ""}])),
        "a veto must be a non-empty reason",
        id="veto-empty",
    ),
    pytest.param(
        signed(answer(utilities=[*answer()["utilities"][:2], {"replicas": 4, "placement": "spot", "veto": True}])),
        "a veto must be a non-empty reason",
        id="veto-bool",
    ),
    pytest.param(response("9" * 5000), "malformed answer: not JSON", id="integer-too-long-to-parse"),
    # replay and freshness: the signed answer carries the request's nonce and its own time
    pytest.param(
        response(GOOD, nonce="0" * 32), "nonce is not this request's", id="replayed-answer-of-another-request"
    ),
    pytest.param(signed(answer(nonce="")), "nonce is not this request's", id="answer-nonce-empty"),
    pytest.param(signed(answer(nonce=None)), "nonce is not this request's", id="answer-nonce-missing"),
    pytest.param(signed(answer(nonce=NONCE.upper())), "nonce is not this request's", id="answer-nonce-other-case"),
    pytest.param(response(GOOD, nonce=""), "no request nonce", id="no-request-nonce"),
    pytest.param(signed(answer(timestamp=None)), "timestamp must be a number", id="timestamp-missing"),
    pytest.param(signed(answer(timestamp=str(NOW))), "timestamp must be a number", id="timestamp-string"),
    pytest.param(signed(answer(timestamp=True)), "timestamp must be a number", id="timestamp-bool"),
    pytest.param(signed(answer(timestamp=NOW - 30.01)), "stale or from the future", id="timestamp-just-too-old"),
    pytest.param(signed(answer(timestamp=NOW + 0.5 + 30.01)), "stale or from the future", id="timestamp-just-too-new"),
    pytest.param(signed(answer(timestamp=NOW - 86_400)), "stale", id="recorded-yesterday"),
    pytest.param(response(GOOD, sent=math.nan), "stale", id="unknown-send-time"),
]


@pytest.mark.parametrize(("evidence", "reason"), DROPPED)
def test_bad_answer_is_dropped_with_a_reason(evidence: EvidenceSet, reason: str) -> None:
    proposal = agent().propose(situation(), CANDIDATES, evidence)
    assert proposal.dropped is not None
    assert reason in proposal.dropped
    assert proposal.rationale == proposal.dropped
    assert proposal.confidence == 0.0
    assert proposal.ideal is None
    assert proposal.vetoes == {}
    assert proposal.utilities == dict.fromkeys(CANDIDATES, 0.0)
    assert proposal.evidence == tuple(evidence.values())


KNOWN_BUGS = [
    pytest.param(
        response("[" * 100_000 + "]" * 100_000),
        "malformed answer",
        id="deeply-nested-signed-json",
    ),
]


@pytest.mark.parametrize(("evidence", "reason"), KNOWN_BUGS)
def test_pathological_answer_is_dropped_not_raised(evidence: EvidenceSet, reason: str) -> None:
    proposal = agent().propose(situation(), CANDIDATES, evidence)
    assert proposal.dropped is not None
    assert reason in proposal.dropped


def test_agent_without_a_secret_trusts_no_answer() -> None:
    text = json.dumps(answer())
    proposal = agent(secret=b"").propose(situation(), CANDIDATES, response(text, secret=b""))
    assert proposal.dropped is not None
    assert proposal.confidence == 0.0


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=200), sign_it=st.booleans(), status=st.sampled_from([None, "ok", "timeout", "error"]))
def test_any_text_answer_is_judged_never_raised(text: str, sign_it: bool, status: str | None) -> None:
    evidence = response(text, status=status) if sign_it else response(text, signature="sha256=00", status=status)
    proposal = agent().propose(situation(), CANDIDATES, evidence)
    if not sign_it or status in {"timeout", "error"}:
        assert proposal.dropped is not None
    if proposal.dropped is not None:
        assert proposal.confidence == 0.0
        assert proposal.ideal is None


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10) | st.floats(allow_nan=True) | st.sampled_from(["standard", "spot"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["replicas", "placement", "utility", "veto", "x"]), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(utilities=st.lists(JSON_VALUES, max_size=5), confidence=JSON_VALUES, rationale=JSON_VALUES)
def test_any_signed_json_answer_is_judged_never_raised(utilities: Any, confidence: Any, rationale: Any) -> None:
    text = json.dumps(
        {"nonce": NONCE, "timestamp": NOW, "utilities": utilities, "confidence": confidence, "rationale": rationale}
    )
    proposal = agent().propose(situation(), CANDIDATES, response(text))
    if proposal.dropped is None:
        assert set(proposal.utilities) | set(proposal.vetoes) == set(CANDIDATES)
        assert all(0.0 <= u <= 1.0 and math.isfinite(u) for u in proposal.utilities.values())
        assert 0.0 <= proposal.confidence <= 1.0
    else:
        assert proposal.confidence == 0.0


# --- the request -----------------------------------------------------------------------------------------------------


def request(a: ExternalAgent, evidence: EvidenceSet, candidates: list[Candidate] = CANDIDATES) -> bytes:
    return a.request_body(situation(), candidates, evidence, nonce=NONCE, timestamp=NOW)


def test_request_body_is_deterministic_json_with_every_candidate() -> None:
    evidence = {"demand": demand(level=300), "latency": Evidence(name="latency", source=Source.PROMETHEUS, value=0.2)}
    reordered = {"latency": evidence["latency"], "demand": evidence["demand"]}
    body = request(agent(), evidence)
    assert body == request(agent(), reordered)
    assert body == request(agent(secret=b"other"), evidence)
    payload = json.loads(body)
    assert payload["candidates"] == [
        {"replicas": 3, "placement": "standard"},
        {"replicas": 4, "placement": "standard"},
        {"replicas": 4, "placement": "spot"},
    ]
    assert payload["workload"] == {"kind": "Deployment", "namespace": "shop", "name": "web"}
    assert payload["current"] == {"replicas": 4, "placement": "standard"}
    assert payload["readyReplicas"] == 4
    assert payload["time"] == NOW
    assert payload["labels"] == {"app": "web"}
    assert (payload["nonce"], payload["timestamp"]) == (NONCE, NOW)
    assert payload["evidence"]["demand"] == {"source": "prometheus", "value": 300.0, "timestamp": NOW, "samples": 30}
    assert body == json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def test_request_body_never_echoes_the_previous_response() -> None:
    evidence = {"demand": demand(), **response(GOOD)}
    payload = json.loads(request(agent(), evidence))
    assert sorted(payload["evidence"]) == ["demand"]


def test_request_body_depends_on_the_candidates() -> None:
    one = request(agent(), {})
    other = request(agent(), {}, CANDIDATES[:2])
    assert one != other
    assert len(json.loads(other)["candidates"]) == 2


def test_request_signature_verifies_with_the_shared_secret() -> None:
    body = request(agent(), {})
    signature = agent().signature(body)
    assert signature == "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    assert verify(body, signature, SECRET)
    assert not verify(body, signature, b"other")
    assert not verify(body + b" ", signature, SECRET)
    assert not verify(body, None, SECRET)
    assert SIGNATURE_HEADER == "X-Accord-Signature"


# --- the operator's allowlist of agent hosts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "allowed", "expected"),
    [
        ("agents.example.com", [], True),
        ("agents.example.com", ["agents.example.com"], True),
        ("Agents.Example.COM.", ["agents.example.com"], True),
        ("agents.example.com", ["other.example.com"], False),
        ("evil-agents.example.com", ["agents.example.com"], False),
        ("agents.example.com.evil.net", ["agents.example.com"], False),
        ("a.example.com", ["*.example.com"], True),
        ("a.b.example.com", ["*.example.com"], True),
        ("example.com", ["*.example.com"], False),
        ("badexample.com", ["*.example.com"], False),
        ("10.0.0.1", ["10.0.0.1"], True),
        (None, ["agents.example.com"], False),
        ("", ["agents.example.com"], False),
    ],
)
def test_host_allowlist(host: str | None, allowed: list[str], expected: bool) -> None:
    assert host_allowed(host, allowed) is expected


def test_the_documented_agent_snippet_answers_acceptably() -> None:
    """docs/install.md tells implementers what to sign; its example must be accepted as written."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "install.md").read_text()
    found = re.search(r"```python\n(import hashlib.*?)```", docs, re.S)
    assert found is not None
    namespace: dict[str, Any] = {}
    exec(found.group(1), namespace)
    body = request(agent(), {})
    sent = json.loads(body)
    text, signature = namespace["handle"](body, agent().signature(body), SECRET)
    evidence = response(text.decode(), signature=signature, nonce=sent["nonce"], sent=time.time(), received=time.time())
    proposal = agent().propose(situation(), CANDIDATES, evidence)
    assert proposal.dropped is None
    assert proposal.rationale == "every candidate is as good"
