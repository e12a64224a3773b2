from __future__ import annotations

from collections.abc import Callable

import pytest

from accord.agents.base import Prediction
from accord.metrics.evidence import Evidence, Source
from accord.negotiation.trust import (
    FLOOR,
    INFLUENCE_FLOOR,
    PendingCheck,
    TrustState,
    influence,
    open_checks,
    relative_error,
    settle_checks,
    update_trust,
)


@pytest.mark.parametrize(
    ("predicted", "observed", "error"),
    [(100, 100, 0.0), (110, 100, 10 / 110), (50, 100, 0.5), (0, 100, 1.0), (1000, 1, 0.999), (0, 0, 0.0)],
)
def test_relative_error(predicted: float, observed: float, error: float) -> None:
    assert relative_error(predicted, observed) == pytest.approx(error, abs=1e-3)


def test_accurate_predictions_keep_full_trust_and_wrong_ones_lose_it() -> None:
    good = bad = TrustState()
    for _ in range(10):
        good = update_trust(good, predicted=100, observed=102)
        bad = update_trust(bad, predicted=100, observed=300)
    assert good.trust == 1.0
    assert bad.trust < 0.2
    assert bad.samples == good.samples == 10
    assert bad.mean_error is not None and bad.mean_error > 0.5


def test_trust_is_bounded_and_recovers() -> None:
    state = TrustState()
    for _ in range(100):
        state = update_trust(state, predicted=1, observed=1000)
    assert state.trust == FLOOR
    low = state.trust
    for _ in range(5):
        state = update_trust(state, predicted=100, observed=100)
    assert state.trust > low


def test_non_finite_inputs_change_nothing() -> None:
    state = TrustState(trust=0.7, samples=3, mean_error=0.2)
    assert update_trust(state, predicted=float("nan"), observed=1.0) == state


def test_trust_moves_an_agents_say_but_never_silences_it() -> None:
    assert influence(1.0) == 1.0
    assert influence(FLOOR) >= INFLUENCE_FLOOR == 0.5
    assert influence(0.0) == INFLUENCE_FLOOR
    assert influence(0.3) < influence(0.6) < influence(0.9)


def predicting(value: float, horizon: float = 180.0) -> Callable[[str], Prediction | None]:
    """What each agent predicts: the performance agent a demand peak, the others nothing."""

    def predict(agent: str) -> Prediction | None:
        if agent != "performance":
            return None
        return Prediction(quantity="demand_peak", value=value, horizon_seconds=horizon)

    return predict


def demand_seen(*points: tuple[float, float]) -> dict[str, dict[str, Evidence]]:
    return {"performance": {"demand": Evidence.from_series("demand", Source.PROMETHEUS, "q", points)}}


def test_a_prediction_is_checked_once_its_horizon_has_passed() -> None:
    checks: list[PendingCheck] = []
    open_checks(checks, ["performance", "cost"], predicting(100.0), namespace="ns", workload_key="ns/web", now=0.0)
    open_checks(checks, ["performance", "cost"], predicting(500.0), namespace="ns", workload_key="ns/web", now=60.0)
    assert [c.predicted for c in checks] == [100.0]  # one open check per agent and workload
    trust: dict[str, TrustState] = {}
    early = settle_checks(checks, trust, workload_key="ns/web", evidence=demand_seen((60.0, 300.0)), now=120.0)
    assert early == [] and len(checks) == 1  # not due yet
    seen = demand_seen((60.0, 300.0), (120.0, 310.0), (180.0, 290.0), (240.0, 900.0))
    settled = settle_checks(checks, trust, workload_key="ns/web", evidence=seen, now=180.0)
    assert [c.agent_key for c in settled] == ["ns/performance"]
    assert checks == []
    # the peak within (0, 180] was 310 against a prediction of 100: a large miss costs trust
    assert trust["ns/performance"].trust < 1.0
    assert trust["ns/performance"].mean_error == pytest.approx(relative_error(100.0, 310.0))


def test_checks_of_other_workloads_wait_for_their_own_evidence() -> None:
    checks: list[PendingCheck] = []
    open_checks(checks, ["performance"], predicting(100.0), namespace="ns", workload_key="ns/api", now=0.0)
    trust: dict[str, TrustState] = {}
    assert settle_checks(checks, trust, workload_key="ns/web", evidence=demand_seen((60.0, 1.0)), now=999.0) == []
    assert len(checks) == 1 and trust == {}
