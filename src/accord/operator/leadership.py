"""One Lease held by one replica at a time, with a fencing check before every write (operator layer).

Each shard of the namespaces is one such Lease (`sharding.py`). Every replica (and, during a rolling
upgrade, the old and the new operator) watches and decides, but only the holder of a shard's Lease
writes for its namespaces: records, Events, workloads. A replica takes the Lease
when it is free or its holder stopped renewing it for `duration` seconds, and renews it every
`duration / 3`. It counts itself the holder only until `duration - margin` seconds after the start
of its last successful renewal, measured on its own monotonic clock: by the time another replica may
take the Lease over (its holder's last renewal time plus `duration`, on the API server's record), the
old holder has stopped writing, even if its process is paused or cut off from the API server. The
`margin` covers the clocks' drift over one `duration`. `fence()` is that check, called right before
each write; a write it refuses is left to the next holder, which decides again from what it sees.

This is the Kubernetes way of electing one leader (client-go's leaderelection package works the same
way); nothing here is a consensus of its own.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from accord.operator.kube import Kube, conflict, not_found

log = logging.getLogger(__name__)

DURATION = 15.0
MARGIN = 2.0


class NotLeader(Exception):  # noqa: N818 - what happened, in the logs
    """This replica does not hold the Lease (any more): it must not write."""


def _micro(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


class Leadership:
    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        name: str,
        identity: str,
        duration: float = DURATION,
        margin: float = MARGIN,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.kube = kube
        self.api = client.CoordinationV1Api(kube.core.api_client)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration, self.margin = duration, margin
        self.monotonic, self.wall = monotonic, wall
        self.held_until = 0.0

    def sibling(self, name: str) -> Leadership:
        """Another Lease beside this one, held by the same identity with the same timing (not held yet)."""
        other = copy.copy(self)
        other.name, other.held_until = name, 0.0
        return other

    def holds(self) -> bool:
        return self.monotonic() < self.held_until

    def fence(self) -> None:
        """Refuse a write unless this replica holds the Lease now."""
        if not self.holds():
            raise NotLeader(f"{self.identity} does not hold the Lease {self.namespace}/{self.name}")

    async def read(self) -> dict[str, Any] | None:
        """The Lease as it is now (None: there is none)."""
        try:
            lease = await self.kube.call("get leases", self.api.read_namespaced_lease, self.name, self.namespace)
        except ApiException as exc:
            if not_found(exc):
                return None
            raise
        body: dict[str, Any] = self.api.api_client.sanitize_for_serialization(lease)
        return body

    async def step(self) -> bool:
        """One attempt to take or renew the Lease; whether this replica holds it now."""
        started = self.monotonic()
        now = self.wall()
        lease = await self.read()
        mine: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.duration),
            "renewTime": _micro(now),
        }
        try:
            if lease is None:
                body = {
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": {**mine, "acquireTime": _micro(now), "leaseTransitions": 0},
                }
                await self.kube.call("create leases", self.api.create_namespaced_lease, self.namespace, body)
            else:
                spec = lease.get("spec") or {}
                held = spec.get("holderIdentity")
                renewed = _parse(spec.get("renewTime"))
                duration = float(spec.get("leaseDurationSeconds") or self.duration)
                free = not held or renewed is None or renewed + duration < now
                if held != self.identity and not free:
                    self.held_until = 0.0
                    return False
                if held != self.identity:
                    mine["acquireTime"] = _micro(now)
                    mine["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
                # The read resourceVersion makes this a compare-and-swap: of two replicas, one wins.
                body = {**lease, "spec": {**spec, **mine}}
                await self.kube.call(
                    "update leases", self.api.replace_namespaced_lease, self.name, self.namespace, body
                )
        except ApiException as exc:
            if conflict(exc):
                self.held_until = 0.0  # someone else wrote it first
                return False
            raise
        self.held_until = started + self.duration - self.margin
        return True

    async def release(self) -> None:
        """Give the Lease up on a clean stop, so that the next holder need not wait it out."""
        if not self.holds():
            return
        self.held_until = 0.0
        try:
            lease = await self.read()
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"]["holderIdentity"] = ""
            await self.kube.call("update leases", self.api.replace_namespaced_lease, self.name, self.namespace, lease)
        except ApiException as exc:
            log.info("could not release the Lease: %s", exc.reason)
