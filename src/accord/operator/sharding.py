"""Several operator replicas split the namespaces between them, with ownership held in Leases
(operator layer).

The unit of sharding is the namespace. Everything Accord counts or writes for a workload lives in
its namespace and is decided there: a NegotiationPolicy selects only workloads of its own
namespace, the change budget and history are kept per workload, the records and the approval queue
are in the workload's namespace, and trust is learned per Agent, which lives beside its policies.
So a namespace needs no coordination between replicas once one replica owns it, and a hand-over
moves nothing but the right to write.

- A namespace belongs to shard `shard_of(namespace, shards)`: a stable hash, the same in every
  replica and across restarts. `shards` is fixed for an installation (the chart's `shards`); it is
  not the number of replicas.
- Each shard is a coordination.k8s.io Lease `<name>-shard-<i>`, taken, renewed and fenced exactly
  as the single Lease of `leadership.py`: a replica writes for a namespace only while it holds the
  namespace's shard, checked right before every write (`fence`).
- The replicas make themselves known in one Lease, `<name>-members`: each renews an annotation of
  its own there every `duration / 3` seconds (a compare-and-swap on the Lease's resourceVersion), and
  a member not renewed for `duration` seconds is gone. Which member should hold a shard is decided
  by rendezvous hashing over the live members (`owner`): every replica computes the same answer from
  the same list, a replica that joins takes about 1/n of the shards from the others and a replica
  that leaves hands its shards to the others only, so nothing else moves.
- A replica takes the shards it should hold (when free, or once their holder stopped renewing for
  `duration`) and stops renewing those it should no longer hold: the new owner takes them over when
  they lapse, so a hand-over, like a crash, takes at most one lease duration (plus one look), and
  no two replicas ever write for one namespace.
- Replicas that disagree on `shards` (an upgrade that changes it, two installations sharing one
  Lease name) would hash namespaces differently: while a live member counts shards otherwise, a
  replica gives up its shards and writes nothing, and says so in its log and the `accord_shards`
  gauge, until the members agree again (the old replicas of the upgrade are gone).

This is Kubernetes' own machinery (Leases, compare-and-swap on resourceVersion) used the way
kube-state-metrics and Argo CD split work among replicas; nothing here is a consensus of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from accord.operator import observability
from accord.operator.kube import conflict
from accord.operator.leadership import Leadership, NotLeader

log = logging.getLogger(__name__)

MEMBER_PREFIX = "members.accord.dev/"
# A member gone for this many lease durations is removed from the members Lease.
FORGET_AFTER = 4


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def shard_of(namespace: str, shards: int) -> int:
    """The shard a namespace belongs to: a stable hash, the same in every replica."""
    return _digest(namespace) % shards


def owner(shard: int, members: Iterable[str]) -> str | None:
    """The member that should hold `shard`: the highest rendezvous hash of (member, shard)."""
    return max(members, key=lambda m: (_digest(f"{m}/{shard}"), m), default=None)


def member_key(identity: str) -> str:
    """A valid annotation name for a member identity (pod names are; anything else is made so)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", identity).strip("-_.")
    if not name or len(name) > 63:
        name = hashlib.sha256(identity.encode()).hexdigest()[:40]
    return MEMBER_PREFIX + name


@dataclass(frozen=True)
class Member:
    identity: str
    renewed: float  # the member's wall clock at its last renewal
    shards: int  # how many shards it counts


def members_of(annotations: Mapping[str, str]) -> dict[str, Member]:
    """The members announced in the members Lease's annotations (`<renewed> <shards>` each)."""
    found: dict[str, Member] = {}
    for key, value in annotations.items():
        if not key.startswith(MEMBER_PREFIX):
            continue
        try:
            renewed, shards = value.split()
            found[key] = Member(key[len(MEMBER_PREFIX) :], float(renewed), int(shards))
        except ValueError:
            continue
    return found


@dataclass(frozen=True)
class Plan:
    """What one replica should hold, from the members it sees now."""

    wanted: frozenset[int]
    members: tuple[str, ...]  # the live members, sorted
    disagreeing: tuple[str, ...]  # live members that count shards otherwise


def plan(identity: str, shards: int, members: Mapping[str, Member], *, now: float, duration: float) -> Plan:
    """The shards `identity` should hold: those whose rendezvous owner among the live members is
    itself; none while a live member counts shards otherwise."""
    me = member_key(identity)[len(MEMBER_PREFIX) :]
    live = {m.identity: m for m in members.values() if m.renewed + duration >= now}
    live.setdefault(me, Member(me, now, shards))
    disagreeing = tuple(sorted(m.identity for m in live.values() if m.shards != shards))
    names = tuple(sorted(live))
    if disagreeing:
        return Plan(frozenset(), names, disagreeing)
    return Plan(frozenset(i for i in range(shards) if owner(i, names) == me), names, ())


