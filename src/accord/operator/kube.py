"""The Kubernetes API clients the operator uses, and the blocking-call bridge (operator layer).

The official client is synchronous; every call runs in a worker thread so the event loop (and
kopf's watchers) never block on the network. Errors are counted for /metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from accord.models.common import GROUP, VERSION
from accord.operator import observability

T = TypeVar("T")


@dataclass
class Kube:
    core: Any
    apps: Any
    custom: Any
    autoscaling: Any

    @classmethod
    def connect(cls, kubeconfig: str | None = None) -> Kube:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        api = client.ApiClient()
        return cls(
            core=client.CoreV1Api(api),
            apps=client.AppsV1Api(api),
            custom=client.CustomObjectsApi(api),
            autoscaling=client.AutoscalingV1Api(api),
        )

    async def call(self, operation: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except ApiException as exc:
            observability.API_ERRORS.labels(operation=operation, code=str(exc.status)).inc()
            raise
        finally:
            observability.API_REQUESTS.labels(operation=operation).inc()

    # Accord's own resources -------------------------------------------------------------------
    async def get_custom(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        return await self.call(
            f"get {plural}", self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, plural, name
        )

    async def create_custom(self, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.call(
            f"create {plural}", self.custom.create_namespaced_custom_object, GROUP, VERSION, namespace, plural, body
        )

    async def patch_status(self, plural: str, namespace: str | None, name: str, status: dict[str, Any]) -> None:
        """Patch the status of a namespaced object, or of a cluster-scoped one (namespace None)."""
        body = {"status": status}
        if namespace is None:
            fn = self.custom.patch_cluster_custom_object_status
            await self.call(f"patch {plural}/status", fn, GROUP, VERSION, plural, name, body)
        else:
            fn = self.custom.patch_namespaced_custom_object_status
            await self.call(f"patch {plural}/status", fn, GROUP, VERSION, namespace, plural, name, body)

    async def list_custom(self, plural: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        found = await self.call(
            f"list {plural}",
            self.custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            plural,
            label_selector=selector,
        )
        items: list[dict[str, Any]] = found.get("items", [])
        return items

    async def delete_custom(self, plural: str, namespace: str, name: str) -> None:
        try:
            await self.call(
                f"delete {plural}",
                self.custom.delete_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise


def conflict(exc: BaseException) -> bool:
    return isinstance(exc, ApiException) and exc.status == 409


def not_found(exc: BaseException) -> bool:
    return isinstance(exc, ApiException) and exc.status == 404
