"""`accord simulate --prometheus` against a real Prometheus serving real recorded history.

Six hours of one-minute samples of a known shape (a daily sine plus a step) are backfilled into a
TSDB with ``promtool tsdb create-blocks-from openmetrics``, a Prometheus is started on that TSDB,
and the command is run as a user runs it. No Kubernetes cluster is needed.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from accord_dev.cluster import tools
from accord_dev.cluster.local import free_port
from accord_dev.cluster.prometheus import PrometheusServer

METRIC = "accord_e2e_requests_per_second"
QUERY = f'{METRIC}{{app="web"}}'
HISTORY_MINUTES = 6 * 60
STEP_AT_MINUTE = 3 * 60
# The replay asks for a range inside the history: half an hour in from either end.
MARGIN_MINUTES = 30
PEAK_PODS = 20.0  # accord simulate's defaults: the p99 is scaled to peak pods × capacity
CAPACITY = 100.0


def demand_at(minute: int) -> float:
    """Requests per second: a daily sine, plus a step of 400 three hours in."""
    daily = 600.0 + 300.0 * math.sin(2 * math.pi * (minute + 9 * 60) / 1440)
    return daily + (400.0 if minute >= STEP_AT_MINUTE else 0.0)


@dataclass(frozen=True)
class Recorded:
    """A Prometheus serving the backfilled history, and the values written (unix seconds → value)."""

    url: str
    values: dict[int, float]

    def between(self, start: int, end: int) -> list[float]:
        return [v for t, v in sorted(self.values.items()) if start <= t <= end]


def openmetrics(values: dict[int, float]) -> str:
    """The samples as OpenMetrics text: timestamps in seconds, and the `# EOF` promtool insists on."""
    lines = [f"# HELP {METRIC} Requests per second.", f"# TYPE {METRIC} gauge"]
    lines += [f'{METRIC}{{app="web"}} {value!r} {t}' for t, value in sorted(values.items())]
    return "\n".join([*lines, "# EOF", ""])


def iso_minute(seconds: int) -> str:
    """`2026-11-18T00:00`, UTC without a zone, the way the README writes --start."""
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M")


def simulate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "accord.cli", "simulate", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    """Prometheus on a TSDB backfilled with six hours of history that ended an hour ago."""
    directory = tmp_path_factory.mktemp("recorded-prometheus")
    end = int(time.time()) // 60 * 60 - 3600
    start = end - 60 * HISTORY_MINUTES
    values = {start + 60 * minute: demand_at(minute) for minute in range(HISTORY_MINUTES + 1)}
    source = directory / "history.om"
    source.write_text(openmetrics(values))
    backfill = subprocess.run(
        [str(tools.promtool()), "tsdb", "create-blocks-from", "openmetrics", str(source), str(directory / "tsdb")],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert backfill.returncode == 0, f"promtool failed:\n{backfill.stdout}\n{backfill.stderr}"
    with PrometheusServer(directory=directory) as server:
        assert server.query(f"count_over_time({QUERY}[7h] @ {end})")[0]["value"][1] == str(len(values))
        yield Recorded(url=server.url, values=values)


def test_replay_of_recorded_history(recorded: Recorded, tmp_path: Path) -> None:
    first = min(recorded.values)
    start = first + 60 * MARGIN_MINUTES
    end = first + 60 * (HISTORY_MINUTES - MARGIN_MINUTES)
    out = tmp_path / "replay"

    result = simulate(
        "--prometheus",
        recorded.url,
        "--query",
        QUERY,
        "--start",
        iso_minute(start),
        "--end",
        iso_minute(end),
        "--out",
        str(out),
        "--quiet",
        cwd=tmp_path,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    printed = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert {"accord", "hpa@0.7", "oracle", "static"} <= printed, result.stdout

    raw = recorded.between(start, end)
    ticks = (end - start) // 60 + 1
    assert len(raw) == ticks == 4 * 60 + 60 + 1
    # docs/benchmark.md section 1: the value at index floor(0.99 n) of the sorted values becomes peak pods × capacity.
    scale = PEAK_PODS * CAPACITY / sorted(raw)[math.floor(0.99 * len(raw))]
    expected = [value * scale for value in raw]

    summary = json.loads((out / "summary.json").read_text())
    assert summary["start"] == start
    assert summary["ticks"] == ticks
    assert summary["samples"] == ticks
    assert summary["scale"] == pytest.approx(scale, rel=1e-12)
    assert f"values scaled by {scale:.6g}" in result.stdout
    assert {p["policy"] for p in summary["policies"]} >= {"accord", "hpa@0.7", "oracle", "static"}

    for policy in summary["policies"]:
        with (out / policy["csv"]).open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert [int(row["tick"]) for row in rows] == list(range(ticks)), policy["policy"]
        demand = [float(row["demand"]) for row in rows]
        assert demand == pytest.approx(expected, rel=1e-9), policy["policy"]

    assert (out / "plot.html").is_file()
    assert "<html" in (out / "plot.html").read_text().lower()


def test_a_query_matching_nothing_is_refused(recorded: Recorded, tmp_path: Path) -> None:
    first = min(recorded.values)
    query = f'{METRIC}{{app="nothing-here"}}'

    result = simulate(
        "--prometheus",
        recorded.url,
        "--query",
        query,
        "--start",
        iso_minute(first),
        "--end",
        iso_minute(first + 3600),
        "--out",
        str(tmp_path / "replay"),
        "--quiet",
        cwd=tmp_path,
    )

    assert result.returncode == 2, result.stdout + result.stderr
    assert f"accord simulate: Prometheus returned no samples for {query!r}" in result.stderr
    assert not (tmp_path / "replay").exists()


def test_an_unreachable_prometheus_is_reported(tmp_path: Path) -> None:
    result = simulate(
        "--prometheus",
        f"http://127.0.0.1:{free_port()}",
        "--query",
        QUERY,
        "--start",
        "now-1h",
        "--out",
        str(tmp_path / "replay"),
        "--quiet",
        cwd=tmp_path,
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert "accord simulate: Prometheus did not answer" in result.stderr
    assert not (tmp_path / "replay").exists()
