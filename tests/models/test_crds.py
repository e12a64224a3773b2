"""The CRDs in crds/ are generated from the models, structural, and the examples validate against the models."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from accord.cli import main
from accord.models import Agent, Negotiation, NegotiationPolicy
from accord.models.crd import render_crds

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
EXAMPLES = ROOT / "examples"
KINDS: dict[str, type[BaseModel]] = {"Agent": Agent, "NegotiationPolicy": NegotiationPolicy, "Negotiation": Negotiation}
RENDERED = render_crds()


def manifests() -> dict[str, dict[str, Any]]:
    return {name: yaml.safe_load(text) for name, text in RENDERED.items()}


def by_kind() -> dict[str, dict[str, Any]]:
    return {m["spec"]["names"]["kind"]: m for m in manifests().values()}


def root_schema(manifest: dict[str, Any]) -> dict[str, Any]:
    (version,) = manifest["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def schema_nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path: properties, array items and map values."""
    yield path or "(root)", node
    for name, sub in node.get("properties", {}).items():
        yield from schema_nodes(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from schema_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from schema_nodes(node["additionalProperties"], f"{path}{{}}")


def all_nodes() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{kind}{path}", node)
        for kind, manifest in by_kind().items()
        for path, node in schema_nodes(root_schema(manifest))
    ]


