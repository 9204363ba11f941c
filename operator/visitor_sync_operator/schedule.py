"""When a district's scheduled runs happen: cron schedule, time zone, suspension, pauses.

Pause windows are enforced by suspending the CronJob while one is open (the
operator's periodic check flips it at the window's edges), so the importer
needs no clock logic and a requested run still works during a pause.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from croniter import croniter

from visitor_sync_operator.district import District
from visitor_sync_operator.spec import PauseWindow, default_schedule

#: How far ahead to look for a run outside pause windows (a year of hourly runs).
LOOKAHEAD_RUNS = 366 * 24


@dataclass(frozen=True)
class Schedule:
    """The district's schedule as of one moment."""

    cron: str
    suspended: bool
    #: why scheduled runs do not start now ("" when they do)
    reason: str
    next_run: datetime | None


def _pause_at(windows: list[PauseWindow], moment: datetime) -> PauseWindow | None:
    day = moment.date()
    return next((window for window in windows if window.start <= day <= window.end), None)


def schedule_at(district: District, now: datetime) -> Schedule:
    """The schedule in effect at ``now`` (aware), and the next run it will start."""
    spec = district.spec
    cron = spec.schedule or default_schedule(district.namespace, district.name)
    local_now = now.astimezone(ZoneInfo(spec.time_zone))
    if spec.suspend:
        return Schedule(cron, True, "spec.suspend is true", None)
    pause = _pause_at(spec.pause_windows, local_now)
    reason = ""
    if pause is not None:
        reason = f"paused from {pause.start} to {pause.end}" + (
            f": {pause.reason}" if pause.reason else "")
    runs = croniter(cron, local_now)
    for _ in range(LOOKAHEAD_RUNS):
        candidate: datetime = runs.get_next(datetime)
        if _pause_at(spec.pause_windows, candidate) is None:
            return Schedule(cron, pause is not None, reason, candidate)
    return Schedule(cron, pause is not None, reason, None)
