"""The executor: the only code that writes workloads (operator layer).

It takes a `Command` from the decision lifecycle, re-reads the workload just before acting and
re-validates the command against it and the live policy (`lifecycle.revalidate`: the workload is
where the decision found it, the policy still selects it and still allows the target, no pause,
no open freeze window, budget left); only then does it write. Replicas go through the scale
subresource with the read resourceVersion (optimistic concurrency), retried on conflict while the
workload still matches; placement goes through a JSON patch of the pod template guarded by a
`test` of the resourceVersion. Every change stamps the Negotiation's name on the workload. If a
HorizontalPodAutoscaler manages the replicas, the executor works through its minReplicas when the
policy allows it and otherwise refuses: Accord never fights it. It returns what happened as the
lifecycle's `Result` (done, refused, failed) and raises only on the unexpected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from accord.models.policy import NegotiationPolicySpec
from accord.negotiation.lifecycle import Command, Decisions, Done, Failed, Live, Refused, Result, revalidate
from accord.operator.kube import Kube, conflict, not_found
from accord.operator.workloads import (
    NEGOTIATION,
    ORIGINAL_MAX,
    ORIGINAL_MIN,
    AutoscalerView,
    WorkloadView,
    current_placement,
    placed_scheduling,
    workload_view,
)

log = logging.getLogger(__name__)

RETRIES = 4
FIELD_MANAGER = "accord"  # every write is Accord's in managedFields (GitOps tools can ignore it)


class Executor:
    def __init__(self, kube: Kube, *, stamp: bool = True) -> None:
        self.kube = kube
        # Stamping the Negotiation's name patches the workload: only where the install grants that
        # (with placements). Without it the workload's Event names the Negotiation.
        self.stamp = stamp

    async def _read(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        api = self.kube.apps
        fn = api.read_namespaced_deployment if kind == "Deployment" else api.read_namespaced_stateful_set
        obj = await self.kube.call(f"get {kind}", fn, name, namespace)
        body: dict[str, Any] = api.api_client.sanitize_for_serialization(obj)
        return body

    async def apply(
        self,
        command: Command,
        *,
        policy: NegotiationPolicySpec | None,
        hpa: AutoscalerView | None,
        decisions: Decisions,
        now: float,
        reaches: Callable[[WorkloadView], bool],
    ) -> Result:
        """Re-read, re-validate, then act; what happened. An API error is a failure to record, not a crash.
        `reaches`: whether the policy (as it is now) still reaches the workload as read."""
        try:
            return await self._attempts(command, policy=policy, hpa=hpa, decisions=decisions, now=now, reaches=reaches)
        except ApiException as exc:
            return Failed(f"API error {exc.status}: {exc.reason}")

    async def _attempts(self, command: Command, **given: Any) -> Result:
        policy: NegotiationPolicySpec | None = given["policy"]
        hpa: AutoscalerView | None = given["hpa"]
        decisions: Decisions = given["decisions"]
        now: float = given["now"]
        reaches: Callable[[WorkloadView], bool] = given["reaches"]
        ref = command.workload
        target = command.target
        for attempt in range(RETRIES):
            try:
                body = await self._read(ref.kind, ref.namespace, ref.name)
            except ApiException as exc:
                if not not_found(exc):
                    raise
                body = None
            view = None if body is None else workload_view(ref.kind, body)
            live = (
                None
                if view is None or policy is None
                else Live(
                    replicas=view.replicas,
                    placement=current_placement(policy, view),
                    uid=view.uid,
                    paused=view.paused,
                    selected=reaches(view),
                )
            )
            refused = revalidate(command, live, policy=policy, state=decisions, now=now)
            if refused is not None:
                return refused
            assert body is not None
            assert view is not None
            assert live is not None
            assert policy is not None
            if hpa is not None:
                return await self._through_hpa(command, policy, hpa)
            if (live.replicas, live.placement) == (target.replicas, target.placement):
                await self._stamp(ref.kind, ref.namespace, ref.name, command.record)
                return Done(target.replicas, target.placement, "already applied")
            generation = None
            try:
                if live.placement != target.placement:
                    generation = await self._place(
                        ref.kind,
                        ref.namespace,
                        ref.name,
                        body,
                        policy,
                        target.placement,
                        target.replicas,
                        command.record,
                    )
                else:
                    await self._scale(ref.kind, ref.namespace, ref.name, view.resource_version, target.replicas)
                    await self._stamp(ref.kind, ref.namespace, ref.name, command.record)
            except ApiException as exc:
                if (conflict(exc) or exc.status == 422) and attempt < RETRIES - 1:
                    log.info("conflict writing %s/%s, re-reading (attempt %d)", ref.namespace, ref.name, attempt + 1)
                    await asyncio.sleep(0.2 * (attempt + 1))
                    continue
                raise
            return Done(
                target.replicas,
                target.placement,
                "scale" if live.placement == target.placement else "placement",
                generation=generation,
            )
        return Refused("the workload kept changing while the decision was applied", stale=True)

    async def _scale(self, kind: str, namespace: str, name: str, resource_version: str, replicas: int) -> None:
        api = self.kube.apps
        fn = (
            api.replace_namespaced_deployment_scale
            if kind == "Deployment"
            else api.replace_namespaced_stateful_set_scale
        )
        body = {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": resource_version},
            "spec": {"replicas": replicas},
        }
        await self.kube.call(f"update {kind}/scale", fn, name, namespace, body, field_manager=FIELD_MANAGER)

    async def _place(
        self,
        kind: str,
        namespace: str,
        name: str,
        body: Mapping[str, Any],
        policy: NegotiationPolicySpec,
        placement: str,
        replicas: int,
        record: str,
    ) -> int | None:
        """Move the workload to a pool in one write: replicas and the pod template's scheduling
        fields, computed from the body just read (`placed_scheduling`: the policy's pools' keys,
        tolerations and affinity terms out, the target's in, the workload's own kept), guarded by
        a `test` of the resourceVersion that body had.

        A JSON patch under that precondition, not server-side apply: on a 1.20 API server the pod
        template's nodeSelector and tolerations are atomic, so an apply of the pool's entries
        alone conflicts with the workload's own manager, and forced it replaces the whole field
        and drops the workload's entries (tried: a forced apply of `{pool: b}` and one toleration
        left neither `kubernetes.io/os` nor `dedicated`). Writing the merged fields under the
        resourceVersion test loses nothing written in between; the writes carry the field
        manager `accord`, so the changed fields are Accord's in managedFields. Returns the
        generation the write gave the workload: the rollout the lifecycle then follows."""
        option = next((p for p in policy.placements if p.name == placement), None)
        if option is None:  # revalidate refuses a placement the policy no longer has
            raise ValueError(f"placement {placement!r} is not in the policy")
        pod_spec: Mapping[str, Any] = ((body.get("spec") or {}).get("template") or {}).get("spec") or {}
        meta: Mapping[str, Any] = body.get("metadata") or {}
        ops: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": meta.get("resourceVersion", "")},
            {"op": "replace", "path": "/spec/replicas", "value": replicas},
        ]
        for key, value in placed_scheduling(pod_spec, policy, option).items():
            path = f"/spec/template/spec/{key}"
            if value is not None:
                ops.append({"op": "add", "path": path, "value": value})
            elif key in pod_spec:
                ops.append({"op": "remove", "path": path})
        api = self.kube.apps
        fn = api.patch_namespaced_deployment if kind == "Deployment" else api.patch_namespaced_stateful_set
        written = await self.kube.call(f"patch {kind}", fn, name, namespace, ops, field_manager=FIELD_MANAGER)
        # A Deployment's generation moves with its annotations too: the stamp's is the one to follow.
        written = await self._stamp(kind, namespace, name, record) or written
        generation = getattr(getattr(written, "metadata", None), "generation", None)
        return generation if isinstance(generation, int) else None

    async def _stamp(self, kind: str, namespace: str, name: str, record: str) -> Any:
        """The Negotiation's name on the workload; the workload as written (None without stamping)."""
        if not self.stamp:
            return None
        api = self.kube.apps
        fn = api.patch_namespaced_deployment if kind == "Deployment" else api.patch_namespaced_stateful_set
        return await self.kube.call(
            f"patch {kind}",
            fn,
            name,
            namespace,
            {"metadata": {"annotations": {NEGOTIATION: record}}},
            field_manager=FIELD_MANAGER,
        )

    async def _through_hpa(self, command: Command, policy: NegotiationPolicySpec, hpa: AutoscalerView) -> Result:
        ref = command.workload
        target = command.target.replicas
        if hpa.keda_owner is not None:
            return Failed(f"HorizontalPodAutoscaler {hpa.name} is owned by KEDA {hpa.keda_owner}; it is not patched")
        if not policy.coordinate_autoscalers:
            return Failed(
                f"HorizontalPodAutoscaler {hpa.name} manages the replicas of {ref.kind} {ref.namespace}/{ref.name}; "
                "set spec.coordinateAutoscalers to work through its minReplicas"
            )
        if command.target.placement != command.current.placement:
            return Failed("placement changes of a workload under an HPA are not coordinated")
        patch: dict[str, Any] = {"spec": {"minReplicas": max(1, target), "maxReplicas": max(hpa.max_replicas, target)}}
        if hpa.original is None:
            # What the HPA's owner set, kept on the HPA itself: given back when Accord lets go (`release`).
            patch["metadata"] = {
                "annotations": {
                    ORIGINAL_MIN: "" if hpa.min_replicas is None else str(hpa.min_replicas),
                    ORIGINAL_MAX: str(hpa.max_replicas),
                }
            }
        await self._patch_hpa(hpa, patch)
        await self._stamp(ref.kind, ref.namespace, ref.name, command.record)
        log.info("set HPA %s/%s minReplicas %s -> %s", ref.namespace, hpa.name, hpa.min_replicas, target)
        return Done(target, command.current.placement, "hpa")

    async def _patch_hpa(self, hpa: AutoscalerView, patch: dict[str, Any]) -> None:
        api = self.kube.autoscaling
        await self.kube.call(
            "patch horizontalpodautoscalers",
            api.patch_namespaced_horizontal_pod_autoscaler,
            hpa.name,
            hpa.namespace,
            patch,
        )

    async def release(self, hpa: AutoscalerView) -> None:
        """Give an HPA back the bounds it had before Accord raised them, and forget them."""
        if hpa.original is None:
            return
        low, high = hpa.original
        patch = {
            "metadata": {"annotations": {ORIGINAL_MIN: None, ORIGINAL_MAX: None}},
            "spec": {"minReplicas": low, "maxReplicas": high},
        }
        await self._patch_hpa(hpa, patch)
        log.info("gave HPA %s/%s its bounds back: minReplicas %s, maxReplicas %s", hpa.namespace, hpa.name, low, high)
