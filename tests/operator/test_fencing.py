"""A write the fence refuses leaves nothing behind: the lifecycle's state keeps only records that exist.

The fence (operator/sharding.py) refuses a write for a namespace whose shard this replica does not
hold. A record the state kept although it was never written would be resumed by a later round: the
workload changed with no record of why (found by benchmarks/operator_scale.py with three replicas
handing shards over). Here the Negotiator's bookkeeping runs with a recorder that only remembers
what it was asked to write; no API server is involved.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from accord.agents.base import Candidate
from accord.models.negotiation import Phase, Verdict, WorkloadRef
from accord.negotiation import lifecycle
from accord.operator.leadership import NotLeader
from accord.operator.loop import Negotiator
from accord.operator.state import OperatorConfig, State

KEY = "Deployment/team-a/web"
WORKLOAD = WorkloadRef.model_validate({"kind": "Deployment", "namespace": "team-a", "name": "web"})


class Fence:
    def __init__(self, holds: bool) -> None:
        self.held = holds

    def holds(self, namespace: str) -> bool:
        return self.held

    def fence(self, namespace: str) -> None:
        if not self.held:
            raise NotLeader(f"shard of {namespace} not held")


class Recorder:
    def __init__(self) -> None:
        self.written: list[str] = []

    async def write(self, namespace: str, intent: lifecycle.Write) -> None:
        self.written.append(intent.record.name)


def negotiator(holds: bool) -> tuple[Negotiator, Recorder]:
    n: Any = object.__new__(Negotiator)
    n.state = State(config=OperatorConfig())
    n.leader = Fence(holds)
    n.recorder = Recorder()
    return n, n.recorder


def write_step() -> lifecycle.Step:
    record = lifecycle.Record(
        name="web-1",
        phase=Phase.PROPOSED,
        created=0.0,
        current=Candidate(1, ""),
        target=Candidate(2, ""),
        verdict=Verdict.APPLY,
        policy="team-a/default",
        signature="1->2",
        fingerprint="f",
    )
    state = lifecycle.Decisions(records=(record,))
    return lifecycle.Step(state, (lifecycle.Write(record, "scale 1 -> 2", build=lambda: None),))  # type: ignore[arg-type, return-value]


def test_a_record_the_fence_refuses_is_neither_written_nor_kept() -> None:
    n, recorder = negotiator(holds=False)
    with pytest.raises(NotLeader):
        asyncio.run(n.carry_out(KEY, write_step(), workload=WORKLOAD, now=0.0))
    assert recorder.written == []
    assert n.state.decisions[KEY].find("web-1") is None


def test_a_record_written_by_the_holder_is_kept() -> None:
    n, recorder = negotiator(holds=True)
    asyncio.run(n.carry_out(KEY, write_step(), workload=WORKLOAD, now=0.0))
    assert recorder.written == ["web-1"]
    assert n.state.decisions[KEY].find("web-1") is not None
