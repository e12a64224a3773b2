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
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from accord.agents.base import Candidate, Situation
from accord.metrics.evidence import EvidenceSet
from accord.metrics.prometheus import PrometheusSource
from accord.models.agent import AgentSpec
from accord.models.errors import describe_validation_error
from accord.models.negotiation import NegotiationSpec, Phase, Verdict, WorkloadRef
from accord.models.policy import ClusterNegotiationPolicySpec, Mode, NegotiationPolicySpec
from accord.negotiation.engine import Case, Outcome, Stance, negotiate_each
from accord.negotiation.record import build_record
from accord.negotiation.rules import History, close_enough
from accord.negotiation.table import Table, seat_agents
from accord.negotiation.trust import TrustState, open_checks, settle_checks
from accord.operator import observability
from accord.operator.errors import AutoscalerConflict, StaleDecision
from accord.operator.executor import Executor
from accord.operator.gather import gather, read_secret
from accord.operator.kube import Kube
from accord.operator.recorder import (
    Recorder,
    condition,
    expired,
    merge_conditions,
    negotiation_ref,
    now_iso,
    signature,
    workload_ref,
)
from accord.operator.scope import PolicyRef
from accord.operator.state import State, parse_policy
from accord.operator.workloads import WorkloadView, current_placement, pools

log = logging.getLogger(__name__)

MIN_ROUND_GAP = 3.0
VERDICT_PHASE = {Verdict.HOLD: Phase.HELD, Verdict.IMPASSE: Phase.IMPASSE}


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


