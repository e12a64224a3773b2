"""A flash crowd replayed through `accord simulate`: the workload is never taken below what the demand
it has just seen needs, even after the forecasts' misses have cost the performance agent its trust."""

from __future__ import annotations

import random
import statistics

import pytest

from accord.agents.performance import PerformanceAgent
from accord.models.settings import PerformanceSettings
from accord.sim.cli import main
from accord.sim.model import ReplayModel
from accord.sim.negotiated import default_policy
from accord.sim.report import read_csv
from tests.sim.conftest import START

MODEL = ReplayModel()
BASE = 150.0
FOLD = 15


def flash_crowd(seed: int = 1) -> list[float]:
    """Three hours at 150/s with one-minute spikes of 3-8x that no forecast sees coming (they cost the
    performance agent its trust), then a sudden 15-fold surge for 90 minutes, then back."""
    rng = random.Random(seed)
    before = [BASE * (1 + rng.gauss(0, 0.05)) * (rng.uniform(3, 8) if rng.random() < 0.1 else 1) for _ in range(180)]
    surge = [BASE * FOLD * (1 + rng.gauss(0, 0.1)) for _ in range(90)]
    after = [BASE * (1 + rng.gauss(0, 0.05)) for _ in range(60)]
    return before + surge + after


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[float], list[int], list[int]]:
    folder = tmp_path_factory.mktemp("surge")
    trace = folder / "flash-crowd.csv"
    rows = [f"{START + 60 * i:.0f},{value!r}" for i, value in enumerate(flash_crowd())]
    trace.write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    code = main(["--trace", str(trace), "--no-scale", "--out", str(folder / "out"), "--quiet"])
    assert code == 0
    return read_csv(folder / "out" / "accord.csv")


def slo_of_the_default_policy() -> float:
    _, agents = default_policy(MODEL)
    settings = agents["performance"].performance
    assert isinstance(settings, PerformanceSettings)
    return PerformanceAgent("performance", settings).slo_utilisation


def needed(demand: float, slo: float) -> int:
    """The fewest pods that serve `demand` at no more than `slo` utilisation, within the model's bounds."""
    n = 1
    while demand / (n * MODEL.capacity) > slo:
        n += 1
    return min(MODEL.max_replicas, n)


def test_the_trace_has_a_sudden_multi_fold_rise(replayed: tuple[list[float], list[int], list[int]]) -> None:
    demand, _, _ = replayed
    # Every minute of the surge is several times the hour before it, even that hour's median minute.
    assert min(demand[180:270]) > 8 * statistics.median(demand[120:180])


def test_the_workload_is_never_taken_below_what_the_observed_demand_needs(
    replayed: tuple[list[float], list[int], list[int]],
) -> None:
    demand, requested, _ = replayed
    slo = slo_of_the_default_policy()
    assert slo == pytest.approx(MODEL.slo, abs=1e-4)
    below = [
        (t, requested[t - 1], requested[t], needed(demand[t - 1], slo))
        for t in range(1, len(demand))
        # At tick t the policy has seen demand up to t - 1: it may keep what it has, or rise, but never
        # go below both what it had and what that demand needs.
        if requested[t] < min(requested[t - 1], needed(demand[t - 1], slo))
    ]
    assert below == []


def test_through_the_surge_the_workload_keeps_up_with_what_it_has_seen(
    replayed: tuple[list[float], list[int], list[int]],
) -> None:
    demand, requested, _ = replayed
    slo = slo_of_the_default_policy()
    # From the second minute of the surge on, every decision asks for at least what the minute before needed.
    for t in range(182, 270):
        assert requested[t] >= needed(demand[t - 1], slo), t
