"""kopf registrations: what the operator watches and how it reacts (operator layer).

Handler kinds are chosen so that Accord writes nothing of kopf's onto objects it does not own:
workloads, Nodes and HPAs are observed with `on.event` (no progress annotations, no finalizers),
and so are Agents and Negotiations, whose state lives in their status. Only NegotiationPolicies,
Accord's own resource, carry a kopf daemon (and with it kopf's finalizer), one per policy, which
runs that policy's rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import kopf
from pydantic import ValidationError

from accord.agents.external import host_allowed
from accord.models.agent import AgentSpec
from accord.models.common import GROUP, VERSION, from_wire
from accord.models.errors import describe_validation_error
from accord.negotiation.trust import TrustState
from accord.operator import approvals, observability
from accord.operator.kube import Kube
from accord.operator.leadership import Leadership
from accord.operator.loop import Negotiator
from accord.operator.recorder import condition, merge_conditions
from accord.operator.sharding import Shards
from accord.operator.state import AgentEntry, OperatorConfig, State
from accord.operator.workloads import autoscaler_view, node_view, workload_view

log = logging.getLogger(__name__)

CONFIG_ENV = "ACCORD_CONFIG_JSON"


# Every resource a handler here (or in cluster_handlers) watches: (group, version, plural, namespaced).
WATCHED: list[tuple[str, str, str, bool]] = []


def watched(group: str, version: str, plural: str, *, namespaced: bool = True) -> None:
    """A listing barrier on a watched resource: an index that stores nothing, so that kopf holds every
    handler (events and the policies' rounds) until this resource's watch has listed once; and the
    resource is remembered for the readiness check when there is nothing to list."""
    WATCHED.append((group, version, plural, namespaced))
    kopf.index(group, version, plural, id=f"listed-{plural}")(_no_index)


def _no_index(**_: Any) -> None:
    return None


def handled(memo: Any) -> None:
    """A handler runs: by the listing barrier, every watch has listed (the operator is ready)."""
    _negotiator(memo).health.listed()


async def listed_if_empty(kube: Kube, health: observability.Health, namespaces: Sequence[str]) -> None:
    """Ready without any event when no watched resource has an object to list (a handler would run
    otherwise). A list that fails leaves readiness to the handlers."""
    for group, version, plural, namespaced in WATCHED:
        for namespace in namespaces if namespaced and namespaces else [None]:
            try:
                if not group:  # the core group's watched resources are cluster-scoped: Nodes, Namespaces
                    core = kube.core.list_node if plural == "nodes" else kube.core.list_namespace
                    any_item = bool((await kube.call(f"list {plural}", core, limit=1)).items)
                elif namespace is None:
                    fn = kube.custom.list_cluster_custom_object
                    any_item = bool((await kube.call(f"list {plural}", fn, group, version, plural, limit=1))["items"])
                else:
                    fn = kube.custom.list_namespaced_custom_object
                    found = await kube.call(f"list {plural}", fn, group, version, namespace, plural, limit=1)
                    any_item = bool(found["items"])
            except Exception as exc:  # any failure: the handlers will tell
                log.info("readiness: could not list %s (%s); ready once the watches deliver", plural, exc)
                return
            if any_item:
                return
    health.listed()


def _negotiator(memo: Any) -> Negotiator:
    negotiator: Negotiator = memo["negotiator"]
    return negotiator


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    config: OperatorConfig = memo.get("config") or OperatorConfig()
    state = State(config=config)
    kube = Kube.connect(config.kubeconfig, threads=config.concurrency)
    health = observability.Health(known=state.known)
    memo["state"] = state
    memo["negotiator"] = Negotiator(kube, state, health)
    memo["metrics_runner"] = await observability.serve(health, config.metrics_host, config.metrics_port)
    if config.leader_election:
        _lead(
            memo,
            Shards(
                Leadership(
                    kube,
                    namespace=config.lease_namespace,
                    name=config.lease_name,
                    identity=os.environ.get("POD_ID") or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}",
                ),
                shards=config.shards,
            ),
        )
    settings.posting.level = logging.WARNING
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.watching.server_timeout = 300
    if config.webhook:
        certfile, keyfile = config.webhook_certfile, config.webhook_keyfile
        if certfile is None or keyfile is None:
            certfile, keyfile = _self_signed(config.webhook_url_host or config.webhook_host)
        server_class = ServiceWebhookServer if config.webhook_service else kopf.WebhookServer
        server = server_class(
            addr=config.webhook_host,
            port=config.webhook_port,
            host=config.webhook_url_host or config.webhook_host,
            certfile=certfile,
            pkeyfile=keyfile,
            cafile=config.webhook_cafile or certfile,
        )
        if isinstance(server, ServiceWebhookServer) and config.webhook_service:
            server.service = config.webhook_service
        settings.admission.server = server
        # The chart owns the configurations (persistent, failurePolicy Fail); `accord run --webhook` alone
        # lets kopf register them.
        settings.admission.managed = GROUP if config.manage_webhook_configurations else None
    health.started()
    memo["listing_check"] = asyncio.create_task(listed_if_empty(kube, health, config.namespaces))
    log.info(
        "accord operator starting: prometheus=%s namespaces=%s webhook=%s protected=%s placements=%s",
        config.prometheus_url,
        config.namespaces or "all",
        config.webhook,
        ",".join(sorted(config.protected)),
        config.placements,
    )


def _lead(memo: Any, leader: Shards) -> None:
    """Hold this replica's shards (or wait for them) in the background; on taking one, decide and act at
    once, and carry out approvals given while another replica held it."""
    negotiator: Negotiator = memo["negotiator"]
    negotiator.leader = leader
    tasks: set[asyncio.Task[None]] = set()

    def changed(taken: frozenset[int]) -> None:
        task = asyncio.create_task(approvals.resume(negotiator, webhook=negotiator.state.config.webhook))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        negotiator.state.wake()

    leader.on_change = changed
    stop = asyncio.Event()
    memo["leader_stop"] = stop
    memo["leader_task"] = asyncio.create_task(leader.run(stop))


@kopf.on.cleanup()
async def cleanup(memo: Any, **_: Any) -> None:
    stop, task = memo.get("leader_stop"), memo.get("leader_task")
    if stop is not None and task is not None:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=5.0)  # gives the shards up for the next holders
    negotiator = memo.get("negotiator")
    if negotiator is not None and negotiator.session is not None:
        await negotiator.session.close()
    if negotiator is not None:
        negotiator.kube.pool.shutdown(wait=False, cancel_futures=True)
    runner = memo.get("metrics_runner")
    if runner is not None:
        await runner.cleanup()


class ServiceWebhookServer(kopf.WebhookServer):
    """The webhook server, registered by Service reference rather than URL.

    API servers that resolve names through the host's DNS (kind, kubeadm) cannot reach
    `https://name.namespace.svc`; a `service` client config is routed by the API server itself.
    """

    service: str = ""  # "namespace/name"

    async def __call__(self, fn: Any) -> Any:
        namespace, _, name = self.service.partition("/")
        async for client_config in super().__call__(fn):
            config = {k: v for k, v in client_config.items() if k != "url"}
            config["service"] = {"namespace": namespace, "name": name, "port": self.port, "path": ""}
            yield config


def _self_signed(host: str) -> tuple[str, str]:
    """A throw-away serving certificate for the webhook when none is mounted (local runs)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tempfile.mkdtemp(prefix="accord-webhook-")
    certfile, keyfile = os.path.join(folder, "tls.crt"), os.path.join(folder, "tls.key")
    with open(certfile, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(keyfile, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return certfile, keyfile


# -- observed objects: no state is written onto them ----------------------------------------------------
def _workload_event(kind: str, event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo) -> None:
    state: State = memo["state"]
    view = workload_view(kind, body)
    key = view.key
    if event.get("type") == "DELETED":
        state.workloads.pop(key, None)
        return
    before = state.workloads.get(key)
    state.workloads[key] = view
    if before is not None and (
        before.replicas,
        dict(before.node_selector),
        before.generation,
        dict(before.labels),
        before.paused,
    ) != (view.replicas, dict(view.node_selector), view.generation, dict(view.labels), view.paused):
        state.wake_for(view)  # a marked change of the workload itself: renegotiate promptly


watched("apps", "v1", "deployments")


@kopf.on.event("apps", "v1", "deployments")
def deployment_event(event: kopf.RawEvent, body: kopf.Body, memo: Any, **_: Any) -> None:
    handled(memo)
    _workload_event("Deployment", event, body, memo)


watched("apps", "v1", "statefulsets")


@kopf.on.event("apps", "v1", "statefulsets")
def statefulset_event(event: kopf.RawEvent, body: kopf.Body, memo: Any, **_: Any) -> None:
    handled(memo)
    _workload_event("StatefulSet", event, body, memo)


watched("", "v1", "nodes", namespaced=False)


@kopf.on.event("", "v1", "nodes")
def node_event(event: kopf.RawEvent, body: kopf.Body, memo: Any, **_: Any) -> None:
    handled(memo)
    state: State = memo["state"]
    name = body.get("metadata", {}).get("name", "")
    if event.get("type") == "DELETED":
        state.nodes.pop(name, None)
    else:
        state.nodes[name] = node_view(body)


watched("autoscaling", "v1", "horizontalpodautoscalers")


@kopf.on.event("autoscaling", "v1", "horizontalpodautoscalers")
def hpa_event(event: kopf.RawEvent, body: kopf.Body, memo: Any, **_: Any) -> None:
    handled(memo)
    state: State = memo["state"]
    view = autoscaler_view(body)
    if event.get("type") == "DELETED":
        if state.hpas.get(view.target) is not None and state.hpas[view.target].name == view.name:
            del state.hpas[view.target]
    else:
        state.hpas[view.target] = view


watched(GROUP, VERSION, "agents")


@kopf.on.event(GROUP, VERSION, "agents")
async def agent_event(
    event: kopf.RawEvent, body: kopf.Body, memo: Any, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any
) -> None:
    handled(memo)
    state: State = memo["state"]
    negotiator = _negotiator(memo)
    meta = body.get("metadata", {})
    key = f"{meta.get('namespace')}/{meta.get('name')}"
    if event.get("type") == "DELETED":
        state.agents.pop(key, None)
        state.wake()
        return
    generation = int(meta.get("generation") or 0)
    status = body.get("status") or {}
    spec, reason, error = agent_spec(body.get("spec") or {}, state.config.agent_hosts)
    state.agents[key] = AgentEntry(
        meta.get("namespace", ""), meta.get("name", ""), spec, error, generation, status.get("observedGeneration")
    )
    if key not in state.trust and "trust" in status:
        state.trust[key] = TrustState(
            float(status["trust"]), int(status.get("trustSamples") or 0), status.get("meanError")
        )
        observability.TRUST.labels(namespace=meta.get("namespace"), agent=meta.get("name")).set(status["trust"])
    if not negotiator.writes(meta.get("namespace", "")):
        # The holder of the namespace's shard writes the verdict (the watches re-list every few minutes,
        # so a shard taken over is judged anew then).
        state.wake()
        return
    invalid: Mapping[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Invalid"), {})
    seen = (invalid.get("status"), invalid.get("reason"))
    # Also when only the verdict changed: an operator restarted with another allowlist judges anew.
    if status.get("observedGeneration") == generation and seen == ("True" if error else "False", reason or "Valid"):
        return
    conditions = merge_conditions(
        status.get("conditions") or [],
        [
            condition(
                "Ready",
                spec is not None,
                "Valid" if spec else reason or "InvalidSpec",
                "the agent takes part in negotiations" if spec else (error or ""),
                generation,
            ),
            condition(
                "Invalid",
                spec is None,
                reason or "Valid",
                error or "the spec is valid",
                generation,
            ),
        ],
    )
    await negotiator.kube.patch_status(
        "agents", meta["namespace"], meta["name"], {"conditions": conditions, "observedGeneration": generation}
    )
    if error:
        logger.warning("invalid Agent %s: %s", key, error)
        await negotiator.recorder.event(
            involved=dict(body), reason=reason or "InvalidSpec", message=error, type_="Warning"
        )
    state.wake()


def agent_spec(raw: Mapping[str, Any], allowed_hosts: Sequence[str]) -> tuple[AgentSpec | None, str | None, str | None]:
    """An Agent's spec, or None with the reason and message of why it takes no part."""
    try:
        spec = from_wire(AgentSpec, raw)
    except ValidationError as exc:
        return None, "InvalidSpec", describe_validation_error(exc)
    if spec.external is not None and not host_allowed(spec.external.url.host, allowed_hosts):
        return (
            None,
            "HostNotAllowed",
            f"spec.external.url: the host {spec.external.url.host!r} is not one the operator may call "
            f"(allowed: {', '.join(allowed_hosts)}); the agent takes no part",
        )
    return spec, None, None


watched(GROUP, VERSION, "negotiationpolicies")


@kopf.on.event(GROUP, VERSION, "negotiationpolicies")
async def policy_event(event: kopf.RawEvent, body: kopf.Body, memo: Any, **_: Any) -> None:
    handled(memo)
    meta = body.get("metadata", {})
    remember_policy(memo["state"], f"{meta.get('namespace')}/{meta.get('name')}", event, body)
    if event.get("type") == "DELETED":
        await _negotiator(memo).release_autoscalers()  # what the policy raised goes back to the HPAs' owners


def remember_policy(state: State, key: str, event: kopf.RawEvent, body: kopf.Body) -> None:
    """Keep the policy's latest body for its daemon; a changed spec brings its next round forward."""
    if event.get("type") == "DELETED":
        state.policy_bodies.pop(key, None)
        return
    before = state.policy_bodies.get(key)
    state.policy_bodies[key] = dict(body)
    if before is None or before.get("spec") != body.get("spec"):
        state.wake(key)


# No round runs before every watch has listed (the listing barrier above); the initial delay lets the
# events of that first listing be handled first.
@kopf.daemon(GROUP, VERSION, "negotiationpolicies", cancellation_timeout=5.0, initial_delay=3.0)
async def policy_daemon(
    name: str, namespace: str | None, body: kopf.Body, memo: Any, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    state: State = memo["state"]
    state.policy_bodies.setdefault(f"{namespace}/{name}", dict(body))
    await _negotiator(memo).run_policy(namespace or "", name, stopped)


watched(GROUP, VERSION, "negotiations")


@kopf.on.event(GROUP, VERSION, "negotiations")
async def negotiation_event(event: kopf.RawEvent, body: kopf.Body, memo: Any, **_: Any) -> None:
    handled(memo)
    state: State = memo["state"]
    negotiator = _negotiator(memo)
    approvals.track(
        state,
        body,
        deleted=event.get("type") == "DELETED",
        now=negotiator.clock(),
        follow=not negotiator.writes(str((body.get("metadata") or {}).get("namespace") or "")),
    )
    if event.get("type") != "DELETED":
        await approvals.act_on_approval(_negotiator(memo), body, webhook=state.config.webhook)
