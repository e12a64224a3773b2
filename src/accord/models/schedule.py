"""Freeze windows: cron-scheduled periods in an IANA time zone (models layer, pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import CroniterBadDateError, croniter
from pydantic import Field, field_validator

from accord.models.common import Model


def validate_cron(expr: str) -> str:
    if not croniter.is_valid(expr) or len(expr.split()) != 5:
        raise ValueError(f"{expr!r} is not a valid five-field cron expression (minute hour day month weekday)")
    try:
        # A schedule such as "0 0 30 2 *" parses but never fires; croniter gives up looking.
        croniter(expr, datetime(2025, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError as exc:
        raise ValueError(f"{expr!r} never fires (no such date)") from exc
    return expr


def validate_time_zone(name: str) -> str:
    if name not in _zones():
        raise ValueError(f"{name!r} is not an IANA time zone (for example Europe/Berlin or UTC)")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{name!r} is not an IANA time zone") from exc
    return name


_ZONES: frozenset[str] | None = None


def _zones() -> frozenset[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(available_timezones()) | {"UTC"}
    return _ZONES


class FreezeWindow(Model):
    """A recurring period during which changes are blocked or need approval."""

    name: str = Field(default="freeze", min_length=1, max_length=63, description="Name shown in decisions.")
    schedule: str = Field(
        description="Five-field cron expression of when the window opens, e.g. '0 18 * * 5' (Fridays 18:00).",
        min_length=9,
        max_length=200,
    )
    time_zone: str = Field(default="UTC", description="IANA time zone of the schedule, e.g. Europe/Berlin.")
    duration_minutes: int = Field(gt=0, le=60 * 24 * 31, description="How long the window stays open.")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        return validate_cron(value)

    @field_validator("time_zone")
    @classmethod
    def _tz(cls, value: str) -> str:
        return validate_time_zone(value)

    def active_at(self, now: datetime) -> bool:
        """Whether the window is open at `now` (an aware datetime)."""
        return self.opened_at(now) is not None

    def opened_at(self, now: datetime) -> datetime | None:
        """When the window that contains `now` opened, or None if it is closed."""
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        local = now.astimezone(ZoneInfo(self.time_zone))
        try:
            # get_prev from one second after `now` so a window opening exactly now counts as open.
            start: datetime = croniter(self.schedule, local + timedelta(seconds=1)).get_prev(datetime)
        except CroniterBadDateError:
            return None  # never fires: validation refuses such schedules, but never crash a round
        # The duration is elapsed time: compare in UTC, so a DST change does not stretch or shrink it.
        opened = start.astimezone(UTC)
        if now.astimezone(UTC) < opened + timedelta(minutes=self.duration_minutes):
            return opened
        return None
