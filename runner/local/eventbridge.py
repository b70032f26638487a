"""Celery beat schedules as EventBridge Scheduler expressions, so a beat_schedule can run on AWS.

EventBridge Scheduler's expressions are documented at
https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html. A beat_schedule entry's
``schedule`` becomes one of them, or is refused with the reason:

* ``crontab(...)`` -> ``cron(minutes hours day-of-month month day-of-week year)``, in UTC (Galley's
  app keeps Celery's default timezone, UTC). Celery numbers the days of the week 0-6 from Sunday,
  EventBridge 1-7 from SUN, so days of the week are written as names (``MON-FRI``). Celery runs a
  crontab on days matching *both* day_of_month and day_of_week; EventBridge needs one of the two
  to be ``?``, so a crontab restricting both is refused.
* an interval (a ``timedelta``, a number of seconds, ``schedule(run_every=...)``) ->
  ``rate(n minutes|hours|days)``. Shorter than :data:`MIN_RATE`, or not a whole number of
  minutes, is refused: EventBridge cannot keep it. Longer than
  :data:`runner.local.cadence.MAX_RATE` (a century) is refused too: the local scheduler could not
  compute its fire times.
* ``solar(...)`` is refused: EventBridge has no sunrise or sunset.

The translation reads the values Celery parsed (``crontab.minute`` is a set of minutes), not the
text, so every spelling Celery accepts translates the same. It writes only what
:mod:`runner.local.cadence` reads: ``*``, values, ranges ``a-b``, lists and steps ``a/n``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from itertools import pairwise

from celery.schedules import crontab, schedule, solar

from runner.errors import BeatScheduleError
from runner.local.cadence import MAX_RATE

__all__ = ["MIN_RATE", "expression"]

#: EventBridge Scheduler's shortest rate, ``rate(1 minute)``; rates are whole minutes, hours or
#: days (https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html#rate-based).
MIN_RATE = timedelta(minutes=1)

#: rate() units, largest first: an interval is written in the largest unit that divides it.
_RATE_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60))
#: EventBridge's days of the week, 1-7 from Sunday; Celery's 0-6 from Sunday is one less.
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_ALL_DAYS_OF_MONTH = frozenset(range(1, 32))
_ALL_DAYS_OF_WEEK = frozenset(range(7))


def expression(celery_schedule: object) -> str:
    """The EventBridge Scheduler expression that fires when Celery beat runs ``celery_schedule``.

    Raises BeatScheduleError saying why when EventBridge cannot keep that schedule.
    """
    if isinstance(celery_schedule, solar):
        raise BeatScheduleError(
            f"{celery_schedule!r}: solar schedules have no EventBridge Scheduler expression "
            "(it knows no sunrise or sunset); use crontab(...) at fixed UTC times"
        )
    if isinstance(celery_schedule, crontab):
        return _cron(celery_schedule)
    if isinstance(celery_schedule, schedule):
        if celery_schedule.relative:
            raise BeatScheduleError(
                f"{celery_schedule!r}: relative=True rounds the interval to its unit, which "
                "EventBridge Scheduler cannot do; drop relative=True or use crontab(...)"
            )
        return _rate(celery_schedule.run_every.total_seconds())
    if isinstance(celery_schedule, timedelta):
        return _rate(celery_schedule.total_seconds())
    if isinstance(celery_schedule, int | float) and not isinstance(celery_schedule, bool):
        return _rate(float(celery_schedule))
    raise BeatScheduleError(
        f"a schedule of type {type(celery_schedule).__name__} ({celery_schedule!r}) has no "
        "EventBridge Scheduler expression: use crontab(...), a timedelta or a number of seconds"
    )


def _rate(seconds: float) -> str:
    every = f"every {seconds:g} seconds"
    if not seconds >= MIN_RATE.total_seconds():  # False for nan too
        raise BeatScheduleError(
            f"{every}: the shortest EventBridge Scheduler rate is 1 minute; "
            "run it every minute or less often"
        )
    if seconds > MAX_RATE.total_seconds():
        raise BeatScheduleError(
            f"{every}: longer than {MAX_RATE.days} days, the longest rate Galley accepts"
        )
    if seconds % 60:
        raise BeatScheduleError(
            f"{every}: {seconds:g} seconds is not a whole number of minutes, and EventBridge "
            "Scheduler rates are whole minutes, hours or days"
        )
    for unit, size in _RATE_UNITS:
        if seconds % size == 0:
            count = int(seconds // size)
            return f"rate({count} {unit}{'' if count == 1 else 's'})"
    raise AssertionError("unreachable: a whole number of minutes")  # pragma: no cover


def _cron(cron: crontab) -> str:
    days = frozenset(cron.day_of_month)
    weekdays = frozenset(cron.day_of_week)
    if days != _ALL_DAYS_OF_MONTH and weekdays != _ALL_DAYS_OF_WEEK:
        raise BeatScheduleError(
            f"{cron!r} restricts both day_of_month and day_of_week: Celery runs it on days "
            "matching both, and EventBridge Scheduler cron needs one of the two to be '?'. "
            "Restrict one of them and check the other in the task"
        )
    if weekdays == _ALL_DAYS_OF_WEEK:
        day_of_month, day_of_week = _field(days, 1, 31), "?"
    else:
        aws_weekdays = {day + 1 for day in weekdays}
        day_of_month = "?"
        day_of_week = _field(aws_weekdays, 1, 7, show=lambda n: _WEEKDAYS[n - 1], steps=False)
    minutes = _field(cron.minute, 0, 59)
    hours = _field(cron.hour, 0, 23)
    months = _field(cron.month_of_year, 1, 12)
    return f"cron({minutes} {hours} {day_of_month} {months} {day_of_week} *)"


def _field(
    values: Iterable[int],
    low: int,
    high: int,
    *,
    show: Callable[[int], str] = str,
    steps: bool = True,
) -> str:
    """One cron field selecting exactly ``values``: ``*``, ``a/n``, or ranges and values."""
    ordered = sorted(set(values))
    if ordered == list(range(low, high + 1)):
        return "*"
    gaps = {b - a for a, b in pairwise(ordered)}
    if steps and len(ordered) >= 3 and len(gaps) == 1:
        (step,) = gaps
        # "a/n" runs from a to the top of the field, so it fits only a run that reaches it
        if step > 1 and ordered[-1] + step > high:
            return f"{show(ordered[0])}/{step}"
    parts: list[str] = []
    for run in _runs(ordered):
        if len(run) >= 3:
            parts.append(f"{show(run[0])}-{show(run[-1])}")
        else:
            parts.extend(show(value) for value in run)
    return ",".join(parts)


def _runs(ordered: list[int]) -> list[list[int]]:
    """Consecutive stretches: [1, 2, 3, 7] -> [[1, 2, 3], [7]]."""
    runs: list[list[int]] = []
    for value in ordered:
        if runs and runs[-1][-1] == value - 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    return runs