class Shards:
    """This replica's part of the shards: which it holds, and the fence before each write."""

    def __init__(self, lease: Leadership, *, shards: int) -> None:
        """`lease` names the prefix, the identity and the timing: the members Lease is
        `<lease.name>-members`, the shards' `<lease.name>-shard-<i>`."""
        if shards < 1:
            raise ValueError("shards must be at least 1")
        self.kube = lease.kube
        self.api = lease.api
        self.namespace, self.name, self.identity, self.shards = lease.namespace, lease.name, lease.identity, shards
        self.duration, self.wall = lease.duration, lease.wall
        self.members = lease.sibling(f"{lease.name}-members")
        self.leases = [lease.sibling(f"{lease.name}-shard-{i}") for i in range(shards)]
        self.plan = Plan(frozenset(), (), ())
        self.on_change: Callable[[frozenset[int]], None] = lambda taken: None
        self._held: frozenset[int] = frozenset()

    # -- what this replica may write -------------------------------------------------------------
    def shard(self, namespace: str) -> int:
        return shard_of(namespace, self.shards)

    def holds(self, namespace: str) -> bool:
        return self.leases[self.shard(namespace)].holds()

    def held(self) -> frozenset[int]:
        return frozenset(i for i, lease in enumerate(self.leases) if lease.holds())

    def fence(self, namespace: str) -> None:
        """Refuse a write for `namespace` unless this replica holds its shard now."""
        i = self.shard(namespace)
        if not self.leases[i].holds():
            raise NotLeader(f"{self.identity} does not hold shard {i} (Lease {self.namespace}/{self.name}-shard-{i})")

    # -- taking and renewing ---------------------------------------------------------------------
    async def run(self, stopped: asyncio.Event) -> None:
        """Announce this replica, take and renew its shards until `stopped`; give them up on the way out."""
        try:
            while not stopped.is_set():
                try:
                    await self.step()
                except Exception:
                    log.warning("could not renew the shards' Leases in %s", self.namespace, exc_info=True)
                self._changed()
                settled = self.plan.wanted <= self.held()
                wait = self.duration / 3 if settled else self.duration / 5
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopped.wait(), timeout=wait)
        finally:
            await self.release()

    async def step(self) -> None:
        """One look: renew the membership, then take or renew the shards this replica should hold and
        stop renewing the others (their new owner takes them once they lapse)."""
        members = await self.announce()
        now = self.wall()
        new = plan(self.identity, self.shards, members, now=now, duration=self.duration)
        if new.disagreeing and new.disagreeing != self.plan.disagreeing:
            log.warning(
                "members %s count other than %d shards: this replica writes nothing until they agree",
                ", ".join(new.disagreeing),
                self.shards,
            )
        self.plan = new
        for i, lease in enumerate(self.leases):
            if i in new.wanted:
                try:
                    await lease.step()
                except ApiException as exc:
                    log.info("could not take or renew shard %d: %s", i, exc.reason)
            elif lease.holds():
                lease.held_until = 0.0  # no more writes here; the new owner takes it when it lapses

    def _changed(self) -> None:
        held = self.held()
        observability.LEADER.set(1 if held else 0)
        observability.SHARDS.labels(state="held").set(len(held))
        observability.SHARDS.labels(state="total").set(self.shards)
        observability.SHARDS.labels(state="members").set(len(self.plan.members))
        observability.SHARDS.labels(state="disagreeing").set(len(self.plan.disagreeing))
        taken = held - self._held
        if held != self._held:
            log.info(
                "%s holds shards %s of %d (members: %s)",
                self.identity,
                sorted(held),
                self.shards,
                ", ".join(self.plan.members),
            )
            self._held = held
        if taken:
            self.on_change(taken)

    async def announce(self) -> dict[str, Member]:
        """Renew this replica's entry in the members Lease (and forget members long gone); the
        members as written. A conflict (another member wrote first) is retried on the fresh object."""
        me = member_key(self.identity)
        for _ in range(5):
            now = self.wall()
            lease = await self.members.read()
            entry = f"{now:.3f} {self.shards}"
            if lease is None:
                body: dict[str, Any] = {
                    "metadata": {
                        "name": f"{self.name}-members",
                        "namespace": self.namespace,
                        "annotations": {me: entry},
                    },
                    "spec": {},
                }
                try:
                    await self.kube.call("create leases", self.api.create_namespaced_lease, self.namespace, body)
                except ApiException as exc:
                    if exc.status == 409:
                        continue
                    raise
                return members_of(body["metadata"]["annotations"])
            annotations: dict[str, str] = dict((lease.get("metadata") or {}).get("annotations") or {})
            gone = [
                key
                for key, m in members_of(annotations).items()
                if key != me and m.renewed + FORGET_AFTER * self.duration < now
            ]
            for key in gone:
                del annotations[key]
            annotations[me] = entry
            lease["metadata"]["annotations"] = annotations
            try:
                await self.kube.call(
                    "update leases", self.api.replace_namespaced_lease, f"{self.name}-members", self.namespace, lease
                )
            except ApiException as exc:
                if conflict(exc):
                    continue
                raise
            return members_of(annotations)
        raise RuntimeError(f"the members Lease {self.namespace}/{self.name}-members changed under every attempt")

    async def release(self) -> None:
        """On a clean stop: give every held shard up and leave the members, so that the others take
        over at once instead of waiting the Leases out."""
        for lease in self.leases:
            await lease.release()
        self._changed()
        with contextlib.suppress(ApiException, RuntimeError):
            for _ in range(5):
                lease_body = await self.members.read()
                annotations = ((lease_body or {}).get("metadata") or {}).get("annotations") or {}
                if lease_body is None or member_key(self.identity) not in annotations:
                    return
                del annotations[member_key(self.identity)]
                try:
                    await self.kube.call(
                        "update leases",
                        self.api.replace_namespaced_lease,
                        f"{self.name}-members",
                        self.namespace,
                        lease_body,
                    )
                    return
                except ApiException as exc:
                    if not conflict(exc):
                        raise