def all_keys(value: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair anywhere in a nested structure, schema keywords or not."""
    if isinstance(value, dict):
        for key, sub in value.items():
            yield key, sub
            yield from all_keys(sub)
    elif isinstance(value, list):
        for sub in value:
            yield from all_keys(sub)


# --- generated and committed files agree ---------------------------------------------------------------------------


def test_crds_directory_holds_exactly_the_generated_files() -> None:
    assert sorted(p.name for p in CRDS.glob("*.yaml")) == sorted(RENDERED)


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_committed_crd_matches_the_models(name: str) -> None:
    assert (CRDS / name).read_text() == RENDERED[name], f"crds/{name} is stale: run `accord crds`"


def test_rendering_is_deterministic() -> None:
    assert render_crds() == RENDERED


# --- structural schemas -------------------------------------------------------------------------------------------

FORBIDDEN_KEYWORDS = ("$ref", "$defs", "definitions", "anyOf", "oneOf", "allOf", "not")


@pytest.mark.parametrize("name", sorted(RENDERED))
@pytest.mark.parametrize("keyword", FORBIDDEN_KEYWORDS)
def test_no_forbidden_keyword_anywhere(name: str, keyword: str) -> None:
    schema = root_schema(manifests()[name])
    assert [k for k, _ in all_keys(schema) if k == keyword] == []


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_no_additional_properties_false(name: str) -> None:
    schema = root_schema(manifests()[name])
    assert [v for k, v in all_keys(schema) if k == "additionalProperties" and v is False] == []
    assert "additionalProperties: false" not in RENDERED[name]


def test_every_node_with_properties_is_an_object() -> None:
    wrong = [path for path, node in all_nodes() if "properties" in node and node.get("type") != "object"]
    assert wrong == []


def test_every_node_has_a_type_unless_it_preserves_unknown_fields() -> None:
    untyped = [
        path
        for path, node in all_nodes()
        if "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields")
    ]
    assert untyped == []


def test_required_fields_exist_as_properties() -> None:
    missing = [
        f"{path}.{field}"
        for path, node in all_nodes()
        for field in node.get("required", [])
        if field not in node.get("properties", {})
    ]
    assert missing == []


def test_field_names_are_camel_case() -> None:
    snake = [f"{path}.{name}" for path, node in all_nodes() for name in node.get("properties", {}) if "_" in name]
    assert snake == []


def test_nullable_fields_are_typed() -> None:
    assert [path for path, node in all_nodes() if node.get("nullable") and "type" not in node] == []


def test_affinity_preserves_unknown_fields_as_an_object() -> None:
    schema = root_schema(by_kind()["NegotiationPolicy"])
    affinity = schema["properties"]["spec"]["properties"]["placements"]["items"]["properties"]["affinity"]
    assert affinity["x-kubernetes-preserve-unknown-fields"] is True
    assert affinity["type"] == "object"


# JSONSchemaProps (apiextensions.k8s.io/v1) decodes each keyword into a Go field of a fixed type.
KEYWORD_TYPES: dict[str, tuple[type, ...]] = {
    "type": (str,),
    "description": (str,),
    "format": (str,),
    "pattern": (str,),
    "properties": (dict,),
    "items": (dict,),
    "additionalProperties": (dict, bool),
    "required": (list,),
    "enum": (list,),
    "default": (str, int, float, bool, dict, list),
    "maximum": (int, float),
    "minimum": (int, float),
    "multipleOf": (int, float),
    "exclusiveMinimum": (bool,),
    "exclusiveMaximum": (bool,),
    "maxLength": (int,),
    "minLength": (int,),
    "maxItems": (int,),
    "minItems": (int,),
    "maxProperties": (int,),
    "minProperties": (int,),
    "uniqueItems": (bool,),
    "nullable": (bool,),
    "x-kubernetes-preserve-unknown-fields": (bool,),
    "x-kubernetes-int-or-string": (bool,),
    "x-kubernetes-embedded-resource": (bool,),
    "x-kubernetes-list-type": (str,),
    "x-kubernetes-map-type": (str,),
    # CRD validation rules (CEL): enforced from Kubernetes 1.25; older servers drop the keyword.
    "x-kubernetes-validations": (list,),
}


def test_every_keyword_is_one_kubernetes_knows() -> None:
    unknown = sorted({f"{path}: {key}" for path, node in all_nodes() for key in node if key not in KEYWORD_TYPES})
    assert unknown == []


def test_every_keyword_has_the_json_type_kubernetes_decodes() -> None:
    wrong = sorted(
        f"{path}: {key}={value!r}"
        for path, node in all_nodes()
        for key, value in node.items()
        if key in KEYWORD_TYPES and not isinstance(value, KEYWORD_TYPES[key])
    )
    assert wrong == []


def test_exclusive_bounds_are_flags_beside_their_bound() -> None:
    """OpenAPI v3.0: `exclusiveMinimum: true` next to `minimum`, not JSON Schema 2020's `exclusiveMinimum: 0.05`."""
    orphans = [
        f"{path}: {flag}"
        for path, node in all_nodes()
        for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum"))
        if flag in node and (node[flag] is not True or bound not in node)
    ]
    assert orphans == []
    spec = root_schema(by_kind()["Agent"])["properties"]["spec"]["properties"]
    target = spec["performance"]["properties"]["targetUtilisation"]
    assert (target["minimum"], target["exclusiveMinimum"], target["maximum"]) == (0.05, True, 1.0)


def test_defaults_satisfy_their_own_schema() -> None:
    python_type = {
        "string": str,
        "integer": int,
        "number": (int, float),
        "boolean": bool,
        "object": dict,
        "array": list,
    }
    wrong = []
    for path, node in all_nodes():
        if "default" not in node:
            continue
        value = node["default"]
        if not isinstance(value, python_type[node["type"]]) or (node["type"] != "boolean" and isinstance(value, bool)):
            wrong.append(f"{path}: {value!r} is not {node['type']}")
        if "enum" in node and value not in node["enum"]:
            wrong.append(f"{path}: {value!r} not in {node['enum']}")
        if "minimum" in node and value < node["minimum"]:
            wrong.append(f"{path}: {value!r} < {node['minimum']}")
        if "maximum" in node and value > node["maximum"]:
            wrong.append(f"{path}: {value!r} > {node['maximum']}")
    assert wrong == []


# --- what `kubectl get` shows ---------------------------------------------------------------------------------------

EXPECTED_NAMES = {
    "Agent": ("agents", "agent", ["agt"]),
    "NegotiationPolicy": ("negotiationpolicies", "negotiationpolicy", ["npol"]),
    "ClusterNegotiationPolicy": ("clusternegotiationpolicies", "clusternegotiationpolicy", ["cnpol"]),
    "Negotiation": ("negotiations", "negotiation", ["neg"]),
}
CLUSTER_SCOPED = {"ClusterNegotiationPolicy"}
EXPECTED_COLUMNS = {
    "Agent": ["Type", "Weight", "Veto", "Trust", "Ready", "Age"],
    "NegotiationPolicy": ["Protocol", "Mode", "Workloads", "Pending", "Ready", "Reason", "Age"],
    "ClusterNegotiationPolicy": ["Protocol", "Mode", "Agents", "Workloads", "Pending", "Ready", "Reason", "Age"],
    "Negotiation": ["Workload", "Phase", "From", "To", "Placement", "Confidence", "Reason", "Protocol", "Age"],
}


@pytest.mark.parametrize("kind", sorted(EXPECTED_NAMES))
def test_names_short_names_and_category(kind: str) -> None:
    manifest = by_kind()[kind]
    plural, singular, short = EXPECTED_NAMES[kind]
    names = manifest["spec"]["names"]
    assert (names["plural"], names["singular"], names["shortNames"]) == (plural, singular, short)
    assert names["listKind"] == f"{kind}List"
    assert names["categories"] == ["accord"]
    assert manifest["metadata"]["name"] == f"{plural}.accord.dev"
    assert manifest["apiVersion"] == "apiextensions.k8s.io/v1"
    assert manifest["spec"]["group"] == "accord.dev"
    assert manifest["spec"]["scope"] == ("Cluster" if kind in CLUSTER_SCOPED else "Namespaced")


@pytest.mark.parametrize("kind", sorted(EXPECTED_NAMES))
def test_served_stored_version_with_status_subresource(kind: str) -> None:
    (version,) = by_kind()[kind]["spec"]["versions"]
    assert version["name"] == "v1alpha1"
    assert version["served"] is True
    assert version["storage"] is True
    assert version["subresources"] == {"status": {}}
    schema = version["schema"]["openAPIV3Schema"]
    assert schema["required"] == ["spec"]
    assert {"apiVersion", "kind", "metadata", "spec", "status"} <= set(schema["properties"])


@pytest.mark.parametrize("kind", sorted(EXPECTED_COLUMNS))
def test_printer_columns(kind: str) -> None:
    (version,) = by_kind()[kind]["spec"]["versions"]
    columns = version["additionalPrinterColumns"]
    assert [c["name"] for c in columns] == EXPECTED_COLUMNS[kind]
    assert columns[-1] == {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    for column in columns:
        assert column["type"] in {"string", "integer", "number", "boolean", "date"}
        assert column["jsonPath"].startswith(".")


@pytest.mark.parametrize("kind", sorted(EXPECTED_COLUMNS))
def test_printer_columns_point_at_fields_of_their_type(kind: str) -> None:
    schema = root_schema(by_kind()[kind])
    for column in by_kind()[kind]["spec"]["versions"][0]["additionalPrinterColumns"]:
        parts = re.sub(r"\[[^\]]*\]", "[]", column["jsonPath"]).strip(".").split(".")
        if parts[0] == "metadata":
            continue
        node = schema
        for part in parts:
            name = part.removesuffix("[]")
            assert name in node.get("properties", {}), f"{column['name']}: {column['jsonPath']} is not in the schema"
            node = node["properties"][name]
            if part.endswith("[]"):
                node = node["items"]
        assert node["type"] == column["type"], column


def test_negotiation_reason_and_protocol_columns_are_wide_only() -> None:
    columns = {c["name"]: c for c in by_kind()["Negotiation"]["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert {name for name, c in columns.items() if c.get("priority", 0) > 0} == {"Reason", "Protocol"}


# --- examples validate with the models ------------------------------------------------------------------------------


def example_documents() -> list[Any]:
    found = []
    for file in sorted(EXAMPLES.glob("*.yaml")):
        for index, doc in enumerate(yaml.safe_load_all(file.read_text())):
            if isinstance(doc, dict) and doc.get("kind") in KINDS:
                name = (doc.get("metadata") or {}).get("name", index)
                found.append(pytest.param(doc, id=f"{file.name}:{doc['kind']}/{name}"))
    return found


EXAMPLE_DOCS = example_documents()


def test_examples_cover_agents_and_policies() -> None:
    kinds = {p.values[0]["kind"] for p in EXAMPLE_DOCS}
    assert {"Agent", "NegotiationPolicy"} <= kinds


@pytest.mark.parametrize("doc", EXAMPLE_DOCS)
def test_example_validates_with_the_models(doc: dict[str, Any]) -> None:
    model = KINDS[doc["kind"]].model_validate(doc)
    assert model.model_dump(by_alias=True)["kind"] == doc["kind"]


@pytest.mark.parametrize("doc", EXAMPLE_DOCS)
def test_example_fields_survive_api_server_pruning(doc: dict[str, Any]) -> None:
    """Every field an example sets is in the CRD schema, so the API server keeps it."""
    schema = root_schema(by_kind()[doc["kind"]])
    pruned: list[str] = []

    def visit(value: Any, node: dict[str, Any], path: str) -> None:
        if node.get("x-kubernetes-preserve-unknown-fields"):
            return
        if isinstance(value, dict):
            props = node.get("properties", {})
            extra = node.get("additionalProperties")
            for key, sub in value.items():
                if key in props:
                    visit(sub, props[key], f"{path}.{key}")
                elif isinstance(extra, dict):
                    visit(sub, extra, f"{path}.{key}")
                else:
                    pruned.append(f"{path}.{key}")
        elif isinstance(value, list) and isinstance(node.get("items"), dict):
            for index, sub in enumerate(value):
                visit(sub, node["items"], f"{path}[{index}]")

    visit({k: v for k, v in doc.items() if k != "metadata"}, schema, "")
    assert pruned == []


# --- `accord crds --check` -----------------------------------------------------------------------------------------


def test_check_passes_on_the_committed_crds() -> None:
    assert main(["crds", "--check", "--out", str(CRDS)]) == 0


def test_check_passes_on_a_fresh_copy(tmp_path: Path) -> None:
    out = tmp_path / "crds"
    assert main(["crds", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(RENDERED)
    assert main(["crds", "--check", "--out", str(out)]) == 0


def test_check_passes_on_a_copy_of_the_committed_files(tmp_path: Path) -> None:
    out = tmp_path / "crds"
    shutil.copytree(CRDS, out)
    assert main(["crds", "--check", "--out", str(out)]) == 0


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_check_fails_on_a_tampered_copy(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "crds"
    shutil.copytree(CRDS, out)
    path = out / name
    path.write_text(path.read_text().replace("categories:\n    - accord", "categories:\n    - all"))
    assert path.read_text() != RENDERED[name]
    assert main(["crds", "--check", "--out", str(out)]) == 1
    assert name in capsys.readouterr().err
    assert path.read_text() != RENDERED[name], "--check must not rewrite the files"


def test_check_fails_when_a_file_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "crds"
    shutil.copytree(CRDS, out)
    removed = sorted(RENDERED)[0]
    (out / removed).unlink()
    assert main(["crds", "--check", "--out", str(out)]) == 1
    assert removed in capsys.readouterr().err
    assert not (out / removed).exists()


def test_check_fails_on_whitespace_only_change(tmp_path: Path) -> None:
    out = tmp_path / "crds"
    shutil.copytree(CRDS, out)
    name = sorted(RENDERED)[-1]
    (out / name).write_text(RENDERED[name] + "\n")
    assert main(["crds", "--check", "--out", str(out)]) == 1


def test_crds_without_check_repairs_a_tampered_copy(tmp_path: Path) -> None:
    out = tmp_path / "crds"
    shutil.copytree(CRDS, out)
    name = sorted(RENDERED)[0]
    (out / name).write_text("tampered\n")
    assert main(["crds", "--out", str(out)]) == 0
    assert (out / name).read_text() == RENDERED[name]
    assert main(["crds", "--check", "--out", str(out)]) == 0


def test_a_negotiations_spec_is_immutable_by_its_schema() -> None:
    """On servers with CRD validation rules the API refuses an edit of a record's spec itself."""
    from accord.models.crd import DEFINITIONS, crd_manifest

    negotiation = next(d for d in DEFINITIONS if d.kind == "Negotiation")
    spec = crd_manifest(negotiation)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert {"rule": "self == oldSelf"}.items() <= spec["x-kubernetes-validations"][0].items()
