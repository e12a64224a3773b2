"""The cost agent: cheaper candidates score higher, spot carries a risk premium, the budget is a hard line."""

from __future__ import annotations

from typing import Any

import pytest

from accord.agents.base import Candidate, Pool, QueryKind
from accord.agents.cost import CostAgent
from accord.metrics.evidence import Evidence, Source
from accord.models.settings import CostSettings
from tests.factories import NOW, pools, situation


def agent(**settings: Any) -> CostAgent:
    return CostAgent("cost", CostSettings(**settings))


def grid(*replicas: int, placements: tuple[str, ...] = ("standard", "spot")) -> list[Candidate]:
    return [Candidate(r, p) for r in replicas for p in placements]


def live_price(pool: str, value: float, *, age: float = 0.0) -> Evidence:
    return Evidence(
        name=f"price:{pool}",
        source=Source.PROMETHEUS,
        query="accord_pool_price_per_pod_hour",
        value=value,
        timestamp=NOW - age,
        samples=1,
        labels={"pool": pool},
    )


def c(text: str) -> Candidate:
    replicas, placement = text.split("@")
    return Candidate(int(replicas), placement)


# --- cheaper is better ---------------------------------------------------------------------------------------------


def test_fewer_replicas_on_the_same_pool_score_higher() -> None:
    proposal = agent().propose(situation(), grid(1, 2, 4, 8, placements=("standard",)), {})
    utilities = [proposal.utility(Candidate(r, "standard")) for r in (1, 2, 4, 8)]
    assert utilities == sorted(utilities, reverse=True)
    assert len(set(utilities)) == 4
    assert utilities[0] == 1.0
    assert 0.0 < utilities[-1] < 0.25  # 8 pods cost 8 times as much; never scored as nothing


@pytest.mark.parametrize(
    ("cheaper", "dearer"),
    [
        pytest.param("4@spot", "4@standard", id="spot-is-cheaper-than-standard"),
        pytest.param("6@spot", "2@standard", id="6-spot-pods-cheaper-than-2-standard"),
        pytest.param("2@standard", "4@standard", id="half-the-pods"),
        pytest.param("2@spot", "6@spot", id="spot-fewer"),
    ],
)
def test_cheaper_candidate_gets_higher_utility(cheaper: str, dearer: str) -> None:
    proposal = agent().propose(situation(), grid(2, 4, 6), {})
    assert proposal.utility(c(cheaper)) > proposal.utility(c(dearer))


def test_utility_is_the_cheapest_spend_over_the_candidates() -> None:
    # spends: 2@spot 0.066 (the cheapest), 4@standard 0.4; each with one more spot pod (0.033)
    proposal = agent().propose(situation(), grid(2, 4, 6), {})
    assert proposal.utility(c("2@spot")) == 1.0
    assert proposal.utility(c("4@standard")) == pytest.approx((0.066 + 0.033) / (0.4 + 0.033))
    assert proposal.ideal == c("2@spot")


def test_halving_the_spend_counts_the_same_at_any_scale() -> None:
    """In a Nash product an agent's say is its log utility: a ratio makes every halving worth the same."""
    proposal = agent().propose(situation(), grid(1, 2, 50, 100, 200, placements=("standard",)), {})
    u = {r: proposal.utility(Candidate(r, "standard")) for r in (50, 100, 200)}
    assert u[50] / u[100] == pytest.approx(u[100] / u[200], rel=0.02)


def test_single_candidate_is_fully_acceptable() -> None:
    proposal = agent().propose(situation(), [c("4@standard")], {})
    assert proposal.utilities == {c("4@standard"): 1.0}
    assert proposal.confidence == 1.0


# --- prices --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("penalty", "pool", "expected"),
    [
        pytest.param(0.1, "spot", 0.033, id="default-10pct-on-spot"),
        pytest.param(0.0, "spot", 0.03, id="no-premium"),
        pytest.param(0.5, "spot", 0.045, id="50pct-premium"),
        pytest.param(1.0, "spot", 0.06, id="double"),
        pytest.param(0.5, "standard", 0.10, id="on-demand-untouched"),
    ],
)
def test_spot_premium_is_applied(penalty: float, pool: str, expected: float) -> None:
    price, source = agent(spot_interruption_penalty=penalty).price(situation(), pool, {})
    assert price == pytest.approx(expected)
    assert source is None


def test_spot_premium_can_make_spot_the_dearer_pool() -> None:
    pool_map = pools(spot=Pool(name="spot", price_per_pod_hour=0.095, capacity_type="spot"))
    proposal = agent(spot_interruption_penalty=0.1).propose(situation(pool_map=pool_map), grid(4), {})
    assert proposal.utility(c("4@standard")) > proposal.utility(c("4@spot"))  # 0.1045 > 0.10


@pytest.mark.parametrize(
    ("pool_map", "pool", "expected"),
    [
        pytest.param(pools(), "standard", 0.10, id="policy-price"),
        pytest.param(pools(free=Pool(name="free")), "free", 0.05, id="pool-without-price-uses-default"),
        pytest.param(pools(), "unknown", 0.05, id="unknown-pool-uses-default"),
        pytest.param(pools(zero=Pool(name="zero", price_per_pod_hour=0.0)), "zero", 0.0, id="free-pool-is-free"),
    ],
)
def test_price_source_order(pool_map: dict[str, Pool], pool: str, expected: float) -> None:
    price, _ = agent(default_price_per_pod_hour=0.05).price(situation(pool_map=pool_map), pool, {})
    assert price == pytest.approx(expected)


