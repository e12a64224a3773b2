"""The executor: the only code that writes workloads (operator layer).

It re-reads the workload just before acting and refuses a stale decision (the workload no
longer looks like it did when the decision was made). Replicas go through the scale
subresource with the read resourceVersion (optimistic concurrency), retried on conflict while
the workload still matches; placement goes through a JSON patch of the pod template guarded by a
`test` of the resourceVersion. Every change stamps the Negotiation's name on the workload. If a
HorizontalPodAutoscaler manages the replicas, the executor works through its minReplicas when
the policy allows it and otherwise refuses with `AutoscalerConflict`: Accord never fights it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from accord.models.negotiation import NegotiationSpec
from accord.models.policy import NegotiationPolicySpec
from accord.operator.errors import AutoscalerConflict, StaleDecision
from accord.operator.kube import Kube, conflict, not_found
from accord.operator.workloads import NEGOTIATION, current_placement, placement_patch, workload_view

log = logging.getLogger(__name__)

RETRIES = 4


@dataclass(frozen=True)
class Applied:
    replicas: int
    placement: str
    via: str  # "scale", "hpa", "already applied"


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
        *,
        record: str,
        spec: NegotiationSpec,
        policy: NegotiationPolicySpec,
        hpa: tuple[str, int | None, int] | None,
    ) -> Applied:
        ref = spec.workload
        target_replicas = spec.outcome.target.replicas
        target_placement = spec.outcome.target.placement
        for attempt in range(RETRIES):
            try:
                body = await self._read(ref.kind, ref.namespace, ref.name)
            except ApiException as exc:
                if not_found(exc):
                    raise StaleDecision(f"{ref.kind} {ref.namespace}/{ref.name} no longer exists") from exc
                raise
            view = workload_view(ref.kind, body)
            if ref.uid and view.uid != ref.uid:
                raise StaleDecision(f"{ref.kind} {ref.namespace}/{ref.name} was recreated since the decision")
            placement = current_placement(policy, view)
            if hpa is not None:
                return await self._through_hpa(spec, policy, hpa, record, view.annotations)
            if view.replicas == target_replicas and placement == target_placement:
                await self._stamp(ref.kind, ref.namespace, ref.name, record)
                return Applied(target_replicas, target_placement, "already applied")
            if (view.replicas, placement) != (spec.current.replicas, spec.current.placement):
                raise StaleDecision(
                    f"the workload is at {view.replicas}@{placement}, not {spec.current.replicas}@"
                    f"{spec.current.placement} as when decided"
                )
            try:
                if placement != target_placement:
                    await self._place(
                        ref.kind,
                        ref.namespace,
                        ref.name,
                        view.resource_version,
                        policy,
                        target_placement,
                        target_replicas,
                        record,
                    )
                else:
                    await self._scale(ref.kind, ref.namespace, ref.name, view.resource_version, target_replicas)
                    await self._stamp(ref.kind, ref.namespace, ref.name, record)
            except ApiException as exc:
                if (conflict(exc) or exc.status == 422) and attempt < RETRIES - 1:
                    log.info("conflict writing %s/%s, re-reading (attempt %d)", ref.namespace, ref.name, attempt + 1)
                    await asyncio.sleep(0.2 * (attempt + 1))
                    continue
                raise
            return Applied(target_replicas, target_placement, "scale" if placement == target_placement else "placement")
        raise StaleDecision("the workload kept changing while the decision was applied")

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
        await self.kube.call(f"update {kind}/scale", fn, name, namespace, body)

    async def _place(
        self,
        kind: str,
        namespace: str,
        name: str,
        resource_version: str,
        policy: NegotiationPolicySpec,
        placement: str,
        replicas: int,
        record: str,
    ) -> None:
        option = next((p for p in policy.placements if p.name == placement), None)
        if option is None:
            raise StaleDecision(f"placement {placement!r} is no longer in the policy")
        pod = placement_patch(option)
        ops: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
            {"op": "replace", "path": "/spec/replicas", "value": replicas},
        ]
        for key in ("nodeSelector", "tolerations", "affinity"):
            if key in pod:
                empty: Any = {} if key == "nodeSelector" else []
                ops.append({"op": "add", "path": f"/spec/template/spec/{key}", "value": pod[key] or empty})
        api = self.kube.apps
        fn = api.patch_namespaced_deployment if kind == "Deployment" else api.patch_namespaced_stateful_set
        await self.kube.call(f"patch {kind}", fn, name, namespace, ops)
        await self._stamp(kind, namespace, name, record)

    async def _stamp(self, kind: str, namespace: str, name: str, record: str) -> None:
        if not self.stamp:
            return
        api = self.kube.apps
        fn = api.patch_namespaced_deployment if kind == "Deployment" else api.patch_namespaced_stateful_set
        await self.kube.call(f"patch {kind}", fn, name, namespace, {"metadata": {"annotations": {NEGOTIATION: record}}})

    async def _through_hpa(
        self,
        spec: NegotiationSpec,
        policy: NegotiationPolicySpec,
        hpa: tuple[str, int | None, int],
        record: str,
        annotations: Any,
    ) -> Applied:
        name, low, high = hpa
        ref = spec.workload
        target = spec.outcome.target.replicas
        if not policy.coordinate_autoscalers:
            raise AutoscalerConflict(
                f"HorizontalPodAutoscaler {name} manages the replicas of {ref.kind} {ref.namespace}/{ref.name}; "
                "set spec.coordinateAutoscalers to work through its minReplicas"
            )
        if spec.outcome.target.placement != spec.current.placement:
            raise AutoscalerConflict("placement changes of a workload under an HPA are not coordinated")
        patch = {"spec": {"minReplicas": max(1, target), "maxReplicas": max(high, target)}}
        await self.kube.call(
            "patch horizontalpodautoscalers",
            self.kube.autoscaling.patch_namespaced_horizontal_pod_autoscaler,
            name,
            ref.namespace,
            patch,
        )
        await self._stamp(ref.kind, ref.namespace, ref.name, record)
        log.info("set HPA %s/%s minReplicas %s -> %s", ref.namespace, name, low, target)
        return Applied(target, spec.current.placement, "hpa")
