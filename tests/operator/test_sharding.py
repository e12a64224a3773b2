"""Which replica writes for which namespace (pure rules of operator/sharding.py).

The Leases themselves are taken, renewed and handed over on the real API server in
e2e/test_sharding.py; here the rules every replica computes alike: the shard of a namespace, the
owner of a shard among the live members, when a member counts as live (pinned at `duration`), and
that replicas counting shards otherwise write nothing.
"""

from __future__ import annotations

from collections import Counter

import pytest

from accord.operator.sharding import MEMBER_PREFIX, Member, member_key, members_of, owner, plan, shard_of

NAMESPACES = [f"team-{i}" for i in range(2000)]


def live(*names: str, at: float = 100.0, shards: int = 6) -> dict[str, Member]:
    return {member_key(n): Member(n, at, shards) for n in names}


def test_a_namespace_has_one_shard_the_same_in_every_replica_and_the_shards_share_the_namespaces() -> None:
    assert [shard_of(n, 8) for n in NAMESPACES] == [shard_of(n, 8) for n in NAMESPACES]
    counts = Counter(shard_of(n, 8) for n in NAMESPACES)
    assert set(counts) == set(range(8))
    assert max(counts.values()) < 1.25 * len(NAMESPACES) / 8, counts
    assert min(counts.values()) > 0.75 * len(NAMESPACES) / 8, counts
    assert {shard_of(n, 1) for n in NAMESPACES} == {0}


def test_the_owner_of_a_shard_does_not_depend_on_the_order_members_are_listed_in() -> None:
    members = ["op-a", "op-b", "op-c"]
    for shard in range(12):
        assert owner(shard, members) == owner(shard, list(reversed(members))) in members
    assert owner(0, []) is None


def test_a_replica_that_joins_takes_shards_from_the_others_and_nothing_else_moves() -> None:
    before = {i: owner(i, ["op-a", "op-b"]) for i in range(64)}
    after = {i: owner(i, ["op-a", "op-b", "op-c"]) for i in range(64)}
    moved = [i for i in range(64) if before[i] != after[i]]
    assert moved, "the new replica takes a share"
    assert all(after[i] == "op-c" for i in moved), "a shard moves only to the newcomer"
    assert 64 / 3 * 0.5 < len(moved) < 64 / 3 * 1.5, len(moved)


def test_a_replica_that_leaves_hands_only_its_own_shards_to_the_others() -> None:
    before = {i: owner(i, ["op-a", "op-b", "op-c"]) for i in range(64)}
    after = {i: owner(i, ["op-a", "op-c"]) for i in range(64)}
    assert [i for i in range(64) if before[i] != after[i]] == [i for i in range(64) if before[i] == "op-b"]


def test_live_members_split_every_shard_between_them_each_exactly_once() -> None:
    members = live("op-a", "op-b", "op-c")
    plans = {m: plan(m, 6, members, now=101.0, duration=15.0) for m in ("op-a", "op-b", "op-c")}
    held = [s for p in plans.values() for s in p.wanted]
    assert sorted(held) == list(range(6)), plans
    assert all(p.members == ("op-a", "op-b", "op-c") for p in plans.values())


@pytest.mark.parametrize(("now", "counted"), [(115.0, True), (115.001, False)])
def test_a_member_counts_until_one_duration_after_its_last_renewal(now: float, counted: bool) -> None:
    members = {**live("op-a", at=now), **live("op-b", at=100.0)}
    mine = plan("op-a", 6, members, now=now, duration=15.0)
    assert ("op-b" in mine.members) is counted
    if counted:
        assert 0 < len(mine.wanted) < 6
    else:
        assert mine.wanted == frozenset(range(6)), "a member gone hands all its shards over"


def test_a_replica_not_yet_in_the_members_counts_itself() -> None:
    mine = plan("op-new", 4, live("op-a", shards=4), now=101.0, duration=15.0)
    assert mine.members == ("op-a", "op-new")
    assert mine.wanted == frozenset(i for i in range(4) if owner(i, ["op-a", "op-new"]) == "op-new")


def test_while_a_live_member_counts_shards_otherwise_a_replica_writes_nothing() -> None:
    members = {**live("op-a", shards=6), **live("op-b", shards=8)}
    mine = plan("op-a", 6, members, now=101.0, duration=15.0)
    assert mine.wanted == frozenset()
    assert mine.disagreeing == ("op-b",)
    # Once the member counting otherwise is gone (its last renewal a duration ago), the shards are taken again.
    gone = {**live("op-a", at=120.0, shards=6), **live("op-b", at=100.0, shards=8)}
    assert plan("op-a", 6, gone, now=115.001 + 5, duration=15.0).wanted == frozenset(range(6))


def test_members_are_read_from_their_annotations_and_anything_else_is_ignored() -> None:
    annotations = {
        f"{MEMBER_PREFIX}op-a": "1700000000.250 6",
        f"{MEMBER_PREFIX}op-b": "not a time",
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
    }
    assert members_of(annotations) == {f"{MEMBER_PREFIX}op-a": Member("op-a", 1700000000.25, 6)}


@pytest.mark.parametrize(
    ("identity", "expected"),
    [
        ("accord-7d9f8b6c5d-x2k4q", "accord-7d9f8b6c5d-x2k4q"),
        ("host/1234:ab", "host-1234-ab"),
    ],
)
def test_a_member_is_named_by_its_identity_where_that_makes_a_valid_annotation(identity: str, expected: str) -> None:
    assert member_key(identity) == MEMBER_PREFIX + expected


def test_an_identity_too_long_for_an_annotation_name_is_hashed_to_one() -> None:
    inside, outside = "a" * 63, "a" * 64
    assert member_key(inside) == MEMBER_PREFIX + inside
    name = member_key(outside)[len(MEMBER_PREFIX) :]
    assert len(name) <= 63 and name != outside[:63]
    assert member_key(outside) == member_key(outside)
