"""CronJob schedules: the standard 5-field cron syntax plus the @descriptors, in a time zone.

Kubernetes parses ``spec.schedule`` with robfig/cron's standard parser: five fields
(minute hour day-of-month month day-of-week, names and ranges/steps allowed, day-of-month
and day-of-week OR-ed when both are restricted) or one of @yearly, @annually, @monthly,
@weekly, @daily, @midnight, @hourly. Field evaluation (and daylight-saving gaps) is the
``cronsim`` package's; this module adds the descriptors, the time zone and the questions
the CronJob controller asks. ``TZ=``/``CRON_TZ=`` prefixes are refused, as Kubernetes
does: the time zone belongs in ``spec.timeZone``.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import Optional

from cronsim import CronSim, CronSimError

DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
ONE_MICROSECOND = dt.timedelta(microseconds=1)


class ScheduleError(ValueError):
    """A schedule or time zone that cannot be used; the message says why."""


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule in a time zone. Build it with ``parse_schedule``."""

    expression: str
    zone: dt.tzinfo

    def next_after(self, when: dt.datetime) -> Optional[dt.datetime]:
        """The first scheduled time strictly after ``when`` (UTC), None if there is none."""
        return _first(CronSim(self.expression, when.astimezone(self.zone)))

    def latest_at_or_before(self, when: dt.datetime) -> Optional[dt.datetime]:
        """The last scheduled time at or before ``when`` (UTC), None if there is none."""
        return _first(CronSim(self.expression, (when + ONE_MICROSECOND).astimezone(self.zone), reverse=True))

    def times_between(self, after: dt.datetime, until: dt.datetime, limit: int) -> list[dt.datetime]:
        """Up to ``limit`` scheduled times t with after < t <= until, oldest first (UTC)."""
        found: list[dt.datetime] = []
        for moment in CronSim(self.expression, after.astimezone(self.zone)):
            if moment > until or len(found) >= limit:
                break
            found.append(moment.astimezone(dt.timezone.utc))
        return found


def _first(times) -> Optional[dt.datetime]:
    try:
        return next(times).astimezone(dt.timezone.utc)
    except StopIteration:
        return None


def parse_schedule(text: str, time_zone: Optional[str] = None) -> Schedule:
    """The Schedule of ``text`` in ``time_zone`` (an IANA name; None or "" is UTC);
    ScheduleError naming the problem otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise ScheduleError("empty schedule")
    stripped = text.strip()
    if stripped.startswith(("TZ=", "CRON_TZ=")):
        raise ScheduleError("cannot use TZ or CRON_TZ in schedule, use timeZone field instead")
    expression = DESCRIPTORS.get(stripped.lower(), stripped)
    if expression.startswith("@"):
        raise ScheduleError(f"unrecognized descriptor: {stripped}")
    zone = parse_time_zone(time_zone)
    try:
        CronSim(expression, dt.datetime(2000, 1, 1, tzinfo=zone))
    except CronSimError as err:
        raise ScheduleError(str(err)) from None
    return Schedule(expression, zone)


def parse_time_zone(name: Optional[str]) -> dt.tzinfo:
    """The tzinfo of an IANA time zone name (None or "" is UTC); ScheduleError if unknown."""
    if not name:
        return dt.timezone.utc
    if name.lower() == "local" or name.startswith("/") or ".." in name:
        raise ScheduleError(f"unknown time zone {name}")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown time zone {name}") from None
