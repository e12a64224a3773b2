"""Trace reading, scaling to the 99th percentile, and 1-minute interpolation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from accord.sim.trace import (
    TraceError,
    interpolate,
    load_trace,
    make_trace,
    parse_timestamp,
    percentile_99,
    read_samples,
    scale_factor,
)


@pytest.mark.parametrize(
    ("n", "index"),
    [(1, 0), (10, 9), (99, 98), (100, 99), (101, 99), (200, 198), (1000, 990), (15902, 15742)],
)
def test_p99_is_the_value_at_index_floor_099_n_of_the_sorted_values(n: int, index: int) -> None:
    values = [float(v) for v in range(n)][::-1]  # sorted: v at index v
    assert percentile_99(values) == float(index) == math.floor(0.99 * n)


def test_scale_brings_p99_to_peak_pods_times_capacity() -> None:
    values = [float(v) for v in range(1, 201)]  # p99 = sorted[198] = 199
    factor = scale_factor(values, peak_pods=20, capacity=100)
    assert factor == pytest.approx(2000 / 199)
    trace = make_trace("t", [(60.0 * i, v) for i, v in enumerate(values)], peak_pods=20, capacity=100)
    assert sorted(trace.demand)[198] == pytest.approx(2000.0)
    assert max(trace.demand) == pytest.approx(200 * 2000 / 199)  # spikes above p99 stay above it


def test_scaling_can_be_turned_off() -> None:
    trace = make_trace("t", [(0.0, 3.0), (60.0, 5.0)], peak_pods=20, capacity=100, scale=False)
    assert trace.demand == (3.0, 5.0)
    assert trace.scale == 1.0


def test_linear_interpolation_to_one_minute_ticks() -> None:
    assert interpolate([(0.0, 0.0), (300.0, 50.0)]) == pytest.approx([0.0, 10.0, 20.0, 30.0, 40.0, 50.0])
    assert interpolate([(0.0, 10.0), (120.0, 10.0), (300.0, 100.0)]) == pytest.approx([10, 10, 10, 40, 70, 100])


def test_interpolation_sorts_samples_and_the_later_duplicate_counts() -> None:
    assert interpolate([(120.0, 3.0), (0.0, 1.0), (60.0, 7.0), (60.0, 2.0)]) == [1.0, 2.0, 3.0]


def test_the_replay_runs_from_the_first_sample_to_the_last() -> None:
    trace = make_trace("t", [(1000.0, 1.0), (1000.0 + 1800.0, 4.0), (1000.0 + 3600.0, 1.0)], peak_pods=1, capacity=4)
    assert len(trace) == 61
    assert trace.start == 1000.0
    assert trace.demand[30] == pytest.approx(4.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2014-07-01 00:00:00", 1404172800.0),
        ("2014-07-01T00:00:00Z", 1404172800.0),
        ("2014-07-01T02:00:00+02:00", 1404172800.0),
        ("1404172800", 1404172800.0),
    ],
)
def test_timestamps(text: str, expected: float) -> None:
    assert parse_timestamp(text) == expected


def test_reading_a_nab_csv(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    path.write_text("timestamp,value\n2014-07-01 00:00:00,10\n2014-07-01 00:05:00,20\n\n")
    assert read_samples(path) == [(1404172800.0, 10.0), (1404173100.0, 20.0)]
    trace = load_trace(path, peak_pods=2, capacity=10)
    assert len(trace) == 6
    assert trace.demand[-1] == pytest.approx(20.0)  # p99 of two values is the larger


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("timestamp,value\nyesterday,1\n", "neither unix seconds nor ISO 8601"),
        ("timestamp,value\n2014-07-01 00:00:00,many\n", "not a number"),
        ("timestamp,value\n2014-07-01 00:00:00\n", "expected timestamp,value"),
    ],
)
def test_unreadable_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(TraceError, match=message):
        read_samples(path)


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        ([], "no samples"),
        ([(0.0, 1.0), (60.0, -1.0)], "negative"),
        ([(0.0, 0.0), (60.0, 0.0)], "99th percentile is 0"),
        ([(0.0, math.nan)], "not finite"),
    ],
)
def test_traces_that_cannot_be_replayed(samples: list[tuple[float, float]], message: str) -> None:
    with pytest.raises(TraceError, match=message):
        make_trace("t", samples, peak_pods=20, capacity=100)
