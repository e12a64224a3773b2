"""The history limit: the newest records stay, waiting ones are never dropped (recorder logic, no cluster)."""

from __future__ import annotations

import asyncio
from typing import Any

from accord.operator.recorder import Recorder
from accord.operator.state import OperatorConfig, State
from accord.operator.workloads import workload_view


class DeletesOnly:
    """Records delete calls; any other API call would fail the test with AttributeError."""

    def __init__(self) -> None:
        self.deleted: list[str] = []

    async def delete_custom(self, plural: str, namespace: str, name: str) -> None:
        self.deleted.append(name)


def test_prune_keeps_the_newest_and_everything_still_waiting() -> None:
    state = State(config=OperatorConfig())
    w = workload_view("Deployment", {"metadata": {"name": "web", "namespace": "shop"}, "spec": {"replicas": 1}})
    phases = ["Applied", "PendingApproval", "Applied", "Superseded", "Held", "Applied"]
    state.records[w.key] = {f"web-{i}": (f"2026-01-01T00:0{i}:00Z", p) for i, p in enumerate(phases)}
    kube: Any = DeletesOnly()
    asyncio.run(Recorder(kube, state).prune(w, 3))
    assert kube.deleted == ["web-2", "web-0"]  # web-1 waits for a person and stays
    assert sorted(state.records[w.key]) == ["web-1", "web-3", "web-4", "web-5"]


def test_prune_asks_nothing_under_the_limit() -> None:
    state = State(config=OperatorConfig())
    w = workload_view("Deployment", {"metadata": {"name": "web", "namespace": "shop"}, "spec": {"replicas": 1}})
    state.records[w.key] = {"web-0": ("2026-01-01T00:00:00Z", "Applied")}
    kube: Any = DeletesOnly()
    asyncio.run(Recorder(kube, state).prune(w, 1))
    assert kube.deleted == []
