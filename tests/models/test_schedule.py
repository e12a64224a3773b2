"""Freeze windows: when a cron-scheduled window in an IANA time zone is open, and since when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from accord.models.schedule import FreezeWindow
from tests.factories import NOW


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def window(schedule: str, minutes: int, zone: str = "UTC") -> FreezeWindow:
    return FreezeWindow(schedule=schedule, duration_minutes=minutes, time_zone=zone)


FRIDAY_EVENING_UTC = window("0 18 * * 5", 60)
FRIDAY_EVENING_BERLIN = window("0 18 * * 5", 60, "Europe/Berlin")
NIGHTLY_UTC = window("0 22 * * *", 240)  # 22:00 to 02:00, across midnight
WEEKEND_UTC = window("0 18 * * 5", 3 * 24 * 60)  # Friday 18:00 to Monday 18:00
WEEKEND_NEW_YORK = window("0 18 * * 5", 63 * 60, "America/New_York")  # Friday 18:00 to Monday 09:00 local
OFFICE_HOURS_UTC = window("0 9 * * 1-5", 8 * 60)
NOON_BERLIN = window("0 12 * * *", 30, "Europe/Berlin")
MONDAY_MORNING_BERLIN = window("0 9 * * 1", 60, "Europe/Berlin")

CASES = [
    # UTC: the opening minute is open, the minute the duration ends is closed
    pytest.param(FRIDAY_EVENING_UTC, utc(2025, 6, 13, 17, 59, 59), None, id="utc-one-second-before-opening"),
    pytest.param(FRIDAY_EVENING_UTC, utc(2025, 6, 13, 18), utc(2025, 6, 13, 18), id="utc-opening-instant"),
    pytest.param(FRIDAY_EVENING_UTC, utc(2025, 6, 13, 18, 0, 30), utc(2025, 6, 13, 18), id="utc-within-opening-minute"),
    pytest.param(FRIDAY_EVENING_UTC, utc(2025, 6, 13, 18, 59, 59), utc(2025, 6, 13, 18), id="utc-last-second"),
    pytest.param(FRIDAY_EVENING_UTC, utc(2025, 6, 13, 19), None, id="utc-closing-minute-is-closed"),
    pytest.param(FRIDAY_EVENING_UTC, utc(2025, 6, 12, 18, 30), None, id="utc-thursday-same-time"),
    pytest.param(FRIDAY_EVENING_UTC, utc(2025, 6, 20, 18, 30), utc(2025, 6, 20, 18), id="utc-next-friday"),
    # Europe/Berlin: 18:00 local is 16:00 UTC in summer (CEST) and 17:00 UTC in winter (CET)
    pytest.param(FRIDAY_EVENING_BERLIN, utc(2025, 6, 13, 15, 59), None, id="berlin-summer-before"),
    pytest.param(FRIDAY_EVENING_BERLIN, utc(2025, 6, 13, 16), utc(2025, 6, 13, 16), id="berlin-summer-opening"),
    pytest.param(FRIDAY_EVENING_BERLIN, utc(2025, 6, 13, 16, 59), utc(2025, 6, 13, 16), id="berlin-summer-last-minute"),
    pytest.param(FRIDAY_EVENING_BERLIN, utc(2025, 6, 13, 17), None, id="berlin-summer-closing"),
    pytest.param(FRIDAY_EVENING_BERLIN, utc(2025, 1, 10, 16, 30), None, id="berlin-winter-utc-16-is-local-17"),
    pytest.param(FRIDAY_EVENING_BERLIN, utc(2025, 1, 10, 17), utc(2025, 1, 10, 17), id="berlin-winter-opening"),
    pytest.param(FRIDAY_EVENING_BERLIN, utc(2025, 1, 10, 18), None, id="berlin-winter-closing"),
    # Europe/Berlin around the changes of 2025-03-30 (spring forward) and 2025-10-26 (fall back)
    pytest.param(NOON_BERLIN, utc(2025, 3, 29, 11), utc(2025, 3, 29, 11), id="berlin-noon-day-before-spring-forward"),
    pytest.param(NOON_BERLIN, utc(2025, 3, 30, 10), utc(2025, 3, 30, 10), id="berlin-noon-on-spring-forward-day"),
    pytest.param(NOON_BERLIN, utc(2025, 3, 30, 11), None, id="berlin-noon-spring-forward-old-offset-is-closed"),
    pytest.param(NOON_BERLIN, utc(2025, 10, 26, 10, 15), None, id="berlin-noon-fall-back-old-offset-is-not-open"),
    pytest.param(NOON_BERLIN, utc(2025, 10, 26, 11, 15), utc(2025, 10, 26, 11), id="berlin-noon-on-fall-back-day"),
    pytest.param(MONDAY_MORNING_BERLIN, utc(2025, 3, 24, 8), utc(2025, 3, 24, 8), id="berlin-monday-before-dst"),
    pytest.param(MONDAY_MORNING_BERLIN, utc(2025, 3, 31, 7), utc(2025, 3, 31, 7), id="berlin-monday-after-dst"),
    pytest.param(MONDAY_MORNING_BERLIN, utc(2025, 3, 31, 8, 30), None, id="berlin-monday-after-dst-hour-later"),
    # America/New_York: a weekend window from Friday 18:00 to Monday 09:00 local time
    pytest.param(WEEKEND_NEW_YORK, utc(2025, 6, 13, 21, 59), None, id="new-york-summer-friday-before"),
    pytest.param(WEEKEND_NEW_YORK, utc(2025, 6, 13, 22), utc(2025, 6, 13, 22), id="new-york-summer-friday-opening"),
    pytest.param(WEEKEND_NEW_YORK, utc(2025, 6, 15, 3), utc(2025, 6, 13, 22), id="new-york-saturday-night"),
    pytest.param(WEEKEND_NEW_YORK, utc(2025, 6, 16, 12, 59), utc(2025, 6, 13, 22), id="new-york-monday-08-59"),
    pytest.param(WEEKEND_NEW_YORK, utc(2025, 6, 16, 13), None, id="new-york-monday-09-00-closed"),
    pytest.param(WEEKEND_NEW_YORK, utc(2025, 12, 12, 22, 59), None, id="new-york-winter-friday-before"),
    pytest.param(WEEKEND_NEW_YORK, utc(2025, 12, 12, 23), utc(2025, 12, 12, 23), id="new-york-winter-friday-opening"),
    pytest.param(WEEKEND_NEW_YORK, utc(2025, 12, 15, 14), None, id="new-york-winter-monday-09-00-closed"),
    # across midnight and across the weekend
    pytest.param(NIGHTLY_UTC, utc(2025, 6, 14, 21, 59), None, id="nightly-before"),
    pytest.param(NIGHTLY_UTC, utc(2025, 6, 14, 23, 59), utc(2025, 6, 14, 22), id="nightly-before-midnight"),
    pytest.param(NIGHTLY_UTC, utc(2025, 6, 15, 0, 0), utc(2025, 6, 14, 22), id="nightly-at-midnight"),
    pytest.param(NIGHTLY_UTC, utc(2025, 6, 15, 1, 59), utc(2025, 6, 14, 22), id="nightly-after-midnight"),
    pytest.param(NIGHTLY_UTC, utc(2025, 6, 15, 2), None, id="nightly-closing"),
    pytest.param(NIGHTLY_UTC, utc(2025, 1, 1, 0, 30), utc(2024, 12, 31, 22), id="nightly-across-new-year"),
    pytest.param(WEEKEND_UTC, utc(2025, 6, 14, 12), utc(2025, 6, 13, 18), id="weekend-saturday"),
    pytest.param(WEEKEND_UTC, datetime.fromtimestamp(NOW, tz=UTC), utc(2025, 6, 13, 18), id="weekend-factories-now"),
    pytest.param(WEEKEND_UTC, utc(2025, 6, 16, 17, 59), utc(2025, 6, 13, 18), id="weekend-monday-last-minute"),
    pytest.param(WEEKEND_UTC, utc(2025, 6, 16, 18), None, id="weekend-monday-closing"),
    pytest.param(WEEKEND_UTC, utc(2025, 6, 18, 12), None, id="weekend-wednesday"),
    pytest.param(OFFICE_HOURS_UTC, utc(2025, 6, 16, 9), utc(2025, 6, 16, 9), id="weekdays-monday-opening"),
    pytest.param(OFFICE_HOURS_UTC, utc(2025, 6, 20, 16, 59), utc(2025, 6, 20, 9), id="weekdays-friday-late"),
    pytest.param(OFFICE_HOURS_UTC, utc(2025, 6, 14, 10), None, id="weekdays-saturday-closed"),
    pytest.param(OFFICE_HOURS_UTC, utc(2025, 6, 16, 17), None, id="weekdays-closing"),
    # a naive datetime is taken as UTC
    pytest.param(FRIDAY_EVENING_UTC, datetime(2025, 6, 13, 18, 30), utc(2025, 6, 13, 18), id="naive-is-utc-open"),
    pytest.param(FRIDAY_EVENING_BERLIN, datetime(2025, 6, 13, 17, 30), None, id="naive-is-utc-closed"),
]


@pytest.mark.parametrize(("freeze", "now", "opened"), CASES)
def test_window_open_and_opening_time(freeze: FreezeWindow, now: datetime, opened: datetime | None) -> None:
    assert freeze.opened_at(now) == opened
    assert freeze.active_at(now) is (opened is not None)


@pytest.mark.parametrize(
    ("freeze", "now"),
    [
        pytest.param(FRIDAY_EVENING_BERLIN, utc(2025, 6, 13, 16, 30), id="berlin-summer"),
        pytest.param(FRIDAY_EVENING_BERLIN, utc(2025, 1, 10, 17, 30), id="berlin-winter"),
        pytest.param(WEEKEND_NEW_YORK, datetime(2025, 6, 14, 10), id="new-york-naive-now"),
    ],
)
def test_opened_at_is_an_aware_utc_time(freeze: FreezeWindow, now: datetime) -> None:
    opened = freeze.opened_at(now)
    assert opened is not None
    assert opened.utcoffset() == timedelta(0)
    assert opened.tzinfo is not None


@pytest.mark.parametrize(
    ("freeze", "now", "opened"),
    [
        pytest.param(
            window("0 1 * * *", 180, "Europe/Berlin"),
            utc(2025, 3, 30, 2, 30),  # 150 real minutes after 01:00 CET (00:00 UTC)
            utc(2025, 3, 30, 0),
            id="berlin-spring-forward-window-still-open-after-150-minutes",
        ),
        pytest.param(
            window("0 1 * * *", 180, "Europe/Berlin"),
            utc(2025, 10, 26, 2, 30),  # 210 real minutes after 01:00 CEST (23:00 UTC the day before)
            None,
            id="berlin-fall-back-window-closed-after-210-minutes",
        ),
        pytest.param(
            window("0 1 * * *", 120, "America/New_York"),
            utc(2025, 3, 9, 7, 30),  # 90 real minutes after 01:00 EST (06:00 UTC)
            utc(2025, 3, 9, 6),
            id="new-york-spring-forward-window-still-open-after-90-minutes",
        ),
    ],
)
def test_duration_is_elapsed_time_across_dst(freeze: FreezeWindow, now: datetime, opened: datetime | None) -> None:
    assert freeze.opened_at(now) == opened


@pytest.mark.parametrize("schedule", ["0 0 30 2 *", "0 0 31 4 *"], ids=["february-30", "april-31"])
def test_schedule_that_never_fires_is_refused_or_never_open(schedule: str) -> None:
    try:
        freeze = window(schedule, 60)
    except ValidationError:
        return
    assert freeze.active_at(utc(2025, 6, 15, 12)) is False


@settings(max_examples=300, deadline=None)
@given(
    hour=st.integers(0, 23),
    minute=st.integers(0, 59),
    duration=st.integers(1, 1439),
    offset=st.integers(0, 2 * 24 * 3600 - 1),
)
def test_daily_utc_window_is_open_exactly_from_start_for_its_duration(
    hour: int, minute: int, duration: int, offset: int
) -> None:
    freeze = window(f"{minute} {hour} * * *", duration)
    now = utc(2025, 6, 10) + timedelta(seconds=offset)
    since_start = (now - now.replace(hour=hour, minute=minute, second=0)).total_seconds() % 86400
    assert freeze.active_at(now) is (since_start < duration * 60)
    opened = freeze.opened_at(now)
    if opened is not None:
        assert opened <= now < opened + timedelta(minutes=duration)
        assert (opened.hour, opened.minute, opened.second) == (hour, minute, 0)
