"""External agents on the real control plane: a hostile agent cannot cost anyone a round, and an
agent served from a host the operator does not allow takes no part.

The operator runs as a user runs it, with `--agent-host 127.0.0.1` and the test's CA trusted
(`SSL_CERT_FILE`). The hostile agent is an HTTPS server on 127.0.0.1 that answers, in turn, with
invalid UTF-8, a redirect to a page that must never be asked for, and a 5 MiB body.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from aiohttp import web

from accord_dev.cluster.emulator import WorkloadEmulator
from accord_dev.cluster.local import free_port
from accord_dev.cluster.prometheus import PrometheusServer
from operator_process import OperatorProcess
from providers import Cluster, wait_until
from test_operator import (  # noqa: F401 - fixtures
    INTERVAL,
    accord_prometheus,
    agents,
    apply,
    crds,
    deployment,
    events,
    get,
    negotiations,
    policy,
    prometheus_port,
    replicas,
)

pytestmark = pytest.mark.e2e


class HostileAgent:
    """An HTTPS agent that never gives a usable answer, and counts what it was asked."""

    ANSWERS = ("not-utf8", "redirect", "huge")

    def __init__(self, ca: trustme.CA) -> None:
        self.port = free_port()
        self.asked = 0
        self.stolen = 0
        self.cert = ca.issue_cert("127.0.0.1")
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def answer(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        kind = self.ANSWERS[self.asked % len(self.ANSWERS)]
        self.asked += 1
        if kind == "not-utf8":
            return web.Response(body=b'{"proposal": "\xff\xfe\xfa"}', content_type="application/json")
        if kind == "redirect":
            raise web.HTTPFound(f"https://127.0.0.1:{self.port}/stolen")
        return web.Response(body=b"x" * (5 * 1024 * 1024), content_type="application/json")

    async def steal(self, request: web.Request) -> web.Response:
        self.stolen += 1
        return web.Response(text="{}")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/", self.answer)
        app.router.add_route("*", "/stolen", self.steal)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.cert.configure_cert(context)
        await web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=context).start()

    def __enter__(self) -> HostileAgent:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=10)
        return self

    def __exit__(self, *_: Any) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def hostile(ca: trustme.CA) -> Iterator[HostileAgent]:
    with HostileAgent(ca) as server:
        yield server


@pytest.fixture(scope="module")
def guarded_operator(
    cluster: Cluster,
    crds: None,  # noqa: F811 - the fixture imported above
    accord_prometheus: PrometheusServer,  # noqa: F811
    ca: trustme.CA,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    if cluster.provider == "kind":
        pytest.skip("the kind provider runs the operator in the cluster; these tests drive a local process")
    folder = tmp_path_factory.mktemp("external")
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    process = OperatorProcess(
        kubeconfig=cluster.kubeconfig,
        prometheus_url=accord_prometheus.url,
        log_path=folder / "operator.log",
        webhook=False,
        extra_env={"SSL_CERT_FILE": str(ca_file)},
        extra_args=("--agent-host", "127.0.0.1"),
    )
    process.start()
    yield process
    process.stop()
    print(f"\n[e2e] operator log: {folder / 'operator.log'}")


def external(namespace: str, name: str, url: str) -> dict[str, Any]:
    return {
        "apiVersion": "accord.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "external", "external": {"url": url, "secretRef": {"name": "agent-key", "key": "key"}}},
    }


def test_a_hostile_external_agent_costs_nobody_a_round(
    cluster: Cluster,
    emulator: WorkloadEmulator,
    guarded_operator: OperatorProcess,
    hostile: HostileAgent,
    namespace: str,
) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "agent-key", "namespace": namespace},
        "data": {"key": base64.b64encode(b"a shared key").decode()},
    }
    for w in ("web", "api"):
        emulator.add_workload(namespace, w, demand=900.0)
    spec = policy(namespace)["spec"]
    spec["agents"] = [{"name": "performance"}, {"name": "cost"}, {"name": "hostile"}]
    apply(
        cluster,
        secret,
        *agents(namespace),
        external(namespace, "hostile", f"https://127.0.0.1:{hostile.port}/"),
        external(namespace, "outsider", "https://agents.invalid/negotiate"),
        {**policy(namespace), "spec": spec},
        deployment(namespace, "web"),
        deployment(namespace, "api"),
    )
    # Both workloads are negotiated and scaled although the hostile agent never answers usably.
    for w in ("web", "api"):
        wait_until(lambda w=w: replicas(cluster, namespace, w) > 2, timeout=90, interval=1.0, message=f"{w} scaled")
    record = negotiations(cluster, namespace, "web")[-1]
    said = {p["agent"]: p for p in record["spec"]["proposals"]}
    assert said["hostile"]["dropped"], said["hostile"]
    assert hostile.asked >= 2
    assert hostile.stolen == 0, "a redirect is never followed"
    assert guarded_operator.process is not None
    assert guarded_operator.process.poll() is None, guarded_operator.tail()

    # The agent on a host the operator does not allow is invalid, says why, and is never asked.
    def refused() -> dict[str, Any] | None:
        agent = get(cluster, "agent", namespace, "outsider")
        conditions = {c["type"]: c for c in (agent.get("status") or {}).get("conditions") or []}
        invalid = conditions.get("Invalid")
        return agent if invalid and invalid["status"] == "True" and invalid["reason"] == "HostNotAllowed" else None

    wait_until(refused, timeout=30, interval=1.0, message="the outsider agent marked invalid")
    assert events(cluster, namespace, "HostNotAllowed")
