"""The helm chart on a real API server.

- `helm install` into a namespace of its own: the objects are created, and the operator's Pod is
  created and stays Pending (the local control plane has no kubelet; that is expected).
- Every rendering of helm/accord/ci/*-values.yaml passes the API server's own validation
  (`kubectl apply --dry-run=server`): the CRDs' structural schemas, RBAC, the Deployment.
- The operator runs out of the cluster with the bearer token of the chart's ServiceAccount and passes
  the scale-up, approval and audit scenarios of test_operator.py, approval webhook on: the chart's
  RBAC is enough. The chart owns the webhook configurations (failurePolicy Fail); the test routes
  them to the local process, as the webhook Service would to a replica, and the operator registers
  nothing itself.
- `kubectl auth can-i` as that ServiceAccount: what it may do and what it may not; and as the
  ServiceAccount of a namespaced install without placements (Roles in one namespace only).
- `helm uninstall` keeps the CRDs with crds.keep and removes them without.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from accord.operator.handlers import _self_signed
from accord_dev.cluster.prometheus import PrometheusServer
from operator_process import OperatorProcess
from providers import REPO_ROOT, Cluster, wait_until
from test_operator import (  # noqa: F401 - the fixtures, and the scenarios that run again under the chart's identity
    accord_prometheus,
    crds,
    operator,
    prometheus_port,
    test_a_large_step_waits_for_an_approvers_annotation,
    test_audit_mode_records_but_never_patches,
    test_rising_load_is_met_by_a_negotiated_scale_up,
    webhook_port,
)

CHART = REPO_ROOT / "helm" / "accord"
CASES = sorted(p.name.removesuffix("-values.yaml") for p in (CHART / "ci").glob("*-values.yaml"))
ACCORD_CRDS = ("agents.accord.dev", "negotiationpolicies.accord.dev", "negotiations.accord.dev")
# Kinds of other projects' CRDs, which this cluster does not have: checked in tests/chart instead.
FOREIGN_APIS = {"monitoring.coreos.com/v1", "cert-manager.io/v1"}
# Namespaces the ci value sets name (watchNamespaces, externalAgentSecrets).
CI_NAMESPACES = ("accord-ci-shop", "accord-ci-web")


def suffix() -> str:
    return secrets.token_hex(3)


def docs_of(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def wait_for_crds(cluster: Cluster, names: tuple[str, ...] = ACCORD_CRDS) -> None:
    for name in names:
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")


def install(cluster: Cluster, name: str, *values: str) -> None:
    """A release of the chart in a namespace of its own name."""
    cluster.helm("install", name, str(CHART), f"--namespace={name}", "--create-namespace", *values)


def can_i(cluster: Cluster, kubeconfig: Path, *query: str) -> bool:
    result = cluster.kubectl("auth", "can-i", *query, kubeconfig=kubeconfig, check=False)
    answer = result.stdout.strip()
    assert answer in {"yes", "no"}, result.stderr
    return answer == "yes"


# -- the release and its identity ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def release(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(release, namespace): the chart with the webhook on; the CRDs come from crds/, as in test_operator.py."""
    if cluster.provider == "kind":
        pytest.skip("the kind provider installs the chart and runs the operator in the cluster itself")
    request.getfixturevalue("crds")
    name = f"accord-e2e-{suffix()}"
    namespace = name
    install(
        cluster,
        name,
        "--set=crds.enabled=false",
        "--set=webhook.enabled=true",
        # The scenarios stamp the negotiation annotation, which takes the placements' patch right.
        "--set=placements.enabled=true",
        "--set=prometheus.url=http://prometheus.monitoring.svc:9090",
    )
    try:
        yield name, namespace
    finally:
        cluster.helm("uninstall", name, f"--namespace={namespace}", check=False)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def namespaced_release(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[tuple[str, str, str]]:
    """(release, namespace, watched): the namespaced install, placements off (the default)."""
    if cluster.provider == "kind":
        pytest.skip("the kind provider installs the chart itself")
    request.getfixturevalue("crds")
    name = f"accord-ns-{suffix()}"
    watched = f"{name}-team"
    cluster.kubectl("create", "namespace", watched)
    install(cluster, name, "--set=crds.enabled=false", f"--set=watchNamespaces={{{watched}}}")
    try:
        yield name, name, watched
    finally:
        cluster.helm("uninstall", name, f"--namespace={name}", check=False)
        for ns in (name, watched):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def service_account_token(cluster: Cluster, name: str, namespace: str) -> tuple[str, str | None]:
    """The ServiceAccount's token and CA: from its token Secret (created by 1.20's token controller), else a TokenRequest."""

    def token_secret() -> str | None:
        account = json.loads(cluster.kubectl("get", "serviceaccount", name, "-n", namespace, "-o", "json").stdout)
        found = [s["name"] for s in account.get("secrets") or [] if "token" in s["name"]]
        return found[0] if found else None

    try:
        secret_name = wait_until(token_secret, timeout=15, message=f"the token Secret of {namespace}/{name}")
    except AssertionError:
        # Kubernetes 1.24 and later no longer create token Secrets.
        token = cluster.kubectl("create", "token", name, "-n", namespace, "--duration=2h").stdout.strip()
        return token, None
    secret = json.loads(cluster.kubectl("get", "secret", secret_name, "-n", namespace, "-o", "json").stdout)
    return base64.b64decode(secret["data"]["token"]).decode(), secret["data"]["ca.crt"]


@pytest.fixture(scope="module")
def chart_identity(cluster: Cluster, release: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig with the bearer token of the chart's ServiceAccount and the cluster's CA: not the admin's."""
    name, namespace = release
    return identity_of(cluster, name, namespace, tmp_path_factory)


@pytest.fixture(scope="module")
def namespaced_identity(
    cluster: Cluster, namespaced_release: tuple[str, str, str], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    name, namespace, _ = namespaced_release
    return identity_of(cluster, name, namespace, tmp_path_factory)


def identity_of(cluster: Cluster, name: str, namespace: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    token, ca_data = service_account_token(cluster, name, namespace)
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c["context"] for c in admin["contexts"] if c["name"] == admin["current-context"])
    entry = dict(next(c["cluster"] for c in admin["clusters"] if c["name"] == context["cluster"]))
    if ca_data is not None:
        entry.pop("certificate-authority", None)
        entry["certificate-authority-data"] = ca_data
    elif "certificate-authority" in entry:
        path = Path(entry.pop("certificate-authority"))
        path = path if path.is_absolute() else cluster.kubeconfig.parent / path
        entry["certificate-authority-data"] = base64.b64encode(path.read_bytes()).decode()
    user = f"system:serviceaccount:{namespace}:{name}"
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": entry}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "chart", "context": {"cluster": "e2e", "user": user}}],
        "current-context": "chart",
    }
    path = tmp_path_factory.mktemp(f"identity-{name}") / "service-account.kubeconfig"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def operator_kubeconfig(chart_identity: Path) -> Path:
    """test_operator.py's operator fixture runs the operator as the chart's ServiceAccount in this module."""
    return chart_identity


@pytest.fixture(scope="module")
def operator_args(
    cluster: Cluster,
    release: tuple[str, str],
    webhook_port: int,  # noqa: F811 - the fixture imported above
) -> tuple[str, ...]:
    """The operator as the chart starts it: serving the hooks, registering nothing. The chart's configurations
    point at the webhook Service, which has no replica behind it here (no kubelet): the admin points them at
    the local process instead, with its certificate's CA, as the Service would route to a replica."""
    name, _ = release
    port = webhook_port
    certfile, keyfile = _self_signed("127.0.0.1")
    ca_bundle = base64.b64encode(Path(certfile).read_bytes()).decode()
    for kind, hook in (
        ("mutatingwebhookconfiguration", "stamp-approver"),
        ("validatingwebhookconfiguration", "check-approver"),
    ):
        patch = [
            {
                "op": "replace",
                "path": "/webhooks/0/clientConfig",
                "value": {"url": f"https://127.0.0.1:{port}/{hook}", "caBundle": ca_bundle},
            }
        ]
        cluster.kubectl("patch", kind, f"{name}-approvals", "--type=json", "-p", json.dumps(patch))
    return (
        "--webhook-configurations=external",
        f"--webhook-cert={certfile}",
        f"--webhook-key={keyfile}",
        # The Leases the chart's one replica uses (<name>-members, <name>-shard-0), which its Role names.
        f"--lease-namespace={release[1]}",
        f"--lease-name={name}",
        "--shards=1",
    )


# -- the install --------------------------------------------------------------------------------------------------
def test_the_chart_installs_and_its_pod_waits_for_a_kubelet(cluster: Cluster, release: tuple[str, str]) -> None:
    name, namespace = release
    status = json.loads(cluster.helm("status", name, f"--namespace={namespace}", "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    assert "accord.dev/approval=approved" in status["info"]["notes"]
    deployment = json.loads(cluster.kubectl("get", "deployment", name, "-n", namespace, "-o", "json").stdout)
    pod_spec = deployment["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == name
    assert "--webhook" in pod_spec["containers"][0]["args"]

    def pending_pod() -> dict[str, Any] | None:
        pods = json.loads(
            cluster.kubectl(
                "get", "pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={name}", "-o", "json"
            ).stdout
        )["items"]
        operators = [p for p in pods if "helm.sh/hook" not in (p["metadata"].get("annotations") or {})]
        return operators[0] if operators else None

    pod = wait_until(pending_pod, timeout=30, message="the operator's Pod")
    assert pod["status"]["phase"] == "Pending", "no kubelet runs it on the local control plane"
    assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    hooks = cluster.helm("get", "hooks", name, f"--namespace={namespace}").stdout
    assert "helm.sh/hook: test" in hooks


def test_the_scenarios_ran_as_the_chart_service_account_without_a_denial(
    request: pytest.FixtureRequest, chart_identity: Path
) -> None:
    """After the scenarios imported above: the operator held the chart's token, and the API server never said no."""
    process: OperatorProcess = request.getfixturevalue("operator")
    assert process.kubeconfig == chart_identity
    user = yaml.safe_load(chart_identity.read_text())["users"][0]
    assert set(user["user"]) == {"token"}, "a bearer token, not the admin's client certificate"
    log = process.log_path.read_text(errors="replace")
    assert "--webhook-configurations=external" in log
    assert "Reconfiguring the" not in log, "the chart owns the webhook configurations; the operator registers none"
    # RBAC refusals read `... is forbidden: User "system:serviceaccount:..." cannot ...`; kopf adds its own words.
    for denial in ("is forbidden: User", "Not enough RBAC permissions", "Not enough permissions"):
        assert denial not in log, f"{denial!r} in the operator's log {process.log_path}"
    # Accord's own calls: a 403 may only be an Event posted into a namespace being deleted as a scenario ends
    # (NamespaceLifecycle refuses it, whoever asks); `create events` itself is allowed, see below.
    refused = [
        re.search(r'operation="([^"]*)"', line).group(1)  # type: ignore[union-attr]
        for line in process.metrics().splitlines()
        if line.startswith("accord_api_errors_total{") and 'code="403"' in line
    ]
    assert set(refused) <= {"create events"}, refused


# -- what the ServiceAccount may do -------------------------------------------------------------------------------
MAY = [
    ("update", "deployments", "--subresource=scale", "--all-namespaces"),
    ("update", "statefulsets", "--subresource=scale", "--all-namespaces"),
    ("patch", "deployments", "--all-namespaces"),  # this release has placements.enabled
    ("list", "pods", "--all-namespaces"),  # a move's rollout is followed, the scheduler's reason read
    ("patch", "horizontalpodautoscalers.autoscaling", "--all-namespaces"),
    ("list", "nodes"),
    ("create", "negotiations.accord.dev", "--all-namespaces"),
    ("patch", "negotiations.accord.dev", "--subresource=status", "--all-namespaces"),
    ("watch", "clusternegotiationpolicies.accord.dev"),
    ("patch", "clusternegotiationpolicies.accord.dev", "--subresource=status"),
    ("watch", "namespaces"),
    ("create", "events", "--all-namespaces"),
]
MAY_NOT = [
    ("get", "secrets", "--all-namespaces"),
    ("list", "secrets", "--all-namespaces"),
    ("watch", "secrets", "--all-namespaces"),
    ("get", "secrets", "--namespace=default"),
    ("delete", "deployments", "--all-namespaces"),
    ("create", "deployments", "--all-namespaces"),
    ("delete", "statefulsets", "--all-namespaces"),
    ("create", "pods", "--all-namespaces"),
    ("watch", "pods", "--all-namespaces"),
    ("patch", "pods", "--all-namespaces"),
    ("delete", "pods", "--all-namespaces"),
    ("create", "pods", "--subresource=exec", "--all-namespaces"),
    ("patch", "nodes"),
    ("delete", "nodes"),
    ("patch", "negotiations.accord.dev", "--all-namespaces"),
    ("delete", "customresourcedefinitions"),
    ("create", "clusterrolebindings"),
    ("patch", "deployments", "--subresource=scale", "--all-namespaces"),  # replicas by update only
    ("patch", "namespaces"),
    ("create", "clusternegotiationpolicies.accord.dev"),
    ("patch", "validatingwebhookconfigurations/some-other-webhook"),
    ("patch", "validatingwebhookconfigurations/accord.dev"),
    ("patch", "mutatingwebhookconfigurations/accord.dev"),
    ("create", "validatingwebhookconfigurations"),
    ("list", "mutatingwebhookconfigurations"),
    ("delete", "validatingwebhookconfigurations/accord.dev"),
    ("create", "serviceaccounts", "--subresource=token", "--all-namespaces"),
]


@pytest.mark.parametrize("query", MAY, ids=" ".join)
def test_the_service_account_may(cluster: Cluster, chart_identity: Path, query: tuple[str, ...]) -> None:
    assert can_i(cluster, chart_identity, *query)


@pytest.mark.parametrize("query", MAY_NOT, ids=" ".join)
def test_the_service_account_may_not(cluster: Cluster, chart_identity: Path, query: tuple[str, ...]) -> None:
    assert not can_i(cluster, chart_identity, *query)


def test_the_chart_owns_persistent_webhook_configurations_that_fail_closed(
    cluster: Cluster, release: tuple[str, str]
) -> None:
    name, _ = release
    for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
        body = json.loads(cluster.kubectl("get", kind, f"{name}-approvals", "-o", "json").stdout)
        assert body["metadata"]["annotations"]["meta.helm.sh/release-name"] == name
        assert [w["failurePolicy"] for w in body["webhooks"]] == ["Fail"]
    assert cluster.kubectl("get", "validatingwebhookconfiguration", "accord.dev", check=False).returncode != 0


# -- the namespaced install, placements off ------------------------------------------------------------------------
def namespaced_queries(watched: str, release_namespace: str) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    inside = f"--namespace={watched}"
    may = [
        ("update", "deployments", "--subresource=scale", inside),
        ("update", "statefulsets", "--subresource=scale", inside),
        ("watch", "deployments", inside),
        ("create", "negotiations.accord.dev", inside),
        ("patch", "negotiationpolicies.accord.dev", "--subresource=status", inside),
        ("list", "nodes"),
    ]
    may_not = [
        ("patch", "deployments", inside),  # placements are off
        ("patch", "statefulsets", inside),
        ("list", "pods", inside),  # only with placements
        ("update", "deployments", "--subresource=scale", f"--namespace={release_namespace}"),
        ("update", "deployments", "--subresource=scale", "--namespace=default"),
        ("watch", "deployments", "--all-namespaces"),
        ("create", "negotiations.accord.dev", "--namespace=default"),
        ("watch", "clusternegotiationpolicies.accord.dev"),
        ("patch", "namespaces"),
        ("create", "validatingwebhookconfigurations"),
    ]
    return may, may_not


def test_the_namespaced_install_may_act_in_its_namespaces_only(
    cluster: Cluster, namespaced_identity: Path, namespaced_release: tuple[str, str, str]
) -> None:
    _, release_namespace, watched = namespaced_release
    may, may_not = namespaced_queries(watched, release_namespace)
    assert [q for q in may if not can_i(cluster, namespaced_identity, *q)] == []
    assert [q for q in may_not if can_i(cluster, namespaced_identity, *q)] == []
    roles = json.loads(cluster.kubectl("get", "roles", "-n", watched, "-o", "json").stdout)["items"]
    assert {r["metadata"]["name"] for r in roles} >= {f"{namespaced_release[0]}-operator"}


def test_the_identity_is_the_service_account(cluster: Cluster, chart_identity: Path, release: tuple[str, str]) -> None:
    name, namespace = release
    denied = cluster.kubectl("get", "secrets", "-n", namespace, kubeconfig=chart_identity, check=False)
    assert denied.returncode != 0
    assert f"system:serviceaccount:{namespace}:{name}" in denied.stderr


# -- every rendering, validated by the API server -----------------------------------------------------------------
@pytest.fixture(scope="module")
def dry_run_namespace(cluster: Cluster) -> Iterator[str]:
    """A release namespace and the ci value sets' namespaces."""
    namespace = f"accord-e2e-render-{suffix()}"
    created = []
    for ns in (namespace, *CI_NAMESPACES):
        if cluster.kubectl("get", "namespace", ns, check=False).returncode != 0:
            cluster.kubectl("create", "namespace", ns)
            created.append(ns)
    # The helm test Pod is admitted only once the namespace's default ServiceAccount exists.
    wait_until(
        lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0,
        timeout=30,
        message=f"the default ServiceAccount in {namespace}",
    )
    try:
        yield namespace
    finally:
        for ns in created:
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.mark.usefixtures("crds")
@pytest.mark.parametrize("case", CASES)
def test_the_rendering_passes_server_side_validation(cluster: Cluster, dry_run_namespace: str, case: str) -> None:
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    rendered = cluster.helm(
        "template",
        "accord",
        str(CHART),
        f"--namespace={dry_run_namespace}",
        f"--values={CHART / 'ci' / f'{case}-values.yaml'}",
        f"--kube-version={version}",
    ).stdout
    served = set(cluster.kubectl("api-versions").stdout.split())
    docs = docs_of(rendered)
    checked = [d for d in docs if d["apiVersion"] in served]
    unserved = {d["apiVersion"] for d in docs} - served
    assert unserved <= FOREIGN_APIS, f"rendered for APIs this server lacks: {unserved - FOREIGN_APIS}"
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(checked))
    accepted = [line for line in result.stdout.splitlines() if line.endswith("(server dry run)")]
    assert len(accepted) == len(checked), result.stdout


# -- CRDs on uninstall --------------------------------------------------------------------------------------------
def crd_annotations(cluster: Cluster, name: str) -> dict[str, str] | None:
    found = cluster.kubectl("get", "crd", name, "-o", "json", check=False)
    if found.returncode != 0:
        return None
    annotations: dict[str, str] = json.loads(found.stdout)["metadata"].get("annotations") or {}
    return annotations


def restore_crds(cluster: Cluster) -> None:
    """Back to the state of the other modules: CRDs applied from crds/, owned by no release."""
    for name in ACCORD_CRDS:
        wait_until(
            lambda name=name: crd_annotations(cluster, name) is None or not crd_deleting(cluster, name),
            timeout=60,
            message=f"{name} to finish deleting",
        )
    cluster.kubectl("apply", "-f", str(REPO_ROOT / "crds"))
    wait_for_crds(cluster)
    for name in ACCORD_CRDS:
        cluster.kubectl(
            "annotate",
            "crd",
            name,
            "meta.helm.sh/release-name-",
            "meta.helm.sh/release-namespace-",
            "helm.sh/resource-policy-",
        )
        cluster.kubectl("label", "crd", name, "app.kubernetes.io/managed-by-", "helm.sh/chart-")


def crd_deleting(cluster: Cluster, name: str) -> bool:
    found = cluster.kubectl("get", "crd", name, "-o", "json", check=False)
    return found.returncode == 0 and bool(json.loads(found.stdout)["metadata"].get("deletionTimestamp"))


@pytest.mark.usefixtures("crds")
@pytest.mark.parametrize("keep", [True, False], ids=["crds.keep=true", "crds.keep=false"])
def test_uninstall_keeps_the_crds_only_when_asked(cluster: Cluster, keep: bool) -> None:
    """A release of its own, installing the CRDs (taking them over from `kubectl apply`); they are restored after."""
    if cluster.provider == "kind":
        pytest.skip("the kind provider's release owns the CRDs")
    name = f"accord-crds-{suffix()}"
    try:
        install(
            cluster,
            name,
            "--take-ownership",
            "--set=crds.enabled=true",
            f"--set=crds.keep={str(keep).lower()}",
        )
        for crd in ACCORD_CRDS:
            annotations = crd_annotations(cluster, crd)
            assert annotations is not None
            assert annotations["meta.helm.sh/release-name"] == name
            assert (annotations.get("helm.sh/resource-policy") == "keep") is keep
        uninstalled = cluster.helm("uninstall", name, f"--namespace={name}", "--wait")
        if keep:
            assert all(crd_annotations(cluster, crd) is not None for crd in ACCORD_CRDS)
            assert "kept due to the resource policy" in uninstalled.stdout + uninstalled.stderr
        else:
            wait_until(
                lambda: all(crd_annotations(cluster, crd) is None for crd in ACCORD_CRDS),
                timeout=60,
                message="the CRDs to be removed",
            )
    finally:
        cluster.helm("uninstall", name, f"--namespace={name}", check=False)
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
        restore_crds(cluster)


# -- three replicas -----------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("crds")
def test_three_replicas_of_the_chart_split_the_shards_as_its_service_account(
    cluster: Cluster,
    accord_prometheus: PrometheusServer,  # noqa: F811 - the fixture imported above
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """`replicaCount=3`: the Deployment asks for three replicas, a disruption budget keeps one, and three
    operators started with the chart's own flags, each holding the ServiceAccount's token, take the
    chart's shard Leases between them: the RBAC it grants is enough, and every shard is held once."""
    if cluster.provider == "kind":
        pytest.skip("the kind provider runs the chart's replicas in the cluster itself")
    name = f"accord-ha-{suffix()}"
    install(cluster, name, "--set=crds.enabled=false", "--set=replicaCount=3")
    processes: list[OperatorProcess] = []
    try:
        deployment = json.loads(cluster.kubectl("get", "deployment", name, "-n", name, "-o", "json").stdout)
        assert deployment["spec"]["replicas"] == 3
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        flags = [a for a in args if a.startswith(("--shards=", "--lease-name=", "--lease-namespace="))]
        assert sorted(flags) == sorted([f"--lease-name={name}", f"--lease-namespace={name}", "--shards=3"])
        pdb = json.loads(cluster.kubectl("get", "pdb", "-n", name, "-o", "json").stdout)["items"]
        assert len(pdb) == 1
        identity = identity_of(cluster, name, name, tmp_path_factory)
        log_dir = tmp_path_factory.mktemp(name)
        for i in range(3):
            process = OperatorProcess(
                kubeconfig=identity,
                prometheus_url=accord_prometheus.url,
                log_path=log_dir / f"replica-{i}.log",
                webhook=False,
                extra_env={"POD_ID": f"{name}-{i}"},
                extra_args=tuple(flags),
            )
            process.start()
            processes.append(process)

        def holders() -> dict[str, str]:
            leases = json.loads(cluster.kubectl("get", "leases", "-n", name, "-o", "json").stdout)["items"]
            return {
                lease["metadata"]["name"]: lease["spec"].get("holderIdentity") or ""
                for lease in leases
                if lease["metadata"]["name"].startswith(f"{name}-shard-")
            }

        def all_held() -> dict[str, str] | None:
            found = holders()
            return found if len(found) == 3 and all(found.values()) else None

        held = wait_until(
            all_held,
            timeout=90,
            interval=1.0,
            message="every shard of the chart held",
        )
        assert set(held) == {f"{name}-shard-{i}" for i in range(3)}
        assert set(held.values()) <= {f"{name}-{i}" for i in range(3)}
        for process in processes:
            log = process.log_path.read_text(errors="replace")
            assert "forbidden" not in log, process.tail()
    finally:
        for process in processes:
            process.stop()
        cluster.helm("uninstall", name, f"--namespace={name}", check=False)
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
