"""The helm chart in helm/accord, rendered by the real helm for each value set in its ci/ directory.

No cluster: documents are checked for their structure and for what they grant. e2e/test_chart.py
sends the same renderings to an API server (`kubectl apply --dry-run=server`) and runs the operator
under the chart's ServiceAccount.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from accord.cli import main
from accord.models.crd import DEFINITIONS, RULES_GUARD, crd_manifest, render_chart_crds
from accord.operator import observability
from accord_dev.cluster import tools
from tests.models.test_crds import schema_nodes

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "accord"
CASES = sorted(p.name.removesuffix("-values.yaml") for p in (CHART / "ci").glob("*-values.yaml"))
RELEASE, NAMESPACE = "accord", "accord-system"
SERVICE_ACCOUNT = ("accord", NAMESPACE)
CLUSTER_SCOPED = {
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "Namespace",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
}
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


@functools.cache
def helm_binary() -> str:
    try:
        return str(tools.helm())
    except tools.ToolNotFoundError as exc:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


def values_file(case: str) -> Path:
    return CHART / "ci" / f"{case}-values.yaml"


def case_values(case: str) -> dict[str, Any]:
    loaded = yaml.safe_load(values_file(case).read_text())
    return loaded or {}


@functools.cache
def rendered(case: str, *sets: str) -> tuple[dict[str, Any], ...]:
    argv = ["template", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(values_file(case))]
    for assignment in sets:
        argv += ["--set", assignment]
    out = helm(*argv).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def of_kind(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: tuple[dict[str, Any], ...], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in of_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} named {name}"
    return found[0]


def container(docs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    (operator,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(operator)


def grants(docs: tuple[dict[str, Any], ...]) -> set[tuple[str, str, str, str, tuple[str, ...]]]:
    """(where, apiGroup, resource, verb, resourceNames) the operator's ServiceAccount holds: where is `*` or a namespace."""
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs}
    held = set()
    for binding in of_kind(docs, "ClusterRoleBinding") + of_kind(docs, "RoleBinding"):
        subjects = {(s["name"], s.get("namespace")) for s in binding["subjects"] if s["kind"] == "ServiceAccount"}
        if SERVICE_ACCOUNT not in subjects:
            continue
        where = binding["metadata"].get("namespace") or "*"
        ref = binding["roleRef"]
        role = roles[(ref["kind"], None if ref["kind"] == "ClusterRole" else where, ref["name"])]
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        held.add((where, group, resource, verb, tuple(rule.get("resourceNames", ()))))
    return held


# --- the chart as a whole ---------------------------------------------------------------------------------------


def test_every_value_set_is_covered() -> None:
    assert {"default", "crds-disabled", "crds-not-kept", "ha", "webhook-cert-secret", "monitoring"} <= set(CASES)
    assert "watched-namespaces" in CASES


@pytest.mark.parametrize("case", CASES)
def test_helm_lint_strict(case: str) -> None:
    result = helm("lint", "--strict", str(CHART), "-f", str(values_file(case)))
    assert "0 chart(s) failed" in result.stdout


def test_chart_metadata_matches_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == project["version"] == "0.1.0"
    assert container(rendered("default"))["image"] == f"accord-operator:{chart['appVersion']}"


@pytest.mark.parametrize("case", CASES)
def test_every_document_is_a_named_kubernetes_object(case: str) -> None:
    for doc in rendered(case):
        assert doc.get("apiVersion") and doc.get("kind"), doc
        meta = doc.get("metadata") or {}
        assert meta.get("name"), doc
        assert meta.get("labels", {}).get("app.kubernetes.io/part-of") == "accord", (doc["kind"], meta["name"])
        if doc["kind"] not in CLUSTER_SCOPED:
            assert meta.get("namespace"), f"{doc['kind']}/{meta['name']} has no namespace"


@pytest.mark.parametrize("case", CASES)
def test_names_are_unique(case: str) -> None:
    keys = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in rendered(case)]
    assert len(keys) == len(set(keys))


