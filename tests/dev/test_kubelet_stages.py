"""The simulated kubelets' pod stages (accord_dev.cluster.kubelets): which stage a pod is at, and its start-up delay.

Pure logic on pod documents as the API server returns them; the kubelets against a real control plane are
in e2e/test_nodes.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from accord_dev.cluster.kubelets import READY_AFTER_ANNOTATION, Pool, ready_after, stage_for


def pod(
    *,
    phase: str | None = None,
    ready: str | None = None,
    deleting: bool = False,
    annotations: dict[str, str] | None = None,
    probe_delays: tuple[int | None, ...] = (),
) -> dict[str, Any]:
    containers: list[dict[str, Any]] = [{"name": "app", "image": "pause"}]
    for i, delay in enumerate(probe_delays):
        probe: dict[str, Any] = {"httpGet": {"path": "/", "port": 80}}
        if delay is not None:
            probe["initialDelaySeconds"] = delay
        containers.append({"name": f"c{i}", "image": "pause", "readinessProbe": probe})
    metadata: dict[str, Any] = {"name": "p", "namespace": "ns", "uid": "u", "annotations": annotations or {}}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status: dict[str, Any] = {}
    if phase is not None:
        status["phase"] = phase
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready}]
    return {"metadata": metadata, "spec": {"nodeName": "n", "containers": containers}, "status": status}


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        pytest.param(pod(), "pod-running", id="bound-without-status"),
        pytest.param(pod(phase="Pending"), "pod-running", id="pending"),
        pytest.param(pod(phase="Running", ready="False"), "pod-ready", id="running-not-ready"),
        pytest.param(pod(phase="Running"), "pod-ready", id="running-without-conditions"),
        pytest.param(pod(phase="Running", ready="True"), None, id="ready-nothing-to-do"),
        pytest.param(pod(phase="Succeeded"), None, id="finished"),
        pytest.param(pod(phase="Running", ready="True", deleting=True), "pod-delete", id="deleting-wins"),
        pytest.param(pod(deleting=True), "pod-delete", id="deleting-before-start"),
    ],
)
def test_a_pod_is_at_the_first_stage_it_matches(document: dict[str, Any], expected: str | None) -> None:
    stage = stage_for(document)
    assert (stage.name if stage else None) == expected


def test_the_start_up_delay_is_the_annotation_first() -> None:
    assert ready_after(pod(annotations={READY_AFTER_ANNOTATION: "7.5"}, probe_delays=(30,)), default=1) == 7.5


def test_else_the_largest_readiness_probe_delay() -> None:
    assert ready_after(pod(probe_delays=(3, 12, None)), default=1) == 12


def test_a_probe_without_a_delay_means_ready_at_once() -> None:
    assert ready_after(pod(probe_delays=(None,)), default=5) == 0


def test_no_probe_no_annotation_takes_the_default() -> None:
    assert ready_after(pod(), default=5) == 5


@pytest.mark.parametrize("bad", ["soon", ""])
def test_an_unreadable_annotation_falls_back_to_the_probes(bad: str) -> None:
    assert ready_after(pod(annotations={READY_AFTER_ANNOTATION: bad}, probe_delays=(4,)), default=1) == 4


def test_a_negative_annotation_is_no_delay() -> None:
    assert ready_after(pod(annotations={READY_AFTER_ANNOTATION: "-3"}), default=1) == 0


def test_a_pool_names_its_nodes_and_refuses_nonsense() -> None:
    assert Pool("spot", 3).node_names() == ["spot-0", "spot-1", "spot-2"]
    assert Pool("none", 0).node_names() == []
    with pytest.raises(ValueError, match="count must be >= 0"):
        Pool("bad", -1)
    with pytest.raises(ValueError, match="pods must be >= 1"):
        Pool("bad", 1, pods=0)
