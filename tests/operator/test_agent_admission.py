"""Which Agents take part: the spec must parse, an external agent's host must be allowed, and its
Secret can only be one of the Agent's own namespace."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from accord.models.agent import AgentSpec
from accord.models.common import from_wire
from accord.models.crd import render_crds
from accord.operator.handlers import agent_spec


def external(url: str, **secret_ref: Any) -> dict[str, Any]:
    return {"type": "external", "external": {"url": url, "secretRef": {"name": "hmac", **secret_ref}}}


@pytest.mark.parametrize(
    ("url", "allowed", "reason"),
    [
        ("https://agents.example.com/negotiate", (), None),
        ("https://agents.example.com/negotiate", ("agents.example.com",), None),
        ("https://agents.example.com:8443/negotiate", ("*.example.com",), None),
        ("https://agents.evil.net/negotiate", ("agents.example.com", "*.corp.example"), "HostNotAllowed"),
        ("https://example.com/negotiate", ("*.example.com",), "HostNotAllowed"),
        ("http://agents.example.com/negotiate", (), "InvalidSpec"),
    ],
)
def test_an_agent_takes_part_only_when_valid_and_its_host_allowed(
    url: str, allowed: tuple[str, ...], reason: str | None
) -> None:
    spec, got, message = agent_spec(external(url), allowed)
    assert got == reason
    assert (spec is None) == (reason is not None)
    if reason == "HostNotAllowed":
        assert "is not one the operator may call" in (message or "")
        assert all(a in (message or "") for a in allowed)


def test_built_in_agents_need_no_allowed_host() -> None:
    spec, reason, _ = agent_spec({"type": "cost"}, ("agents.example.com",))
    assert spec is not None
    assert reason is None


def test_a_secret_of_another_namespace_cannot_be_named() -> None:
    with pytest.raises(ValidationError, match="namespace"):
        from_wire(AgentSpec, external("https://agents.example.com/", namespace="kube-system"))
    spec, reason, message = agent_spec(external("https://agents.example.com/", namespace="kube-system"), ())
    assert (spec, reason) == (None, "InvalidSpec")
    assert "namespace" in (message or "")
    # The CRD schema has no such field either: the API server prunes it, and the Secret is read from the
    # Agent's own namespace whatever was written.
    crd = yaml.safe_load(render_crds()["accord.dev_agents.yaml"])
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    secret_ref = schema["properties"]["spec"]["properties"]["external"]["properties"]["secretRef"]
    assert set(secret_ref["properties"]) == {"name", "key"}