class Negotiator:
    def __init__(self, kube: Kube, state: State, health: observability.Health) -> None:
        self.kube = kube
        self.state = state
        self.health = health
        self.recorder = Recorder(kube, state)
        self.executor = Executor(kube, stamp=state.config.placements)
        url = state.config.prometheus_url
        self.prometheus = PrometheusSource(url, timeout=state.config.prometheus_timeout) if url else None
        self.session: aiohttp.ClientSession | None = None
        self.persisted: dict[str, tuple[TrustState, dict[str, Any] | None]] = {}
        self.last_proposals: dict[str, dict[str, Any]] = {}
        self.reported: dict[str, str] = {}  # policy key -> last invalid message, to post one Event per change
        self.agent_namespaces: dict[str, str] = {}  # policy key -> namespace of its Agents

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
        selected = [w for w in list(self.state.workloads.values()) if self.state.selects(spec, ref, w)]
        active = [w for w in selected if not w.paused and not w.opted_out]
        report = RoundReport(workloads=len(selected))
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
        gathered = await asyncio.gather(
            *(guarded(w, self.prepare(w, spec, key, table, report), "gathering evidence") for w in active)
        )
        ready = [g for g in gathered if g is not None]
        # Deciding is pure CPU work: off the event loop, so that approvals and watches are served meanwhile.
        decided = await asyncio.to_thread(
            negotiate_each, policy=spec, cases=[g.case for g in ready], agents=table.seated
        )
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
        await self.expire_pending(key)
        observability.ROUND_SECONDS.labels(policy=key).observe(time.monotonic() - started)
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
        self, w: WorkloadView, spec: NegotiationPolicySpec, policy_key: str, table: Table, report: RoundReport
    ) -> Gathered:
        """The workload's situation and the evidence each agent asks for."""
        t0 = time.monotonic()
        w = self.state.workloads.get(w.key, w)
        now = time.time()
        situation = Situation(
            namespace=w.namespace,
            name=w.name,
            kind=w.kind,
            labels=w.labels,
            current=Candidate(w.replicas, current_placement(spec, w)),
            ready_replicas=w.ready,
            pools=pools(spec, self.state.nodes.values(), w),
            now=now,
            interval_seconds=spec.interval_seconds,
        )
        evidence, problems = await gather(
            seated=table.seated,
            situation=situation,
            policy=spec,
            prometheus=self.prometheus,
            session=self.session,
        )
        report.metrics_problems.extend(problems)
        self.check_predictions(self.agents_namespace(policy_key), w, evidence, now)
        case = Case(situation, evidence, self.state.histories.get(w.key, History()))
        return Gathered(w, case, time.monotonic() - t0)

    async def conclude(
        self, gathered: Gathered, outcome: Outcome, spec: NegotiationPolicySpec, policy_key: str, report: RoundReport
    ) -> float | None:
        """Remember, record and act on one outcome; the seconds it took, or None when the workload
        changed while it was negotiated (the next round decides on what it is now)."""
        t0 = time.monotonic()
        key, situation = gathered.workload.key, gathered.case.situation
        async with self.state.lock(key):
            w = self.state.workloads.get(key)
            history = self.state.histories.get(key, History())
            if (
                w is None
                or Candidate(w.replicas, current_placement(spec, w)) != situation.current
                or history.changes != gathered.case.history.changes
            ):
                log.info("%s changed while it was negotiated; the next round decides on what it is now", key)
                return None
            now = situation.now
            namespace = self.agents_namespace(policy_key)
            keep = max(spec.bounds.scale_down_stabilization_seconds, spec.bounds.scale_up_stabilization_seconds)
            self.state.histories[key] = history.remember(
                now=now,
                recommendation=outcome.recommendation if outcome.recommendation is not None else w.replicas,
                changed=False,
                keep_seconds=keep,
            )
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
            ref = WorkloadRef.model_validate({"kind": w.kind, "namespace": w.namespace, "name": w.name, "uid": w.uid})
            await self.settle(
                outcome,
                lambda: build_record(outcome, workload=ref, policy=policy_key, mode=spec.mode.value, now=now),
                w,
                spec,
                policy_key,
                report,
            )
        return time.monotonic() - t0

    async def settle(
        self,
        outcome: Outcome,
        write_record: Callable[[], NegotiationSpec],
        w: WorkloadView,
        spec: NegotiationPolicySpec,
        policy_key: str,
        report: RoundReport,
    ) -> None:
        """Record the outcome when it changes something or needs a person, then act on it. The record
        is written only then: most rounds change nothing, and a record is the costly part of one."""
        latest = self.state.latest.get(w.key)
        pending = self.state.pending.get(w.key)
        limit = spec.history_limit
        if outcome.verdict is Verdict.NO_CHANGE:
            # Only a real agreement on the status quo retires a pending decision; "no change because
            # metrics are missing" or "held back by stabilization" says nothing against it.
            if pending is not None and not outcome.gates:
                await self.supersede(pending.namespace, pending.name, "the agents now agree to keep the current state")
            return
        record = write_record()
        sig = signature(record)
        if outcome.verdict in VERDICT_PHASE:
            if latest is not None and latest.signature == sig and latest.phase == VERDICT_PHASE[outcome.verdict].value:
                return
            phase = VERDICT_PHASE[outcome.verdict]
            name = await self.recorder.create(
                workload=w,
                spec=record,
                phase=phase,
                message=outcome.reason,
                policy_name=policy_key,
                history_limit=limit,
            )
            kind = "Warning" if outcome.verdict is Verdict.IMPASSE else "Normal"
            await self.recorder.event(
                involved=workload_ref(w), reason=phase.value, message=f"{name}: {outcome.reason}", type_=kind
            )
            return
        if outcome.verdict is Verdict.PENDING_APPROVAL:
            if pending is not None and close_enough(
                pending.target, (outcome.target.replicas, outcome.target.placement)
            ):
                return  # the person is already looking at (nearly) this; don't pull it from under them
            name = await self.recorder.create(
                workload=w,
                spec=record,
                phase=Phase.PENDING_APPROVAL,
                message=outcome.reason,
                policy_name=policy_key,
                expires_in=spec.approval.expiry_seconds,
                history_limit=limit,
            )
            if pending is not None:
                await self.supersede(pending.namespace, pending.name, f"superseded by {name}", by=name)
            await self.recorder.event(
                involved=workload_ref(w),
                reason="ApprovalRequired",
                message=f"{name} waits for approval: kubectl annotate negotiation {name} accord.dev/approval=approved",
            )
            return
        if spec.mode is Mode.AUDIT:
            if latest is not None and latest.signature == sig:
                return
            name = await self.recorder.create(
                workload=w,
                spec=record,
                phase=Phase.PROPOSED,
                message=f"audit mode, not applied: {outcome.reason}",
                policy_name=policy_key,
                history_limit=limit,
            )
            return
        hpa = self.state.hpas.get(w.key)
        if hpa is not None and not spec.coordinate_autoscalers:
            report.conflicts.append(f"{w.kind} {w.namespace}/{w.name} is managed by HPA {hpa[0]}")
            if latest is not None and latest.signature == sig + "|hpa":
                return
            conflict = AutoscalerConflict(
                f"HorizontalPodAutoscaler {hpa[0]} manages the replicas; not applied. "
                "Set spec.coordinateAutoscalers to work through its minReplicas."
            )
            name = await self.recorder.create(
                workload=w,
                spec=record,
                phase=Phase.HELD,
                message=str(conflict),
                policy_name=policy_key,
                history_limit=limit,
            )
            self.state.latest[w.key].signature = sig + "|hpa"
            await self.recorder.event(
                involved=workload_ref(w), reason="AutoscalerConflict", message=str(conflict), type_="Warning"
            )
            return
        name = await self.recorder.create(
            workload=w,
            spec=record,
            phase=Phase.PROPOSED,
            message="applying",
            policy_name=policy_key,
            history_limit=limit,
        )
        if pending is not None:
            await self.supersede(pending.namespace, pending.name, f"superseded by {name}", by=name)
        await self.execute(name, record, spec, w)

    async def execute(self, name: str, record: NegotiationSpec, spec: NegotiationPolicySpec, w: WorkloadView) -> None:
        """Apply a decision through the executor and record how it went."""
        try:
            applied = await self.executor.apply(record=name, spec=record, policy=spec, hpa=self.state.hpas.get(w.key))
        except StaleDecision as exc:
            await self.recorder.set_phase(w.namespace, name, Phase.SUPERSEDED, f"not applied: {exc}")
            return
        except (AutoscalerConflict, ApiException) as exc:
            message = str(exc) if isinstance(exc, AutoscalerConflict) else f"API error {exc.status}: {exc.reason}"
            await self.recorder.set_phase(w.namespace, name, Phase.FAILED, message)
            await self.recorder.event(
                involved=workload_ref(w), reason="ApplyFailed", message=f"{name}: {message}", type_="Warning"
            )
            return
        now = time.time()
        history = self.state.histories.get(w.key, History())
        self.state.histories[w.key] = History(history.recommendations, (*history.changes, now))
        message = (
            f"{record.current.replicas}@{record.current.placement} -> {applied.replicas}@{applied.placement}"
            f" ({applied.via})"
        )
        await self.recorder.set_phase(w.namespace, name, Phase.APPLIED, message, appliedAt=now_iso(now))
        await self.recorder.event(involved=workload_ref(w), reason="Negotiated", message=f"{name}: {message}")
        await self.recorder.event(involved=negotiation_ref(w.namespace, name), reason="Applied", message=message)

    async def supersede(self, namespace: str, name: str, message: str, by: str | None = None) -> None:
        extra = {"supersededBy": by} if by else {}
        try:
            await self.recorder.set_phase(namespace, name, Phase.SUPERSEDED, message, **extra)
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def expire_pending(self, policy_key: str) -> None:
        now = time.time()
        for key, rec in list(self.state.pending.items()):
            if rec.policy == policy_key and expired(rec.expires_at, now):
                async with self.state.lock(key):
                    if self.state.pending.get(key) is rec:
                        await self.recorder.set_phase(
                            rec.namespace, rec.name, Phase.EXPIRED, f"no decision before {rec.expires_at}"
                        )

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
        """Persist each Agent's learned trust (so it survives restarts) and its latest proposal."""
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
        pending = sum(1 for r in self.state.pending.values() if r.policy == key)
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
                    "AutoscalerConflict",
                    bool(report.conflicts),
                    "AutoscalerManaged" if report.conflicts else "NoConflict",
                    "; ".join(report.conflicts)[:1000] or "no other autoscaler manages these workloads",
                    generation,
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
