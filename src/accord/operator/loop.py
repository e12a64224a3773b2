"""Continuous negotiation: one round per policy interval, or sooner when something changes
(operator layer).

A round parses the policy (an invalid one gets an Invalid condition and an Event, and the
round ends there: other policies are untouched), seats its agents, gathers the evidence of every
selected workload concurrently, negotiates all of them at once (`negotiate_many`), then records
each outcome and, when it may be, applies it. Each workload's steps are guarded by a timeout: one
slow or failing workload is logged and skipped, never blocking the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar

import aiohttp
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from accord.agents.base import Candidate, Situation
from accord.metrics.evidence import EvidenceSet
from accord.metrics.prometheus import PrometheusSource
from accord.models.agent import AgentSpec
from accord.models.errors import describe_validation_error
from accord.models.negotiation import Phase, WorkloadRef
from accord.models.policy import ClusterNegotiationPolicySpec, NegotiationPolicySpec
from accord.negotiation import lifecycle
from accord.negotiation.engine import Case, Outcome, Stance, negotiate_each
from accord.negotiation.lifecycle import Decisions
from accord.negotiation.table import Table, seat_agents
from accord.negotiation.trust import TrustState, open_checks, settle_checks
from accord.operator import observability
from accord.operator.executor import Executor
from accord.operator.gather import RoundQueries, gather, read_secret
from accord.operator.kube import Kube
from accord.operator.recorder import (
    Recorder,
    condition,
    merge_conditions,
    negotiation_ref,
    now_iso,
    workload_ref,
)
from accord.operator.scope import PolicyRef, owner
from accord.operator.sharding import Shards
from accord.operator.state import State, parse_policy
from accord.operator.workloads import Requests, WorkloadView, current_placement, pools, rollout_of, usage

log = logging.getLogger(__name__)

MIN_ROUND_GAP = 3.0
FOLLOWER_GAP = 3.0


Result = TypeVar("Result")


@dataclass(frozen=True, slots=True)
class Gathered:
    """A workload ready to be negotiated, and the seconds its evidence took."""

    workload: WorkloadView
    case: Case
    seconds: float


@dataclass
class RoundReport:
    workloads: int = 0
    negotiated: int = 0
    failed: int = 0
    metrics_problems: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    writers: list[str] = field(default_factory=list)  # workloads whose changes another writer keeps resetting
    overlaps: list[str] = field(default_factory=list)  # workloads another policy also selects


class Negotiator:
    def __init__(self, kube: Kube, state: State, health: observability.Health) -> None:
        self.kube = kube
        self.state = state
        self.health = health
        self.recorder = Recorder(kube)
        self.executor = Executor(kube, stamp=state.config.placements)
        self.clock: Callable[[], float] = time.time
        self.leader: Shards | None = None  # None: this operator writes without holding a Lease
        url = state.config.prometheus_url
        self.prometheus = (
            PrometheusSource(url, timeout=state.config.prometheus_timeout, ca_file=state.config.prometheus_ca_file)
            if url
            else None
        )
        if self.prometheus is not None:
            _ = self.prometheus.ssl  # a CA file that cannot be read stops the start, with its reason
        self.session: aiohttp.ClientSession | None = None
        self.persisted: dict[str, tuple[TrustState, dict[str, Any] | None]] = {}
        self.last_proposals: dict[str, dict[str, Any]] = {}
        self.reported: dict[str, str] = {}  # policy key -> last invalid message, to post one Event per change
        self.agent_namespaces: dict[str, str] = {}  # policy key -> namespace of its Agents

    def fence(self, namespace: str) -> None:
        """Right before a write for `namespace`: only the holder of its shard writes
        (`leadership.NotLeader` otherwise)."""
        if self.leader is not None:
            self.leader.fence(namespace)

    def writes(self, namespace: str) -> bool:
        """Whether this replica writes for `namespace` now; otherwise another holds its shard (or none
        does for a moment), and this one follows what the watches show of its records."""
        return self.leader is None or self.leader.holds(namespace)

    # -- the daemon ------------------------------------------------------------------------------
    async def run_policy(self, namespace: str | None, name: str, stopped: Any) -> None:
        """Run the rounds of a NegotiationPolicy, or of a ClusterNegotiationPolicy (namespace None)."""
        key = PolicyRef(name, namespace).key
        wake = self.state.wakeups.setdefault(key, asyncio.Event())
        if self.session is None:
            self.session = aiohttp.ClientSession()
        self.health.loop_started()
        try:
            await self._rounds(key, namespace, name, wake, stopped)
        finally:
            self.health.loop_stopped()

    async def _rounds(self, key: str, namespace: str | None, name: str, wake: asyncio.Event, stopped: Any) -> None:
        while not stopped:
            started = time.monotonic()
            body = self.state.policy_bodies.get(key)
            interval = 30.0
            if body is not None:
                try:
                    interval = await self.round(namespace, name, body)
                except Exception:
                    log.exception("round of policy %s failed; retrying next interval", key)
            self.health.beat()
            deadline = started + interval
            # Wake-ups (a workload or the policy changed) may bring the next round forward, but
            # not closer than MIN_ROUND_GAP: a burst of events must not turn into a burst of rounds.
            await asyncio.sleep(max(0.0, min(interval, MIN_ROUND_GAP) - (time.monotonic() - started)))
            while not stopped and time.monotonic() < deadline and not wake.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=min(1.0, max(0.01, deadline - time.monotonic())))
            wake.clear()

    # -- one round ---------------------------------------------------------------------------------
    async def round(self, namespace: str | None, name: str, body: Mapping[str, Any]) -> float:
        ref = PolicyRef(name, namespace)
        if not self.writes(namespace) if namespace else self.leader is not None and not self.leader.held():
            # Another replica holds the shard of the policy's namespace (or, for a cluster policy, this one
            # holds no shard at all): look again soon, write nothing.
            return FOLLOWER_GAP
        key = ref.key
        generation = int((body.get("metadata") or {}).get("generation") or 0)
        observability.ROUNDS.labels(policy=key).inc()
        try:
            spec = parse_policy(ref, body.get("spec") or {})
        except ValidationError as exc:
            await self.invalid(namespace, name, body, "InvalidSpec", describe_validation_error(exc), generation)
            return 30.0
        out_of_scope = self.state.scope_problems(spec, ref)
        if out_of_scope:
            # Asking for more than it may have: the whole policy acts on nothing.
            await self.invalid(namespace, name, body, "OutOfScope", "; ".join(out_of_scope), generation)
            return float(spec.interval_seconds)
        agents_ns = spec.agent_namespace if isinstance(spec, ClusterNegotiationPolicySpec) else namespace or ""
        self.agent_namespaces[key] = agents_ns
        agents, broken = self.agents_in(agents_ns)
        problems = [f"Agent {n} is invalid: {broken[n]}" for n in (p.name for p in spec.agents) if n in broken]
        try:
            secrets = await self.secrets(agents_ns, {p.name: agents[p.name] for p in spec.agents if p.name in agents})
        except (ApiException, KeyError) as exc:
            problems.append(f"cannot read an external agent's secret: {exc}")
            secrets = {}
        trust = {p.name: self.state.trust_of(agents_ns, p.name) for p in spec.agents}
        table = seat_agents(spec, agents, trust=trust, secrets=secrets)
        missing = [m for m in table.missing if m not in broken]
        if missing:
            problems.append(f"no Agent named {', '.join(missing)} in namespace {agents_ns}")
        if problems:
            await self.invalid(namespace, name, body, "AgentsMissing", "; ".join(problems), generation)
            return float(spec.interval_seconds)
        self.reported.pop(key, None)
        # Decisions past their deadline expire before anything new is decided (as in the replay).
        await self.expire_pending(key)
        # A cluster policy's workloads are negotiated by the replicas holding their namespaces' shards.
        selected = [
            w
            for w in list(self.state.workloads.values())
            if self.writes(w.namespace) and self.state.selects(spec, ref, w)
        ]
        report = RoundReport(workloads=len(selected))
        # At most one policy negotiates a workload: the oldest that selects it; both sides say so.
        mine = []
        for w in selected:
            claims = self.state.claims(w)
            holder = owner(claims)
            others = sorted(k for _, k in claims if k != key)
            what = f"{w.kind} {w.namespace}/{w.name}"
            if holder == key:
                mine.append(w)
                if others:
                    report.overlaps.append(f"{what} is also selected by {', '.join(others)}; this policy negotiates it")
            elif holder is not None:
                report.overlaps.append(f"{what} is negotiated by {holder}, the oldest policy that selects it")
        active = [w for w in mine if not w.paused and not w.opted_out]
        started = time.monotonic()
        semaphore = asyncio.Semaphore(self.state.config.concurrency)

        def failed(w: WorkloadView, what: str, exc: Exception) -> None:
            """A workload's step failed: logged and counted, the workload skipped this round, never
            blocking the others."""
            report.failed += 1
            observability.WORKLOAD_ERRORS.labels(policy=key).inc()
            detail = getattr(exc, "body", None) or repr(exc)
            log.warning("%s for %s failed and it is skipped this round: %s", what, w.key, detail)

        async def guarded(w: WorkloadView, step: Coroutine[Any, Any, Result], what: str) -> Result | None:
            """One workload's step under the concurrency limit and the timeout."""
            async with semaphore:
                try:
                    return await asyncio.wait_for(step, self.state.config.workload_timeout)
                except Exception as exc:
                    failed(w, what, exc)
                    return None

        # Evidence for every workload at once; then one negotiation over all of them; then each
        # outcome recorded and acted on.
        used = await self.node_usage() if spec.placements and self.state.nodes and active else None
        queries = RoundQueries([w.namespace for w in active], self.clock())
        gathered = await asyncio.gather(
            *(
                guarded(w, self.prepare(w, spec, key, table, report, used, queries), "gathering evidence")
                for w in active
            )
        )
        observability.PROMETHEUS_QUERIES.labels(policy=key).inc(queries.asked)
        ready = [g for g in gathered if g is not None]
        # Deciding is pure CPU work: off the event loop, so that approvals and watches are served meanwhile.
        # The predictions settled while gathering moved trust: the agents negotiate with what they have earned now.
        seated = [
            (replace(seat, trust=self.state.trust_of(self.agents_namespace(key), seat.name)), agent)
            for seat, agent in table.seated
        ]
        decided = await asyncio.to_thread(negotiate_each, policy=spec, cases=[g.case for g in ready], agents=seated)
        outcomes: list[tuple[Gathered, Outcome]] = []
        for g, outcome in zip(ready, decided, strict=True):
            if isinstance(outcome, Exception):
                failed(g.workload, "negotiation", outcome)
            else:
                outcomes.append((g, outcome))
        concluded = await asyncio.gather(
            *(guarded(g.workload, self.conclude(g, o, spec, key, report), "acting") for g, o in outcomes)
        )
        for (g, _), done in zip(outcomes, concluded, strict=True):
            if done is not None:
                report.negotiated += 1
            observability.WORKLOAD_SECONDS.observe(g.seconds + (done or 0.0))
        observability.ROUND_SECONDS.labels(policy=key).observe(time.monotonic() - started)
        await self.release_autoscalers()
        await self.policy_status(ref.namespace, name, body, spec, report, generation)
        await self.agent_status(agents_ns, table)
        return float(spec.interval_seconds)

    def agents_namespace(self, policy_key: str) -> str:
        """Where the policy's Agents live: its own namespace, or a cluster policy's spec.agentNamespace."""
        return self.agent_namespaces.get(policy_key) or PolicyRef.from_key(policy_key).namespace or ""

    def agents_in(self, namespace: str) -> tuple[dict[str, AgentSpec], dict[str, str]]:
        ok: dict[str, AgentSpec] = {}
        broken: dict[str, str] = {}
        for entry in list(self.state.agents.values()):
            if entry.namespace != namespace:
                continue
            if entry.spec is not None:
                ok[entry.name] = entry.spec
            else:
                broken[entry.name] = entry.error or "invalid"
        return ok, broken

    async def secrets(self, namespace: str, agents: Mapping[str, AgentSpec]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for name, spec in agents.items():
            if spec.external is not None:
                ref = spec.external.secret_ref
                found[name] = await read_secret(self.kube, namespace, ref.name, ref.key)
        return found

    # -- one workload ------------------------------------------------------------------------------
    async def prepare(
        self,
        w: WorkloadView,
        spec: NegotiationPolicySpec,
        policy_key: str,
        table: Table,
        report: RoundReport,
        used: Mapping[str, Requests] | None = None,
        queries: RoundQueries | None = None,
    ) -> Gathered:
        """The workload's situation and the evidence each agent asks for."""
        t0 = time.monotonic()
        w = self.state.workloads.get(w.key, w)
        now = self.clock()
        situation = Situation(
            namespace=w.namespace,
            name=w.name,
            kind=w.kind,
            labels=w.labels,
            current=Candidate(w.replicas, current_placement(spec, w)),
            ready_replicas=w.ready,
            pools=pools(spec, self.state.nodes.values(), w, used),
            now=now,
            interval_seconds=spec.interval_seconds,
        )
        evidence, problems = await self.evidence(situation, spec, table, queries)
        report.metrics_problems.extend(problems)
        self.check_predictions(self.agents_namespace(policy_key), w, evidence, now)
        decisions = lifecycle.seed(
            self.state.decisions.get(w.key, Decisions()), replicas=w.replicas, policy=spec, now=now
        )
        self.state.decisions[w.key] = decisions
        case = Case(situation, evidence, decisions.history)
        return Gathered(w, case, time.monotonic() - t0)

    async def evidence(
        self, situation: Situation, spec: NegotiationPolicySpec, table: Table, queries: RoundQueries | None = None
    ) -> tuple[dict[str, EvidenceSet], list[str]]:
        """What each seated agent asked for, from Prometheus (and external agents' answers)."""
        return await gather(
            seated=table.seated,
            situation=situation,
            policy=spec,
            prometheus=self.prometheus,
            session=self.session,
            round_queries=queries,
        )

    async def conclude(
        self, gathered: Gathered, outcome: Outcome, spec: NegotiationPolicySpec, policy_key: str, report: RoundReport
    ) -> float | None:
        """Step the decision lifecycle with one outcome and carry out its intents; the seconds it took,
        or None when the workload changed while it was negotiated (the next round decides on what it is now)."""
        t0 = time.monotonic()
        key, situation = gathered.workload.key, gathered.case.situation
        async with self.state.lock(key):
            w = self.state.workloads.get(key)
            decisions = self.state.decisions.get(key, Decisions())
            if (
                w is None
                or Candidate(w.replicas, current_placement(spec, w)) != situation.current
                or decisions.history.changes != gathered.case.history.changes
            ):
                log.info("%s changed while it was negotiated; the next round decides on what it is now", key)
                return None
            now = situation.now
            namespace = self.agents_namespace(policy_key)
            stances = outcome.stances
            self.remember_predictions(namespace, w, outcome, stances, now)
            for st in stances:
                self.last_proposals[f"{namespace}/{st.agent}"] = {
                    "workload": f"{w.namespace}/{w.name}",
                    "idealReplicas": st.ideal.replicas if st.ideal else None,
                    "idealPlacement": st.ideal.placement if st.ideal else None,
                    "confidence": round(st.confidence, 4),
                    "time": now_iso(now),
                }
            log.info(
                "decision %s: %s %s -> %s confidence=%.2f utilities={%s} gates=[%s]",
                w.key,
                outcome.verdict.value,
                outcome.current,
                outcome.target,
                outcome.confidence,
                ", ".join(f"{st.agent}:{st.target_utility:.2f}/{st.confidence:.2f}" for st in stances),
                ", ".join(g.rule for g in outcome.gates),
            )
            hpa = self.state.hpas.get(key)
            ref = WorkloadRef.model_validate({"kind": w.kind, "namespace": w.namespace, "name": w.name, "uid": w.uid})
            context = lifecycle.Context(
                policy=spec,
                policy_key=policy_key,
                workload=ref,
                autoscaler=None if hpa is None else hpa.name,
                autoscaler_owner=None if hpa is None else hpa.keda_owner,
            )
            # A rollout Accord follows, or one someone else started, ends before anything new is decided.
            rolling = decisions.rolling
            observed = rollout_of(w, await self.pods_of(w) if rolling is not None else ())
            unsettled = observed.unsettled
            if rolling is not None:
                log.info("following the rollout of %s for %s: %s", key, rolling.name, observed)
            if rolling is not None or unsettled is not None:
                step = (
                    lifecycle.follow(decisions, observed, policy=spec, workload=ref, now=now)
                    if rolling is not None
                    else lifecycle.unsettled(decisions, outcome, unsettled or "", context=context, now=now)
                )
                await self.carry_out(key, step, workload=ref, now=now, report=report)
                return time.monotonic() - t0
            # A record an interrupted apply left Proposed is closed against the workload first.
            resumed = lifecycle.resume(decisions, live=situation.current)
            step = lifecycle.decide(resumed.state, outcome, context=context, now=now)
            step = lifecycle.Step(step.state, (*resumed.intents, *step.intents))
            await self.carry_out(key, step, workload=ref, now=now, report=report)
        return time.monotonic() - t0

    async def carry_out(
        self, key: str, step: lifecycle.Step, *, workload: WorkloadRef, now: float, report: RoundReport | None = None
    ) -> None:
        """Carry out a lifecycle step's intents in order, feeding what acting did back into the lifecycle.
        The caller holds the workload's lock."""
        self.state.decisions[key] = step.state
        namespace = workload.namespace
        for intent in step.intents:
            if isinstance(intent, lifecycle.Write):
                try:
                    self.fence(namespace)
                    await self.recorder.write(namespace, intent)
                except Exception:
                    # Not written (refused by the fence, or failed): the state must not keep it, or a later
                    # round would act on a record nobody can see.
                    self.state.decisions[key] = lifecycle.forget(self.state.decisions[key], intent.record.name)
                    raise
                continue
            if not isinstance(intent, lifecycle.Conflict):
                self.fence(namespace)
            if isinstance(intent, lifecycle.SetPhase):
                await self.recorder.set_phase(namespace, intent)
            elif isinstance(intent, lifecycle.Delete):
                await self.recorder.delete(namespace, intent.name)
            elif isinstance(intent, lifecycle.Emit):
                involved = (
                    workload_ref(workload) if intent.record is None else negotiation_ref(namespace, intent.record)
                )
                await self.recorder.event(
                    involved=involved, reason=intent.reason, message=intent.message, type_=_event_type(intent)
                )
            elif isinstance(intent, lifecycle.Conflict):
                if report is not None:
                    (report.writers if intent.writer else report.conflicts).append(intent.message)
            else:
                command = intent.command

                async def act(command: lifecycle.Command = command) -> None:
                    policy = self.state.policy(command.policy)
                    result = await self.executor.apply(
                        command,
                        policy=policy,
                        hpa=self.state.hpas.get(key),
                        decisions=self.state.decisions[key],
                        now=now,
                        reaches=partial(self.reaches, policy, PolicyRef.from_key(command.policy)),
                    )
                    await self.carry_out(
                        key,
                        lifecycle.executed(self.state.decisions[key], command.record, result, now=now, policy=policy),
                        workload=workload,
                        now=now,
                        report=report,
                    )

                await to_the_end(act())

    async def node_usage(self) -> dict[str, Requests] | None:
        """What the pods bound to each node request, for the pools' room: one list of the pods that are
        bound and not ended, this round; None when pods cannot be read (then no pool's room is known)."""
        selector = "spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed"
        try:
            found = await self.kube.call(
                "list pods", self.kube.core.list_pod_for_all_namespaces, field_selector=selector, resource_version="0"
            )
        except ApiException as exc:
            log.info("cannot read the pods on the nodes (%s): the pools' room is unknown", exc.reason)
            return None
        return usage(
            {
                "spec": {
                    "nodeName": pod.spec.node_name,
                    "containers": [
                        {"resources": {"requests": (c.resources.requests if c.resources else None) or {}}}
                        for c in pod.spec.containers or ()
                    ],
                    "initContainers": [
                        {"resources": {"requests": (c.resources.requests if c.resources else None) or {}}}
                        for c in pod.spec.init_containers or ()
                    ],
                },
                "status": {"phase": pod.status.phase if pod.status else None},
            }
            for pod in found.items
        )

    async def pods_of(self, w: WorkloadView) -> list[dict[str, Any]]:
        """The workload's pods (by its selector's matchLabels), for the scheduler's reasons; none when
        they cannot be read (the install grants pods only with placements)."""
        if not w.selector:
            return []
        selector = ",".join(f"{k}={v}" for k, v in sorted(w.selector.items()))
        try:
            found = await self.kube.call(
                "list pods", self.kube.core.list_namespaced_pod, w.namespace, label_selector=selector
            )
        except ApiException as exc:
            log.warning("cannot read the pods of %s: %s", w.key, exc.reason)
            return []
        items: list[dict[str, Any]] = self.kube.core.api_client.sanitize_for_serialization(found).get("items") or []
        return items

    def reaches(self, policy: NegotiationPolicySpec | None, ref: PolicyRef, workload: WorkloadView) -> bool:
        """Whether the policy, as it is now, still reaches the workload as the executor read it."""
        return policy is not None and self.state.selects(policy, ref, workload)

    async def release_autoscalers(self) -> None:
        """HPAs whose bounds Accord raised are given them back once no policy coordinates with them any
        more (the policy deleted or changed, the workload opted out or gone)."""
        for key, hpa in list(self.state.hpas.items()):
            if hpa.original is None or not self.writes(hpa.namespace):
                continue
            w = self.state.workloads.get(key)
            if w is not None and not w.opted_out and self.coordinated(w):
                continue
            self.fence(hpa.namespace)
            try:
                await self.executor.release(hpa)
            except ApiException as exc:
                log.warning("could not give HPA %s/%s its bounds back: %s", hpa.namespace, hpa.name, exc.reason)

    def coordinated(self, workload: WorkloadView) -> bool:
        """Whether a policy that selects the workload works through its HPA."""
        for _, key in self.state.claims(workload):
            spec = self.state.policy(key)
            if spec is not None and spec.coordinate_autoscalers:
                return True
        return False

    async def expire_pending(self, policy_key: str) -> None:
        now = self.clock()
        for key, decisions in list(self.state.decisions.items()):
            if not any(r.policy == policy_key and r.phase in lifecycle.OPEN for r in decisions.records):
                continue
            async with self.state.lock(key):
                step = lifecycle.expire(self.state.decisions.get(key, decisions), now=now)
                if step.intents:
                    kind, namespace, name = key.split("/", 2)
                    ref = WorkloadRef.model_validate({"kind": kind, "namespace": namespace, "name": name})
                    await self.carry_out(key, step, workload=ref, now=now)

    # -- trust ---------------------------------------------------------------------------------------
    def remember_predictions(
        self, namespace: str, w: WorkloadView, outcome: Outcome, stances: Sequence[Stance], now: float
    ) -> None:
        for st in stances:
            observability.CONFIDENCE.labels(namespace=namespace, agent=st.agent).set(st.confidence)
        agents = [s.name for s in outcome.seats]
        open_checks(self.state.checks, agents, outcome.prediction, namespace=namespace, workload_key=w.key, now=now)

    def check_predictions(
        self, namespace: str, w: WorkloadView, evidence: Mapping[str, EvidenceSet], now: float
    ) -> None:
        moved = settle_checks(self.state.checks, self.state.trust, workload_key=w.key, evidence=evidence, now=now)
        for check in moved:
            observability.TRUST.labels(namespace=namespace, agent=check.agent).set(
                self.state.trust[check.agent_key].trust
            )

    async def agent_status(self, namespace: str, table: Table) -> None:
        """Persist each Agent's learned trust (so it survives restarts) and its latest proposal (by the
        replica that holds the Agents' namespace)."""
        if not self.writes(namespace):
            return
        for seat, _ in table.seated:
            key = f"{namespace}/{seat.name}"
            trust = self.state.trust.get(key, TrustState())
            last = self.last_proposals.get(key)
            if key not in self.state.agents or self.persisted.get(key) == (trust, last):
                continue
            status: dict[str, Any] = {"trust": round(trust.trust, 4), "trustSamples": trust.samples}
            if trust.mean_error is not None:
                status["meanError"] = round(trust.mean_error, 4)
            if last is not None:
                status["lastProposal"] = last
            try:
                await self.kube.patch_status("agents", namespace, seat.name, status)
            except ApiException as exc:
                log.warning("could not record the status of agent %s: %s", key, exc.reason)
                continue
            self.persisted[key] = (trust, last)

    # -- status --------------------------------------------------------------------------------------
    async def invalid(
        self, namespace: str | None, name: str, body: Mapping[str, Any], reason: str, message: str, generation: int
    ) -> None:
        ref = PolicyRef(name, namespace)
        key = ref.key
        if not self.writes(namespace or ""):
            return  # a cluster policy's status is written by the holder of the cluster scope's shard
        old = ((body.get("status") or {}).get("conditions")) or []
        conditions = merge_conditions(
            old,
            [
                condition("Ready", False, reason, message, generation),
                condition("Invalid", True, reason, message, generation),
            ],
        )
        await self.kube.patch_status(
            ref.plural, namespace, name, {"conditions": conditions, "observedGeneration": generation, "workloads": 0}
        )
        if self.reported.get(key) != message:
            self.reported[key] = message
            log.warning("policy %s is invalid: %s", key, message)
            await self.recorder.event(
                involved={
                    "apiVersion": "accord.dev/v1alpha1",
                    "kind": ref.kind,
                    "metadata": {"name": name, "namespace": namespace, "uid": (body.get("metadata") or {}).get("uid")},
                },
                reason=reason,
                message=message,
                type_="Warning",
            )

    async def policy_status(
        self,
        namespace: str | None,
        name: str,
        body: Mapping[str, Any],
        spec: NegotiationPolicySpec,
        report: RoundReport,
        generation: int,
    ) -> None:
        ref = PolicyRef(name, namespace)
        key = ref.key
        if not self.writes(namespace or ""):
            return  # a cluster policy's status is written by the holder of the cluster scope's shard
        pending = sum(
            1
            for d in self.state.decisions.values()
            for r in d.records
            if r.policy == key and r.phase is Phase.PENDING_APPROVAL
        )
        observability.PENDING.labels(policy=key).set(pending)
        observability.METRICS_MISSING.labels(policy=key).set(1 if report.metrics_problems else 0)
        old = ((body.get("status") or {}).get("conditions")) or []
        metrics_msg = "; ".join(sorted(set(report.metrics_problems)))[:1000]
        conditions = merge_conditions(
            old,
            [
                condition(
                    "Ready",
                    True,
                    "Negotiating",
                    f"{report.negotiated} of {report.workloads} workloads negotiated"
                    + (f", {report.failed} failed" if report.failed else ""),
                    generation,
                ),
                condition("Invalid", False, "Valid", "the spec and its agents are valid", generation),
                condition(
                    "MetricsMissing",
                    bool(report.metrics_problems),
                    "MetricsUnavailable" if report.metrics_problems else "MetricsAvailable",
                    f"the missing-metrics rule ({spec.rules.missing_metrics.action.value}) applies: {metrics_msg}"
                    if report.metrics_problems
                    else "every agent has its metrics",
                    generation,
                ),
                condition(
                    "PolicyConflict",
                    bool(report.overlaps),
                    "SelectedByOthers" if report.overlaps else "NoOverlap",
                    "; ".join(sorted(report.overlaps))[:1000] or "no other policy selects these workloads",
                    generation,
                ),
                *(
                    condition(
                        kind,
                        bool(found),
                        reason if found else "NoConflict",
                        "; ".join(found)[:1000] or none,
                        generation,
                    )
                    for kind, found, reason, none in (
                        (
                            "AutoscalerConflict",
                            report.conflicts,
                            "AutoscalerManaged",
                            "no other autoscaler manages these workloads",
                        ),
                        (
                            "WriterConflict",
                            report.writers,
                            "OverwrittenByOthers",
                            "nothing else resets what Accord applies",
                        ),
                    )
                ),
            ],
        )
        status = {
            "workloads": report.workloads,
            "pendingApprovals": pending,
            "lastRoundTime": now_iso(),
            "observedGeneration": generation,
            "conditions": conditions,
        }
        await self.kube.patch_status(ref.plural, namespace, name, status)


async def to_the_end(acting: Coroutine[Any, Any, None]) -> None:
    """Acting (the executor's write, then the record's phase) is never cut half-way: a timeout or a
    cancellation of the step waits for it to end (each API call has its request timeout), then goes
    on. A process that dies meanwhile leaves the record Proposed; the next start resumes or closes it."""
    task = asyncio.ensure_future(acting)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    task.result()


def _event_type(emit: lifecycle.Emit) -> str:
    return "Warning" if emit.warning else "Normal"
