"""Generates the CustomResourceDefinitions from the pydantic models (models layer, pure).

Kubernetes wants structural schemas: no `$ref`, every node typed, `nullable` instead of
`anyOf [X, null]`, and no `additionalProperties: false`. This module turns pydantic's JSON
Schema into that form so the models stay the single source of truth.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel

from accord.models.agent import AgentSpec, AgentStatus
from accord.models.common import GROUP, VERSION
from accord.models.negotiation import NegotiationSpec, NegotiationStatus
from accord.models.policy import ClusterNegotiationPolicySpec, NegotiationPolicySpec, NegotiationPolicyStatus

_DROP = {"title", "examples", "discriminator"}


@dataclass(frozen=True)
class CrdDefinition:
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[BaseModel]
    columns: tuple[dict[str, Any], ...]
    description: str
    scope: str = "Namespaced"


def _column(name: str, path: str, type_: str = "string", priority: int = 0, description: str = "") -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": type_, "jsonPath": path}
    if priority:
        column["priority"] = priority
    if description:
        column["description"] = description
    return column


_AGE = _column("Age", ".metadata.creationTimestamp", "date")
_POLICY_STATUS = (
    _column("Workloads", ".status.workloads", "integer"),
    _column("Pending", ".status.pendingApprovals", "integer"),
    _column("Ready", '.status.conditions[?(@.type=="Ready")].status'),
    _column("Reason", '.status.conditions[?(@.type=="Invalid")].reason', priority=1),
)

DEFINITIONS: tuple[CrdDefinition, ...] = (
    CrdDefinition(
        kind="Agent",
        plural="agents",
        singular="agent",
        short_names=("agt",),
        spec=AgentSpec,
        status=AgentStatus,
        description="A negotiator with its own objective (cost, performance, security, compliance, external).",
        columns=(
            _column("Type", ".spec.type"),
            _column("Weight", ".spec.weight", "number"),
            _column("Veto", ".spec.veto", "boolean"),
            _column("Trust", ".status.trust", "number", description="Trust learned from its track record."),
            _column("Ready", '.status.conditions[?(@.type=="Ready")].status'),
            _AGE,
        ),
    ),
    CrdDefinition(
        kind="NegotiationPolicy",
        plural="negotiationpolicies",
        singular="negotiationpolicy",
        short_names=("npol",),
        spec=NegotiationPolicySpec,
        status=NegotiationPolicyStatus,
        description="Which workloads are negotiated, by which agents, with which protocol and rules.",
        columns=(_column("Protocol", ".spec.protocol"), _column("Mode", ".spec.mode"), *_POLICY_STATUS, _AGE),
    ),
    CrdDefinition(
        kind="ClusterNegotiationPolicy",
        plural="clusternegotiationpolicies",
        singular="clusternegotiationpolicy",
        short_names=("cnpol",),
        spec=ClusterNegotiationPolicySpec,
        status=NegotiationPolicyStatus,
        scope="Cluster",
        description="A NegotiationPolicy over the opted-in workloads of several namespaces (made by cluster admins).",
        columns=(
            _column("Protocol", ".spec.protocol"),
            _column("Mode", ".spec.mode"),
            _column("Agents", ".spec.agentNamespace", description="Namespace of the policy's Agents."),
            *_POLICY_STATUS,
            _AGE,
        ),
    ),
    CrdDefinition(
        kind="Negotiation",
        plural="negotiations",
        singular="negotiation",
        short_names=("neg",),
        spec=NegotiationSpec,
        status=NegotiationStatus,
        description="The record of one decision for one workload: proposals, rounds, outcome and phase.",
        columns=(
            _column("Workload", ".spec.workload.name"),
            _column("Phase", ".status.phase"),
            _column("From", ".spec.current.replicas", "integer"),
            _column("To", ".spec.outcome.target.replicas", "integer"),
            _column("Placement", ".spec.outcome.target.placement"),
            _column("Confidence", ".spec.outcome.confidence", "number"),
            _column("Reason", ".spec.outcome.reason", priority=1),
            _column("Protocol", ".spec.protocol", priority=1),
            _AGE,
        ),
    ),
)


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema rewritten as a Kubernetes structural schema."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs: Mapping[str, Any] = raw.pop("$defs", {})
    schema: dict[str, Any] = _rewrite(raw, defs)
    return schema


def _rewrite(node: Any, defs: Mapping[str, Any]) -> Any:
    if isinstance(node, list):
        return [_rewrite(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _rewrite(merged, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        nullable = len(options) < len(node["anyOf"])
        if len(options) != 1:
            raise ValueError(f"cannot express a union of {len(options)} types structurally: {node}")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        merged = {**_rewrite(options[0], defs), **_rewrite(rest, defs)}
        if nullable:
            merged["nullable"] = True
        if merged.get("default", 0) is None:
            del merged["default"]
        return merged
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "additionalProperties" and isinstance(value, bool):
            continue  # structural schemas forbid false; true is implied by preserve-unknown-fields
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            # JSON Schema 2020 puts the bound in exclusiveMinimum; OpenAPI v3.0 wants minimum + a flag.
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
            continue
        if key == "const":
            out["enum"] = [value]
            continue
        if key == "default" and value is None:
            continue
        if key == "properties":
            out[key] = {name: _rewrite(sub, defs) for name, sub in value.items()}
        else:
            out[key] = _rewrite(value, defs)
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("type", "object")
    return out


def crd_manifest(definition: CrdDefinition) -> dict[str, Any]:
    schema = {
        "type": "object",
        "description": definition.description,
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": structural_schema(definition.spec),
            "status": structural_schema(definition.status),
        },
        "required": ["spec"],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{definition.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": definition.scope,
            "names": {
                "kind": definition.kind,
                "listKind": f"{definition.kind}List",
                "plural": definition.plural,
                "singular": definition.singular,
                "shortNames": list(definition.short_names),
                "categories": ["accord"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": list(definition.columns),
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


HEADER = "# Generated from the pydantic models in src/accord/models by `accord crds`. Do not edit.\n"


def render_crds() -> dict[str, str]:
    """File name to YAML text for every CRD, for `kubectl apply` on any supported server: without CRD
    validation rules, which kubectl refuses to send to a server older than 1.25."""
    return {f"{GROUP}_{d.plural}.yaml": HEADER + _dump(_without_rules(crd_manifest(d))) for d in DEFINITIONS}


def _dump(manifest: dict[str, Any]) -> str:
    return yaml.safe_dump(manifest, sort_keys=False, width=100)


RULES = "x-kubernetes-validations"
# The chart keeps CRD validation rules for the servers that enforce them.
RULES_GUARD = '{{- if semverCompare ">=1.25-0" .Capabilities.KubeVersion.Version }}'


def _without_rules(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_rules(v) for k, v in node.items() if k != RULES}
    if isinstance(node, list):
        return [_without_rules(v) for v in node]
    return node


def _guard_rules(text: str) -> str:
    """Each `x-kubernetes-validations` block of a dumped manifest, behind the server-version guard."""
    out: list[str] = []
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith(f"{RULES}:"):
            indent = len(line) - len(line.lstrip())
            block = [line]
            i += 1
            while (
                i < len(lines)
                and (len(lines[i]) - len(lines[i].lstrip()) > indent or lines[i].lstrip().startswith("- "))
                and len(lines[i]) - len(lines[i].lstrip()) >= indent
            ):
                block.append(lines[i])
                i += 1
            out += [RULES_GUARD + "\n", *block, "{{- end }}\n"]
            continue
        out.append(line)
        i += 1
    return "".join(out)


CHART_HEADER = (
    "{{- if .Values.crds.enabled }}\n"
    "# Generated from the pydantic models in src/accord/models by `accord crds`. Do not edit.\n"
)
# The chart's labels, and cert-manager's convention for CRDs: `crds.keep` leaves them (and so every
# Agent, NegotiationPolicy and Negotiation) in place when the release is uninstalled.
CHART_METADATA = """metadata:
  name: {name}
  labels:
    {{{{- include "accord.labels" . | nindent 4 }}}}
  {{{{- if .Values.crds.keep }}}}
  annotations:
    helm.sh/resource-policy: keep
  {{{{- end }}}}
"""


def render_chart_crds() -> dict[str, str]:
    """File name to helm template text for every CRD: the same manifests, behind `crds.enabled`."""
    rendered = {}
    for d in DEFINITIONS:
        manifest = crd_manifest(d)
        name = manifest["metadata"]["name"]
        # Go templates treat every `{{` as the start of an action, even inside a description.
        text = _guard_rules(_dump(manifest).replace("{{", '{{ "{{" }}'))
        plain = f"metadata:\n  name: {name}\n"
        if plain not in text:
            raise ValueError(f"unexpected metadata layout in the CRD {name}")
        body = text.replace(plain, CHART_METADATA.format(name=name), 1)
        rendered[f"{GROUP}_{d.plural}.yaml"] = CHART_HEADER + body + "{{- end }}\n"
    return rendered
