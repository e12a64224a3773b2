"""One Prometheus query for all of a round's workloads instead of one each (metrics layer, pure).

An agent's query template names one workload (`$namespace`, `$workload`). When it has the shape
`AGG(EXPR)` (AGG one of sum, max, min, avg, count) and EXPR selects the workload by exactly one
`LABEL="$workload"` and one `NSLABEL="$namespace"` matcher, with no aggregation or variable of its
own, the same question for every workload of the round is `AGG by (NSLABEL, LABEL) (EXPR')`, where
EXPR' matches the round's namespaces and any workload: each answer series carries the namespace and
the workload it belongs to. Any other template is asked once per workload, as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_OUTER = re.compile(r"^\s*(sum|max|min|avg|count)\s*\((.*)\)\s*$", re.S)
_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"\$(namespace|workload)"')
# An aggregation (or grouping) inside EXPR would drop the labels the answer is split by.
_INNER_AGGREGATION = re.compile(
    r"\b(sum|max|min|avg|count|group|stddev|stdvar|topk|bottomk|quantile|count_values|by|without|on|ignoring)\b"
)
_OTHER_VARIABLE = re.compile(r"\$(kind|pool)\b")


@dataclass(frozen=True, slots=True)
class Grouped:
    """A template asked for many workloads at once: the query and the labels its series are split by."""

    promql: str
    namespace_label: str
    workload_label: str


def group(template: str, namespaces: Iterable[str]) -> Grouped | None:
    """The template asked for every workload of `namespaces` at once, or None when it cannot be."""
    outer = _OUTER.match(template)
    if outer is None:
        return None
    aggregation, inner = outer.group(1), outer.group(2)
    if _INNER_AGGREGATION.search(_strip_strings(inner)) or _OTHER_VARIABLE.search(inner):
        return None
    matchers = _MATCHER.findall(inner)
    labels = {variable: label for label, variable in matchers}
    if sorted(v for _, v in matchers) != ["namespace", "workload"] or inner.count("$") != 2:
        return None
    ns_label, wl_label = labels["namespace"], labels["workload"]
    if ns_label == wl_label:
        return None
    names = sorted(set(namespaces))
    if not names:
        return None
    alternatives = "|".join(re.escape(n) for n in names).replace("\\", "\\\\").replace('"', '\\"')

    def matcher(found: re.Match[str]) -> str:
        label, variable = found.group(1), found.group(2)
        return f'{label}=~"{alternatives}"' if variable == "namespace" else f'{label}!=""'

    rewritten = _MATCHER.sub(matcher, inner)
    return Grouped(f"{aggregation} by ({ns_label}, {wl_label}) ({rewritten})", ns_label, wl_label)


def _strip_strings(expr: str) -> str:
    """EXPR without its string literals: a label value may contain any word."""
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