# --- the Deployment ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_the_operator_runs_locked_down(case: str) -> None:
    docs = rendered(case)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["serviceAccountName"] == "accord"
    ctx = container(docs)["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in ctx
    mounts = {m["mountPath"] for m in container(docs)["volumeMounts"]}
    assert "/tmp" in mounts, "a writable /tmp on a read-only root filesystem"


@pytest.mark.parametrize("case", CASES)
def test_probes_are_on_the_metrics_port(case: str) -> None:
    operator = container(rendered(case))
    ports = {p["name"]: p["containerPort"] for p in operator["ports"]}
    assert ports["metrics"] == 8080
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert operator["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert "--metrics-port=8080" in operator["args"]


ARGS: dict[str, tuple[set[str], set[str]]] = {
    # case: (flags present, flag names absent)
    "default": (
        {"--log-level=info", "--log-format=text", "--no-placements"},
        {"--webhook", "--namespace", "--prometheus-url", "--protected-namespace"},
    ),
    "placements": (
        {"--protected-namespace=payments", "--webhook", "--webhook-configurations=external"},
        {"--no-placements", "--namespace"},
    ),
    "ha": (
        {"--prometheus-url=http://prometheus-operated.monitoring.svc:9090"},
        {"--webhook", "--namespace"},
    ),
    "watched-namespaces": (
        {"--namespace=accord-ci-shop", "--namespace=accord-ci-web", "--log-format=json", "--log-level=debug"},
        set(),
    ),
    "webhook-cert-secret": (
        {
            "--webhook",
            "--webhook-host=0.0.0.0",
            "--webhook-port=9443",
            "--webhook-url-host=accord-webhook.accord-system.svc",
            "--webhook-cert=/etc/accord/webhook/tls.crt",
            "--webhook-key=/etc/accord/webhook/tls.key",
            "--webhook-ca=/etc/accord/webhook/ca.crt",
            "--webhook-configurations=external",
        },
        {"--namespace"},
    ),
    "webhook-cert-manager": (
        {"--webhook", "--webhook-ca=/etc/accord/webhook/ca.crt", "--webhook-configurations=external"},
        set(),
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_every_replica_writes_only_while_it_holds_the_release_leases(case: str) -> None:
    args = container(rendered(case))["args"]
    assert f"--lease-namespace={NAMESPACE}" in args
    assert f"--lease-name={RELEASE}" in args
    assert "--no-leader-election" not in args


@pytest.mark.parametrize("case", sorted(ARGS))
def test_accord_run_flags(case: str) -> None:
    present, absent = ARGS[case]
    args = container(rendered(case))["args"]
    assert args[0] == "run"
    assert present <= set(args), present - set(args)
    assert not [a for a in args if a.split("=")[0] in absent]


def test_every_flag_the_chart_passes_exists() -> None:
    from accord.cli import build_parser

    run = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    known = {option for action in run._actions for option in action.option_strings}
    for case in CASES:
        for arg in container(rendered(case))["args"][1:]:
            assert arg.split("=")[0] in known, f"{case}: accord run has no {arg}"


# --- RBAC ---------------------------------------------------------------------------------------------------------

OWN = (
    {("accord.dev", "agents", v) for v in ("get", "list", "watch")}
    | {("accord.dev", "negotiationpolicies", v) for v in ("get", "list", "watch", "patch")}
    | {("accord.dev", "negotiations", v) for v in ("get", "list", "watch", "create", "delete")}
    | {("accord.dev", f"{r}/status", "patch") for r in ("agents", "negotiationpolicies", "negotiations")}
)
WORKLOADS = (
    {("apps", r, v) for r in ("deployments", "statefulsets") for v in ("get", "list", "watch")}
    # Replicas only through the scale subresource, by update with the read resourceVersion.
    | {("apps", f"{r}/scale", v) for r in ("deployments", "statefulsets") for v in ("get", "update")}
    | {("autoscaling", "horizontalpodautoscalers", v) for v in ("get", "list", "watch", "patch")}
    | {("", "events", "create"), ("", "events", "patch")}
)
# Pod templates (and the negotiation annotation) only with placements.enabled.
PLACEMENTS = {("apps", r, "patch") for r in ("deployments", "statefulsets")} | {
    # A placement's rollout is followed: the scheduler's reason is read on the pods it cannot place.
    ("", "pods", v)
    for v in ("get", "list")
}
NAMESPACED = OWN | WORKLOADS
CLUSTER = {("", "nodes", v) for v in ("get", "list", "watch")} | {
    ("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")
}
# Cluster-wide installs only: ClusterNegotiationPolicies and the Namespaces' opt-in labels.
CLUSTER_POLICIES = (
    {("accord.dev", "clusternegotiationpolicies", v) for v in ("get", "list", "watch", "patch")}
    | {("accord.dev", "clusternegotiationpolicies/status", "patch")}
    | {("", "namespaces", v) for v in ("get", "list", "watch")}
)


def lease_names(shards: int) -> tuple[str, ...]:
    return (f"{RELEASE}-members", *(f"{RELEASE}-shard-{i}" for i in range(shards)))


def expected_grants(case: str) -> set[tuple[str, str, str, str, tuple[str, ...]]]:
    values = case_values(case)
    watched = values.get("watchNamespaces") or []
    scopes = watched or ["*"]
    held = {(where, g, r, v, ()) for where in scopes for g, r, v in NAMESPACED}
    if (values.get("placements") or {}).get("enabled"):
        held |= {(where, g, r, v, ()) for where in scopes for g, r, v in PLACEMENTS}
        # What the pods on each node request, for the pools' room: listed cluster-wide, whatever is watched.
        held.add(("*", "", "pods", "list", ()))
    held |= {("*", g, r, v, ()) for g, r, v in CLUSTER}
    if watched:
        held |= {("*", "", "namespaces", v, ()) for v in ("list", "watch")}
    else:
        held |= {("*", g, r, v, ()) for g, r, v in CLUSTER_POLICIES}
    # Leadership: the members Lease and one Lease per shard, in the release's namespace, named after the release.
    held |= {(NAMESPACE, "coordination.k8s.io", "leases", "create", ())}
    leases = lease_names(int(values.get("shards") or values.get("replicaCount", 1)))
    held |= {(NAMESPACE, "coordination.k8s.io", "leases", v, leases) for v in ("get", "update")}
    secrets = (values.get("rbac") or {}).get("externalAgentSecrets") or {}
    for namespace in secrets.get("namespaces", []):
        held.add((namespace, "", "secrets", "get", tuple(secrets.get("names", []))))
    return held


@pytest.mark.parametrize("case", CASES)
def test_the_service_account_holds_exactly_what_the_operator_uses(case: str) -> None:
    held = grants(rendered(case))
    expected = expected_grants(case)
    assert held - expected == set(), "more than the operator needs"
    assert expected - held == set(), "less than the operator needs"


@pytest.mark.parametrize("case", CASES)
def test_rbac_has_no_wildcards(case: str) -> None:
    for doc in of_kind(rendered(case), "ClusterRole") + of_kind(rendered(case), "Role"):
        for rule in doc["rules"]:
            for key in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(key, []), (doc["metadata"]["name"], rule)


@pytest.mark.parametrize("case", CASES)
def test_no_cluster_role_mentions_secrets(case: str) -> None:
    for doc in of_kind(rendered(case), "ClusterRole"):
        assert not [r for r in doc["rules"] if "secrets" in r["resources"]], doc["metadata"]["name"]


@pytest.mark.parametrize("case", CASES)
def test_what_the_operator_can_never_do(case: str) -> None:
    for where, group, resource, verb, _names in grants(rendered(case)):
        assert group != "rbac.authorization.k8s.io"
        assert verb not in {"escalate", "bind", "impersonate", "deletecollection"}
        assert resource not in {"pods/exec", "pods/log", "serviceaccounts/token", "configmaps"}
        if resource == "pods":  # read with placements only (see PLACEMENTS), never written or watched
            assert verb in {"get", "list"}, f"{verb} pods"
        if group == "apps":
            assert verb not in {"create", "delete"}, f"{verb} {resource}"
        if resource in {"nodes", "customresourcedefinitions", "namespaces"}:
            assert verb not in WRITE_VERBS, f"{verb} {resource}"
        if resource == "secrets":
            assert (verb, where) != ("get", "*") and verb == "get", "Secrets are read by name, per namespace"
        assert group != "admissionregistration.k8s.io", "the chart owns the webhook configurations"
        if resource.endswith("/scale"):
            assert verb != "patch", "replicas by update with the read resourceVersion"


def test_secrets_are_readable_only_where_listed() -> None:
    docs = rendered("watched-namespaces")
    role = one(docs, "Role", "accord-agent-secrets")
    assert role["metadata"]["namespace"] == "accord-ci-shop"
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["pricing-hmac"], "verbs": ["get"]}
    ]
    assert not [
        d
        for d in of_kind(docs, "Role")
        if d["metadata"]["namespace"] == "accord-ci-web" and any("secrets" in r["resources"] for r in d["rules"])
    ]


def test_the_namespaced_install_grants_roles_in_the_watched_namespaces_only() -> None:
    docs = rendered("watched-namespaces")
    cluster_bound = {d["roleRef"]["name"] for d in of_kind(docs, "ClusterRoleBinding")}
    assert cluster_bound == {"accord-kopf", "accord-nodes"}, "only read-only discovery and Nodes stay cluster-wide"
    for doc in of_kind(docs, "ClusterRole"):
        for rule in doc["rules"]:
            assert set(rule["verbs"]) <= {"get", "list", "watch"}, (doc["metadata"]["name"], rule)
            assert "clusternegotiationpolicies" not in rule["resources"]
    for role in ("accord-operator", "accord-kopf-namespaced"):
        roles = {d["metadata"]["namespace"] for d in of_kind(docs, "Role") if d["metadata"]["name"] == role}
        bound = {
            d["metadata"]["namespace"]
            for d in of_kind(docs, "RoleBinding")
            if d["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role}
        }
        assert roles == bound == {"accord-ci-shop", "accord-ci-web"}
    assert "--namespace=accord-ci-shop" in container(docs)["args"]


@pytest.mark.parametrize(("case", "patch"), [("default", False), ("placements", True)])
def test_pod_templates_are_patched_only_with_placements(case: str, patch: bool) -> None:
    held = grants(rendered(case))
    for resource in ("deployments", "statefulsets"):
        assert (("*", "apps", resource, "patch", ()) in held) is patch
        assert ("*", "apps", f"{resource}/scale", "update", ()) in held
    assert ("--no-placements" in container(rendered(case))["args"]) is not patch


# --- replicas and shards ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_disruption_budget_only_with_several_replicas(case: str) -> None:
    docs = rendered(case)
    replicas = int(case_values(case).get("replicaCount", 1))
    assert one(docs, "Deployment")["spec"]["replicas"] == replicas
    budgets = of_kind(docs, "PodDisruptionBudget")
    if replicas == 1:
        assert budgets == []
        return
    (budget,) = budgets
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]


SHARDS = [
    # (--set assignments, shards the replicas count)
    ((), 1),
    (("replicaCount=3",), 3),
    (("replicaCount=3", "shards=12"), 12),
]


@pytest.mark.parametrize(("sets", "shards"), SHARDS)
def test_the_replicas_count_shards_as_many_as_replicas_unless_set(sets: tuple[str, ...], shards: int) -> None:
    args = container(rendered("default", *sets))["args"]
    assert [a for a in args if a.startswith("--shards")] == [f"--shards={shards}"]


@pytest.mark.parametrize(("sets", "shards"), SHARDS)
def test_the_lease_role_names_the_members_and_every_shard_lease(sets: tuple[str, ...], shards: int) -> None:
    role = one(rendered("default", *sets), "Role", f"{RELEASE}-lease")
    assert role["metadata"]["namespace"] == NAMESPACE
    named = [r for r in role["rules"] if "resourceNames" in r]
    assert [sorted(r["verbs"]) for r in named] == [["get", "update"]]
    names = set(named[0]["resourceNames"])
    assert names == set(lease_names(shards))
    assert f"{RELEASE}-shard-{shards - 1}" in names
    assert f"{RELEASE}-shard-{shards}" not in names
    assert [r["verbs"] for r in role["rules"] if "resourceNames" not in r] == [["create"]], "create takes no names"


def test_no_kopf_peering_is_left() -> None:
    """kopf peering would pause all replicas but one; the replicas shard the namespaces instead."""
    assert not (CHART / "crds").exists()
    for case in CASES:
        out = helm("template", RELEASE, str(CHART), "-f", str(values_file(case)), "--include-crds").stdout
        assert "kopf.dev" not in out, case
        assert "--peering" not in container(rendered(case))["args"]


@pytest.mark.parametrize("assignment", ["shards=-1", "shards=1025", "replicaCount=1025"])
def test_shards_out_of_range_are_refused(assignment: str) -> None:
    """The operator counts 1 to 1024 shards; replicaCount counts them only while shards is 0."""
    result = helm("template", RELEASE, str(CHART), "--set", assignment, check=False)
    assert result.returncode != 0
    assert "shards" in result.stderr


def test_the_pdb_api_follows_the_kubernetes_version() -> None:
    assert one(rendered("ha"), "PodDisruptionBudget")["apiVersion"] == "policy/v1"
    # Kubernetes 1.20 serves only policy/v1beta1; e2e/test_chart.py sends this rendering to one.
    args = ("template", RELEASE, str(CHART), "-f", str(values_file("ha")), "--show-only", "templates/pdb.yaml")
    assert "apiVersion: policy/v1beta1\n" in helm(*args, "--kube-version", "1.20.2").stdout


@pytest.mark.parametrize(("version", "rules"), [("1.24.9", False), ("1.25.0", True)])
def test_a_negotiations_spec_is_immutable_by_schema_where_the_server_enforces_rules(version: str, rules: bool) -> None:
    """CRD validation rules are enforced from 1.25; an older server (and kubectl talking to it) refuses the keyword."""
    out = helm(
        "template",
        RELEASE,
        str(CHART),
        "--show-only",
        "templates/crds/accord.dev_negotiations.yaml",
        "--kube-version",
        version,
    ).stdout
    crd = yaml.safe_load(out)
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert ("x-kubernetes-validations" in spec) is rules
    if rules:
        assert spec["x-kubernetes-validations"][0]["rule"] == "self == oldSelf"


# --- the webhook ---------------------------------------------------------------------------------------------------


def test_webhook_with_a_certificate_secret() -> None:
    docs = rendered("webhook-cert-secret")
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["webhook-tls"]["secret"]["secretName"] == "accord-webhook-tls"
    service = one(docs, "Service", "accord-webhook")
    assert service["spec"]["ports"] == [{"name": "webhook", "port": 9443, "targetPort": "webhook", "protocol": "TCP"}]
    assert "publishNotReadyAddresses" not in service["spec"], "only a ready replica answers the webhook"
    assert one(docs, "Service", "accord")["spec"]["publishNotReadyAddresses"] is True


WEBHOOK_IDS = {"MutatingWebhookConfiguration": "stamp-approver", "ValidatingWebhookConfiguration": "check-approver"}


@pytest.mark.parametrize("case", ["webhook-cert-secret", "webhook-cert-manager", "placements"])
def test_the_chart_owns_the_webhook_configurations_and_they_fail_closed(case: str) -> None:
    import kopf

    from accord.operator import webhooks  # noqa: F401 - importing registers the hooks

    docs = rendered(case)
    registered = {h.id for h in kopf.get_default_registry()._webhooks.get_all_handlers()}
    for kind, hook in WEBHOOK_IDS.items():
        assert hook in registered, f"the operator serves no hook {hook}"
        (webhook,) = one(docs, kind, "accord-approvals")["webhooks"]
        assert webhook["failurePolicy"] == "Fail"
        assert webhook["sideEffects"] == "None"
        assert webhook["clientConfig"]["service"] == {
            "namespace": NAMESPACE,
            "name": "accord-webhook",
            "port": 9443,
            "path": f"/{hook}",
        }
        assert webhook["rules"] == [
            {
                "apiGroups": ["accord.dev"],
                "apiVersions": ["v1alpha1"],
                "resources": ["negotiations"],
                "operations": ["UPDATE"],
                "scope": "Namespaced",
            }
        ]
        if case == "webhook-cert-manager":
            annotations = one(docs, kind, "accord-approvals")["metadata"]["annotations"]
            assert annotations["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/accord-webhook"
        else:
            assert webhook["clientConfig"]["caBundle"]


def test_without_a_certificate_the_chart_makes_one_the_configurations_trust() -> None:
    import base64

    from cryptography import x509

    docs = rendered("placements")
    secret = one(docs, "Secret", "accord-webhook-tls")
    (webhook,) = one(docs, "ValidatingWebhookConfiguration")["webhooks"]
    assert webhook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    assert cert.issuer == ca.subject
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert "accord-webhook.accord-system.svc" in names
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["webhook-tls"]["secret"]["secretName"] == "accord-webhook-tls"


def test_no_webhook_no_configurations() -> None:
    docs = rendered("default")
    assert of_kind(docs, "ValidatingWebhookConfiguration") == of_kind(docs, "MutatingWebhookConfiguration") == []
    assert of_kind(docs, "Secret") == []


def test_webhook_with_cert_manager() -> None:
    docs = rendered("webhook-cert-manager")
    certificate = one(docs, "Certificate")
    assert "accord-webhook.accord-system.svc" in certificate["spec"]["dnsNames"]
    assert certificate["spec"]["issuerRef"] == {
        "name": "accord-selfsigned",
        "kind": "Issuer",
        "group": "cert-manager.io",
    }
    assert one(docs, "Issuer")["spec"] == {"selfSigned": {}}
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["webhook-tls"]["secret"]["secretName"] == certificate["spec"]["secretName"]
    issued = rendered(
        "webhook-cert-manager",
        "webhook.certManager.issuerRef.name=corp-ca",
        "webhook.certManager.issuerRef.kind=ClusterIssuer",
    )
    assert of_kind(issued, "Issuer") == []
    assert one(issued, "Certificate")["spec"]["issuerRef"]["name"] == "corp-ca"


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("webhook.enabled=true", "webhook.certSecret.name=mine"), "needs webhook.certSecret.caBundle"),
        (
            ("webhook.enabled=true", "webhook.certManager.enabled=true", "webhook.certSecret.name=mine"),
            "not both",
        ),
    ],
)
def test_webhook_settings_that_cannot_work_are_refused(sets: tuple[str, ...], message: str) -> None:
    argv = ["template", RELEASE, str(CHART)]
    for assignment in sets:
        argv += ["--set", assignment]
    result = helm(*argv, check=False)
    assert result.returncode != 0
    assert message in result.stderr


