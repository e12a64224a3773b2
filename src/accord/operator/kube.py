"""The Kubernetes API clients the operator uses, and the blocking-call bridge (operator layer).

The official client is synchronous; every call runs in a thread of the operator's own pool (sized
for the workloads negotiated at once, with the client's connection pool as large) so the event loop
and kopf's watchers never block on the network, and no call waits behind other work on asyncio's
default pool. Every call carries a request timeout, so a thread is never held by an API server
that stopped answering. Errors are counted for /metrics.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from accord.models.common import GROUP, VERSION
from accord.operator import observability

T = TypeVar("T")

REQUEST_TIMEOUT = (5.0, 30.0)  # seconds to connect, and to wait for the answer, of every API call
SPARE_THREADS = 4  # for the calls made outside the workloads' steps: statuses, Events, approvals


@dataclass
class Kube:
    core: Any
    apps: Any
    custom: Any
    autoscaling: Any
    request_timeout: tuple[float, float] = REQUEST_TIMEOUT
    pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=SPARE_THREADS, thread_name_prefix="accord-kube")
    )

    @classmethod
    def connect(
        cls, kubeconfig: str | None = None, *, threads: int = 16, request_timeout: tuple[float, float] = REQUEST_TIMEOUT
    ) -> Kube:
        """Clients for `threads` calls at once (plus spares), each answered within `request_timeout`."""
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        workers = threads + SPARE_THREADS
        configuration = client.Configuration.get_default_copy()
        configuration.connection_pool_maxsize = workers  # one connection per thread: none waits for a socket
        api = client.ApiClient(configuration)
        return cls(
            core=client.CoreV1Api(api),
            apps=client.AppsV1Api(api),
            custom=client.CustomObjectsApi(api),
            autoscaling=client.AutoscalingV1Api(api),
            request_timeout=request_timeout,
            pool=ThreadPoolExecutor(max_workers=workers, thread_name_prefix="accord-kube"),
        )

    async def call(self, operation: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` in the pool, with the request timeout unless the caller gives its own."""
        kwargs.setdefault("_request_timeout", self.request_timeout)
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, functools.partial(fn, *args, **kwargs))
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
