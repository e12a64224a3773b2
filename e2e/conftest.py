"""Fixtures of the end-to-end suite: a real cluster, Prometheus, the workload emulator, a namespace per test.

Choose the cluster with ``--cluster-provider`` or ``ACCORD_E2E_PROVIDER``:
``local`` (default), ``kind`` or ``existing``. A local control plane that
fails to start fails the run; so does any provider under ``CI=true``. Only a
provider chosen outside CI whose prerequisites are missing (say, no Docker
engine for kind) is skipped, with the reason.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

E2E_DIR = Path(__file__).resolve().parent
# The suite imports its sibling module whatever pytest's import mode
# (importlib mode does not put test directories on sys.path).
if str(E2E_DIR) not in sys.path:
    sys.path.insert(0, str(E2E_DIR))

from accord_dev.cluster.emulator import WorkloadEmulator  # noqa: E402
from accord_dev.cluster.prometheus import PrometheusServer  # noqa: E402
from providers import PROVIDERS, Cluster, in_ci, make_provider, wait_until  # noqa: E402

if TYPE_CHECKING:
    from kubernetes.client import ApiClient, V1Node
    from prometheus_api_client import PrometheusConnect


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("accord-e2e")
    group.addoption(
        "--cluster-provider",
        choices=PROVIDERS,
        default=None,
        help="cluster for the e2e suite: local (default), kind or existing; env ACCORD_E2E_PROVIDER",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end tests against a real cluster and Prometheus")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


def _provider_name(config: pytest.Config) -> str:
    chosen = config.getoption("--cluster-provider") or os.environ.get("ACCORD_E2E_PROVIDER") or "local"
    if chosen not in PROVIDERS:
        raise pytest.UsageError(f"ACCORD_E2E_PROVIDER={chosen!r}: choose one of {', '.join(PROVIDERS)}")
    return str(chosen)


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The session's cluster; torn down (or left alone, for ``existing``) at the end."""
    name = _provider_name(request.config)
    provider = make_provider(name)
    reason = provider.unavailable_reason()
    if reason is not None:
        # The local provider is this suite's default and only needs
        # scripts/install-tools.sh: a missing piece is a broken setup, not a
        # reason to skip. In CI nothing is ever skipped silently.
        if name == "local" or in_ci():
            pytest.fail(f"cluster provider {name!r} cannot run: {reason}", pytrace=False)
        pytest.skip(f"cluster provider {name!r} unavailable: {reason}")
    started = time.monotonic()
    handle = provider.start()
    print(f"\n[e2e] {name} cluster ready in {time.monotonic() - started:.1f}s ({handle.kubeconfig})")
    try:
        yield handle
    finally:
        handle.close()
        provider.stop()


@pytest.fixture(scope="session")
def k8s(cluster: Cluster) -> ApiClient:
    """An admin ``ApiClient``."""
    return cluster.api_client()


@pytest.fixture(scope="session")
def kubectl(cluster: Cluster) -> Cluster:
    """The cluster handle, for ``kubectl.kubectl("get", "pods", "-n", ns)``-style calls."""
    return cluster


@pytest.fixture(scope="session")
def emulator(cluster: Cluster) -> Iterator[WorkloadEmulator]:
    """Emulated workload metrics; replicas follow the cluster's Deployments."""
    with WorkloadEmulator(api_client=cluster.api_client(), poll_interval=0.5) as instance:
        yield instance


@pytest.fixture(scope="session")
def prometheus(emulator: WorkloadEmulator) -> Iterator[PrometheusServer]:
    """Prometheus scraping the emulator every second."""
    with PrometheusServer(targets=[emulator.target], scrape_interval="1s") as server:
        server.wait_for_targets_up(timeout=30)
        yield server


@pytest.fixture(scope="session")
def promql(prometheus: PrometheusServer) -> PrometheusConnect:
    """``prometheus_api_client.PrometheusConnect`` on the session's Prometheus."""
    from prometheus_api_client import PrometheusConnect

    return PrometheusConnect(url=prometheus.url, disable_ssl=True)


@pytest.fixture
def namespace(request: pytest.FixtureRequest, cluster: Cluster, k8s: ApiClient) -> Iterator[str]:
    """A fresh namespace for one test, with its default ServiceAccount; deleted afterwards."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].rstrip("-")
    name = f"e2e-{slug}-{secrets.token_hex(3)}"
    core = client.CoreV1Api(k8s)
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"accord.dev/e2e": "true"}))
    )
    # Pods are refused until the ServiceAccount controller has created the
    # namespace's default account.
    wait_until(
        lambda: core.read_namespaced_service_account("default", name),
        timeout=30,
        message=f"the default ServiceAccount in {name}",
    )
    try:
        yield name
    finally:
        if "emulator" in request.fixturenames:
            emulated: WorkloadEmulator = request.getfixturevalue("emulator")
            for ns, deployment in emulated.workloads():
                if ns == name:
                    emulated.remove_workload(ns, deployment)
        try:
            core.delete_namespace(name, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise


@pytest.fixture
def make_node(request: pytest.FixtureRequest, k8s: ApiClient) -> Iterator[Callable[..., V1Node]]:
    """Create Node objects (no kubelet behind them) with the labels a test needs; deleted afterwards.

    ``make_node("spot-a", {"pool": "spot"}, cpu="8", memory="32Gi")``; the name
    gets a unique suffix because Nodes are cluster-scoped.
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(k8s)
    created: list[str] = []

    def make(name: str, labels: Mapping[str, str] | None = None, *, cpu: str = "4", memory: str = "16Gi") -> V1Node:
        full_name = f"{name}-{secrets.token_hex(3)}"
        capacity = {"cpu": cpu, "memory": memory, "pods": "110"}
        node = core.create_node(
            client.V1Node(
                metadata=client.V1ObjectMeta(name=full_name, labels={"accord.dev/e2e": "true", **(labels or {})}),
                status=client.V1NodeStatus(capacity=capacity, allocatable=capacity),
            )
        )
        created.append(full_name)
        return node

    yield make
    for name in created:
        try:
            core.delete_node(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