# --- metrics -------------------------------------------------------------------------------------------------------


def test_service_monitor_scrapes_the_metrics_service() -> None:
    docs = rendered("monitoring")
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    selector = monitor["spec"]["selector"]["matchLabels"]
    matching = [s for s in of_kind(docs, "Service") if selector.items() <= s["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in matching] == ["accord"]
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert "metrics" in {p["name"] for p in matching[0]["spec"]["ports"]}


def dashboard(docs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    configmap = one(docs, "ConfigMap", "accord-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    loaded: dict[str, Any] = json.loads(configmap["data"]["accord.json"])
    return loaded


def test_dashboard_shows_every_operator_metric() -> None:
    board = dashboard(rendered("monitoring"))
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p["targets"])
    exported = {m.name for m in observability.REGISTRY.collect()}
    for metric in exported:
        assert re.search(rf"\b{metric}(_total|_bucket)?\b", exprs), f"no panel shows {metric}"
    used = set(re.findall(r"\baccord_[a-z_]+", exprs))
    known = {f"{m}{suffix}" for m in exported for suffix in ("", "_total", "_bucket", "_sum", "_count")}
    assert used <= known, used - known
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])


def test_monitoring_is_off_by_default() -> None:
    assert of_kind(rendered("default"), "ServiceMonitor") == []
    assert of_kind(rendered("default"), "ConfigMap") == []


# --- CRDs ----------------------------------------------------------------------------------------------------------

# The models' CRDs as the chart renders them for a current server: with their validation rules.
GENERATED = {m["metadata"]["name"]: m for m in (crd_manifest(d) for d in DEFINITIONS)}


def test_chart_crd_templates_are_the_generated_ones() -> None:
    folder = CHART / "templates" / "crds"
    assert sorted(p.name for p in folder.iterdir()) == sorted(render_chart_crds())
    for name, text in render_chart_crds().items():
        assert (folder / name).read_text() == text, f"{folder / name} is stale: run `accord crds`"


@pytest.mark.parametrize(
    ("case", "installed", "kept"),
    [("default", True, True), ("crds-not-kept", True, False), ("crds-disabled", False, False)],
)
def test_rendered_crds_equal_the_models(case: str, installed: bool, kept: bool) -> None:
    crds = of_kind(rendered(case), "CustomResourceDefinition")
    if not installed:
        assert crds == []
        return
    assert sorted(c["metadata"]["name"] for c in crds) == sorted(GENERATED)
    for crd in crds:
        meta = crd["metadata"]
        annotations = meta.get("annotations") or {}
        assert (annotations.get("helm.sh/resource-policy") == "keep") is kept
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        bare = {**crd, "metadata": {"name": meta["name"]}}
        assert bare == GENERATED[meta["name"]]


def copy_of_the_repository(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "crds", tmp_path / "crds")
    shutil.copytree(CHART, tmp_path / "helm" / "accord")
    return tmp_path


def test_crds_check_covers_the_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = copy_of_the_repository(tmp_path)
    out = str(repo / "crds")
    assert main(["crds", "--check", "--out", out]) == 0
    template = repo / "helm" / "accord" / "templates" / "crds" / "accord.dev_agents.yaml"
    template.write_text(
        template.read_text().replace("helm.sh/resource-policy: keep", "helm.sh/resource-policy: delete")
    )
    assert main(["crds", "--check", "--out", out]) == 1
    assert "templates/crds/accord.dev_agents.yaml" in capsys.readouterr().err
    assert main(["crds", "--check", "--out", out, "--chart-dir", ""]) == 0, "'' leaves the chart out"
    assert main(["crds", "--out", out]) == 0
    assert template.read_text() == render_chart_crds()["accord.dev_agents.yaml"]
    assert main(["crds", "--check", "--out", out]) == 0


def test_crds_check_fails_when_the_chart_lacks_a_crd(tmp_path: Path) -> None:
    repo = copy_of_the_repository(tmp_path)
    (repo / "helm" / "accord" / "templates" / "crds" / "accord.dev_negotiations.yaml").unlink()
    assert main(["crds", "--check", "--out", str(repo / "crds")]) == 1
    chart = str(repo / "helm" / "accord")
    assert main(["crds", "--check", "--out", str(tmp_path / "elsewhere"), "--chart-dir", chart]) == 1


def test_go_template_braces_in_a_description_are_escaped() -> None:
    for text in render_chart_crds().values():
        body = text.split("\n", 2)[2]
        actions = re.findall(r"\{\{.*?\}\}", body)
        assert set(actions) <= {
            '{{- include "accord.labels" . | nindent 4 }}',
            "{{- if .Values.crds.keep }}",
            "{{- end }}",
            '{{ "{{" }}',
            RULES_GUARD,
        }


# --- values.schema.json --------------------------------------------------------------------------------------------


def test_schema_is_strict_at_every_level_it_defines() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    loose = [
        path
        for path, node in schema_nodes(schema)
        if "properties" in node and node.get("additionalProperties") is not False
    ]
    assert loose == []


def test_defaults_follow_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(defaults) <= set(schema["properties"])
    assert set(schema["required"]) <= set(defaults)


@pytest.mark.parametrize(
    "assignment",
    [
        "foo=bar",
        "image.foo=bar",
        "crds.foo=true",
        "webhook.certManager.issuerRef.foo=x",
        "metrics.serviceMonitor.foo=x",
        "logLevel=verbose",
        "logFormat=xml",
        "replicaCount=0",
        "watchNamespaces[0]=Not_A_Namespace",
        "prometheus.url=prometheus:9090",
    ],
)
def test_schema_rejects(assignment: str) -> None:
    result = helm("template", RELEASE, str(CHART), "--set", assignment, check=False)
    assert result.returncode != 0, f"--set {assignment} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr or "schema" in result.stderr


# --- what helm prints and tests ------------------------------------------------------------------------------------


@functools.cache
def notes(*sets: str) -> str:
    argv = ["install", RELEASE, str(CHART), "-n", NAMESPACE, "--dry-run=client", "-o", "json"]
    for assignment in sets:
        argv += ["--set", assignment]
    return str(json.loads(helm(*argv).stdout)["info"]["notes"])


def test_notes_say_what_to_do_next() -> None:
    text = notes()
    for step in (
        "kubectl -n shop apply -f examples/agents.yaml",
        "kubectl -n shop apply -f examples/policy.yaml",
        "kubectl -n shop get negotiations -w",
        "kubectl -n shop describe negotiation <name>",
        "accord explain <name> -n shop",
        "kubectl -n shop annotate negotiation <name> accord.dev/approval=approved",
        "accord approve <name> -n shop",
        "helm test accord -n accord-system",
    ):
        assert step in text
    assert "prometheus.url is not set" in text
    assert "webhook is off" in text
    assert "docs/install.md" in text
    assert "Placements are off" in text
    assert "ClusterNegotiationPolicy" in text


def test_notes_follow_the_values() -> None:
    text = notes(
        "prometheus.url=http://prom:9090",
        "webhook.enabled=true",
        "crds.enabled=false",
        "placements.enabled=true",
        "watchNamespaces={shop}",
    )
    assert "prometheus.url is not set" not in text
    assert "webhook is on" in text
    assert "Placements are off" not in text
    assert "ClusterNegotiationPolicy" not in text, "a namespaced install serves none"
    assert "kubectl apply -f crds/" in text


def test_helm_test_hook_fetches_the_metrics_of_the_service() -> None:
    docs = rendered("default")
    pods = of_kind(docs, "Pod")
    (pod,) = pods
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (check,) = pod["spec"]["containers"]
    assert check["image"] == container(docs)["image"]
    script = " ".join(check["command"])
    service = one(docs, "Service", "accord")
    port = service["spec"]["ports"][0]["port"]
    assert f"http://accord.accord-system.svc:{port}/metrics" in script
    assert check["securityContext"]["readOnlyRootFilesystem"] is True
    assert of_kind(rendered("default", "test.enabled=false"), "Pod") == []


# --- the image -----------------------------------------------------------------------------------------------------


def test_image_and_chart_agree_on_user_and_command() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?$", dockerfile, flags=re.MULTILINE)
    assert len(stages) == 2 and stages[0][1] == "build" and stages[1][1] == "", "build stage, then a clean one"
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in dockerfile
    final = dockerfile.split("\nFROM ${PYTHON_IMAGE}\n", 1)[1]
    assert "USER 65532:65532" in final
    assert 'ENTRYPOINT ["accord"]' in final
    assert 'CMD ["run"]' in final
    assert not re.search(r"apt-get|gcc|build-essential|pip install", final), "no build tools in the final image"
    pod = one(rendered("default"), "Deployment")["spec"]["template"]["spec"]
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (65532, 65532)
    assert pod["containers"][0]["args"][0] == "run"


def test_log_format_json_writes_one_object_a_line() -> None:
    """What `logFormat: json` turns on (`accord run --log-format=json`)."""
    import logging

    from accord.cli import JsonFormatter

    record = logging.LogRecord("accord.operator.loop", logging.INFO, __file__, 1, "decision %s", ("web",), None)
    record.k8s_ref = {"namespace": "shop", "name": "web"}
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "accord.operator.loop"
    assert entry["message"] == "decision web"
    assert entry["object"] == {"namespace": "shop", "name": "web"}