def test_prices_are_recorded_as_evidence() -> None:
    proposal = agent().propose(situation(), grid(2), {})
    (prices,) = [e for e in proposal.evidence if e.name == "prices"]
    assert prices.source is Source.POLICY
    assert prices.text == "spot=0.0330/pod-hour, standard=0.1000/pod-hour"
    assert prices.samples == 2


# --- budget --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "vetoed"),
    [
        pytest.param(None, set(), id="no-budget"),
        pytest.param(1.0, set(), id="everything-affordable"),
        pytest.param(0.5, {"6@standard"}, id="0.50-per-hour"),
        pytest.param(0.4, {"6@standard"}, id="exactly-at-budget-is-allowed"),
        pytest.param(0.39, {"4@standard", "6@standard"}, id="just-below-4-standard"),
        pytest.param(0.15, {"2@standard", "4@standard", "6@standard", "6@spot"}, id="tight"),
    ],
)
def test_budget_vetoes_candidates_above_it(budget: float | None, vetoed: set[str]) -> None:
    proposal = agent(budget_per_hour=budget).propose(situation(), grid(2, 4, 6), {})
    assert {str(k) for k in proposal.vetoes} == vetoed
    for candidate, reason in proposal.vetoes.items():
        assert f"exceeds the budget of {budget:.2f}/h" in reason
        assert candidate not in proposal.utilities
    assert set(proposal.utilities) | set(proposal.vetoes) == set(grid(2, 4, 6))


def test_budget_is_named_in_the_rationale() -> None:
    proposal = agent(budget_per_hour=0.5).propose(situation(), grid(2, 4, 6), {})
    assert "budget 0.50/h" in proposal.rationale
    assert "current spend 0.40/h" in proposal.rationale
    assert "cheapest acceptable is 2@spot" in proposal.rationale


def test_utilities_are_scored_over_the_affordable_candidates() -> None:
    proposal = agent(budget_per_hour=0.4).propose(situation(), grid(2, 4, 6), {})
    assert max(proposal.utilities.values()) == 1.0
    assert set(proposal.utilities) == {c("2@spot"), c("4@spot"), c("6@spot"), c("2@standard"), c("4@standard")}
    assert min(proposal.utilities.values()) == proposal.utility(c("4@standard"))  # the dearest affordable


def test_everything_over_budget_leaves_no_ideal() -> None:
    proposal = agent(budget_per_hour=0.01).propose(situation(), grid(2, 4), {})
    assert proposal.utilities == {}
    assert len(proposal.vetoes) == 4
    assert proposal.ideal is None
    assert "every candidate is over budget" in proposal.rationale


# --- live prices ---------------------------------------------------------------------------------------------------


def test_live_price_overrides_the_policy_price() -> None:
    evidence = {"price:standard": live_price("standard", 0.01)}
    price, source = agent().price(situation(), "standard", evidence)
    assert price == 0.01
    assert source is evidence["price:standard"]
    proposal = agent().propose(situation(), grid(4), evidence)
    assert proposal.utility(c("4@standard")) > proposal.utility(c("4@spot"))
    assert evidence["price:standard"] in proposal.evidence


def test_live_spot_price_still_gets_the_premium() -> None:
    price, _ = agent(spot_interruption_penalty=0.2).price(situation(), "spot", {"price:spot": live_price("spot", 0.05)})
    assert price == pytest.approx(0.06)


def test_live_price_without_a_value_falls_back_to_the_policy() -> None:
    absent = Evidence.absent("price:standard", Source.PROMETHEUS)
    price, source = agent().price(situation(), "standard", {"price:standard": absent})
    assert (price, source) == (0.10, None)


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        pytest.param(0.0, 1.0, id="fresh"),
        pytest.param(1200.0, 1.0, id="20-minutes"),
        pytest.param(2400.0, 0.5, id="40-minutes"),
        pytest.param(3600.0, 0.0, id="an-hour"),
        pytest.param(86400.0, 0.0, id="a-day"),
    ],
)
def test_stale_live_price_lowers_confidence(age: float, expected: float) -> None:
    proposal = agent().propose(situation(), grid(4), {"price:standard": live_price("standard", 0.1, age=age)})
    assert proposal.confidence == pytest.approx(expected)


def test_the_stalest_live_price_decides_confidence() -> None:
    evidence = {
        "price:standard": live_price("standard", 0.1, age=0.0),
        "price:spot": live_price("spot", 0.03, age=2400.0),
    }
    assert agent().propose(situation(), grid(4), evidence).confidence == pytest.approx(0.5)


def test_live_price_is_a_checkable_prediction() -> None:
    proposal = agent().propose(situation(interval=45.0), grid(4), {"price:standard": live_price("standard", 0.2)})
    assert proposal.prediction is not None
    assert proposal.prediction.quantity == "price_per_pod_hour:standard"
    assert proposal.prediction.value == 0.2
    assert proposal.prediction.horizon_seconds == 45.0
    assert agent().propose(situation(), grid(4), {}).prediction is None


@pytest.mark.parametrize(("query", "count"), [(None, 0), ("accord_pool_price_per_pod_hour", 1)])
def test_evidence_needed_only_with_a_price_query(query: str | None, count: int) -> None:
    requests = agent(price_query=query).evidence_needed()
    assert len(requests) == count
    if requests:
        assert requests[0].name == "price"
        assert requests[0].query == query
        assert requests[0].kind is QueryKind.INSTANT
