"""Which query templates are asked once for a whole round, and how."""

from __future__ import annotations

import pytest

from accord.metrics.grouping import Grouped, group

DEMAND = 'sum(rate(http_requests_total{namespace="$namespace", workload="$workload"}[2m]))'


def test_the_default_demand_query_is_asked_once_for_every_workload_of_the_round() -> None:
    assert group(DEMAND, ["shop", "blog", "shop"]) == Grouped(
        'sum by (namespace, workload) (rate(http_requests_total{namespace=~"blog|shop", workload!=""}[2m]))',
        "namespace",
        "workload",
    )


def test_other_label_names_and_aggregations_are_kept() -> None:
    found = group('max(accord_emulator_requests_per_second{deployment="$workload", ns="$namespace"})', ["a"])
    assert found == Grouped(
        'max by (ns, deployment) (accord_emulator_requests_per_second{deployment!="", ns=~"a"})', "ns", "deployment"
    )


def test_a_label_value_that_reads_like_an_aggregation_does_not_stop_grouping() -> None:
    found = group('sum(up{job="sum by max", namespace="$namespace", pod="$workload"})', ["a"])
    assert found is not None and found.workload_label == "pod"


@pytest.mark.parametrize(
    "template",
    [
        'rate(http_requests_total{namespace="$namespace", workload="$workload"}[2m])',  # no outer aggregation
        'sum(sum by (pod) (x{namespace="$namespace", workload="$workload"}))',  # the split labels dropped inside
        'histogram_quantile(0.9, sum by (le) (rate(x{namespace="$namespace", w="$workload"}[5m])))',
        'sum(x{namespace="$namespace"})',  # no workload matcher
        'sum(x{workload="$workload"})',  # no namespace matcher
        'sum(x{namespace="$namespace", workload="$workload", kind="$kind"})',  # another variable
        'sum(x{namespace="$namespace", workload="$workload"}) / sum(y{namespace="$namespace", w="$workload"})',
        'sum(x{workload="$namespace", workload="$workload"})',  # one label for both
        "vector(1)",
    ],
)
def test_templates_that_cannot_be_split_by_workload_are_asked_per_workload(template: str) -> None:
    assert group(template, ["a"]) is None


def test_namespaces_are_escaped_for_the_regular_expression() -> None:
    found = group(DEMAND, ["a.b"])
    assert found is not None and 'namespace=~"a\\\\.b"' in found.promql
