from __future__ import annotations

import pytest

from accord.negotiation.trust import FLOOR, TrustState, relative_error, update_trust


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
