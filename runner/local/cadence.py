"""When an EventBridge Scheduler schedule expression next fires, so local schedules keep cadence.

Three expression kinds, as documented at
https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html:

* ``rate(value unit)``: every ``value`` minutes, hours or days. ``next_after(moment)`` is
  ``moment + interval``; the caller passes the previous fire time (or the start time). At most
  :data:`MAX_RATE`, a century.
* ``cron(minutes hours day-of-month month day-of-week year)``: six fields, evaluated in UTC.
  Day-of-week runs 1-7 with 1 = SUN. Exactly one of day-of-month and day-of-week is ``?``.
  ``L`` is supported as the whole day-of-month field (last day of the month); ``W``, ``#`` and
  every other use of ``L`` are rejected as not supported. Ranges must not wrap (``FRI-MON``).
* ``at(yyyy-mm-ddThh:mm:ss)``: once, at that UTC time.

An expression longer than EventBridge Scheduler accepts (:data:`MAX_EXPRESSION_LENGTH`) is
refused. Every expression is validated when the :class:`Schedule` is built, so a bad template
fails at start-up rather than at its first fire time.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

from runner.errors import ScheduleExpressionError

__all__ = ["MAX_EXPRESSION_LENGTH", "MAX_RATE", "Schedule", "ScheduleExpressionError", "parse"]

#: The longest ScheduleExpression EventBridge Scheduler's CreateSchedule accepts.
MAX_EXPRESSION_LENGTH = 256
#: The longest rate Galley accepts. EventBridge Scheduler documents no maximum (only "a positive
#: integer"); a bound is needed so that ``next_after`` stays within ``datetime``'s range, and a
#: century is well beyond any schedule's use (cron's year field ends at 2199).
MAX_RATE = timedelta(days=36500)


_RATE_UNITS: Mapping[str, timedelta] = {
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
}

_MONTH_NAMES: Mapping[str, int] = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
        start=1,
    )
}
#: AWS numbers the days of the week 1-7 starting on Sunday.
_WEEKDAY_NAMES: Mapping[str, int] = {
    name: number
    for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), start=1)
}

_RATE_RE = re.compile(r"rate\(\s*(\S+)\s+(\S+)\s*\)")
_CRON_RE = re.compile(r"cron\((.*)\)", re.DOTALL)
_AT_RE = re.compile(r"at\((\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\)")
#: One comma-separated item of a cron field: ``*``, ``a`` or ``a-b``, optionally ``/step``.
_ITEM_RE = re.compile(r"(?:(\*)|([0-9A-Z]+)(?:-([0-9A-Z]+))?)(?:/([0-9]+))?")
#: Quartz extensions AWS accepts and Galley does not: L (last), nL, LW, nW (nearest weekday).
_SPECIAL_RE = re.compile(r"[0-9]*[LW]|LW")


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    names: Mapping[str, int]


_MINUTES = _FieldSpec("minutes", 0, 59, {})
_HOURS = _FieldSpec("hours", 0, 23, {})
_DAY_OF_MONTH = _FieldSpec("day-of-month", 1, 31, {})
_MONTH = _FieldSpec("month", 1, 12, _MONTH_NAMES)
_DAY_OF_WEEK = _FieldSpec("day-of-week", 1, 7, _WEEKDAY_NAMES)
_YEAR = _FieldSpec("year", 1970, 2199, {})
_Fail = Callable[[str], ScheduleExpressionError]
_CRON_FIELDS = (_MINUTES, _HOURS, _DAY_OF_MONTH, _MONTH, _DAY_OF_WEEK, _YEAR)
_ALL_DAYS = frozenset(range(_DAY_OF_MONTH.low, _DAY_OF_MONTH.high + 1))
_ALL_WEEKDAYS = frozenset(range(_DAY_OF_WEEK.low, _DAY_OF_WEEK.high + 1))


def _require_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"moment must be timezone-aware (UTC), got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class _Rate:
    interval: timedelta

    def next_after(self, moment: datetime) -> datetime | None:
        try:
            return moment + self.interval
        except OverflowError:  # after datetime's last year, 9999: it never fires again
            return None


@dataclass(frozen=True)
class _At:
    when: datetime

    def next_after(self, moment: datetime) -> datetime | None:
        return self.when if self.when > moment else None


@dataclass(frozen=True)
class _Cron:
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    #: Days of the month; None when the field is ``?`` (day-of-week decides).
    days: frozenset[int] | None
    last_day: bool
    months: tuple[int, ...]
    #: AWS weekdays 1-7 (1 = SUN); None when the field is ``?`` (day-of-month decides).
    weekdays: frozenset[int] | None
    years: tuple[int, ...]

    def next_after(self, moment: datetime) -> datetime | None:
        if moment.year > self.years[-1]:
            return None
        start = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        for year in self.years:
            if year < start.year:
                continue
            for month in self.months:
                if (year, month) < (start.year, start.month):
                    continue
                found = self._first_in_month(year, month, start)
                if found is not None:
                    return found
        return None

    def _first_in_month(self, year: int, month: int, start: datetime) -> datetime | None:
        for day in self._days_in(year, month):
            today = date(year, month, day)
            if today < start.date():
                continue
            floor = (start.hour, start.minute) if today == start.date() else (0, 0)
            time_of_day = self._first_time(floor)
            if time_of_day is not None:
                hour, minute = time_of_day
                return datetime(year, month, day, hour, minute, tzinfo=UTC)
        return None

    def _first_time(self, floor: tuple[int, int]) -> tuple[int, int] | None:
        for hour in self.hours:
            if hour < floor[0]:
                continue
            for minute in self.minutes:
                if (hour, minute) >= floor:
                    return hour, minute
        return None

    def _days_in(self, year: int, month: int) -> list[int]:
        last = calendar.monthrange(year, month)[1]
        if self.weekdays is not None:
            # date.weekday(): Monday = 0 ... Sunday = 6; AWS: Sunday = 1 ... Saturday = 7.
            return [
                day
                for day in range(1, last + 1)
                if (date(year, month, day).weekday() + 1) % 7 + 1 in self.weekdays
            ]
        if self.last_day:
            return [last]
        assert self.days is not None
        return sorted(day for day in self.days if day <= last)


_Rule = _Rate | _Cron | _At


@dataclass(frozen=True)
class Schedule:
    """A validated schedule expression; building one raises ScheduleExpressionError if bad."""

    expression: str
    _rule: _Rule = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_rule", _parse_rule(self.expression))

    def next_after(self, moment: datetime) -> datetime | None:
        """First fire time strictly after ``moment`` (UTC), or None if it never fires again.

        ``moment`` must be timezone-aware; the result is in UTC. For ``rate(...)`` this is
        ``moment + interval``: pass the previous fire time (or the start time).
        """
        return self._rule.next_after(_require_utc(moment))

    def fires_like(self, other: Schedule) -> bool:
        """True if both fire at the same times, however they are written: ``rate(60 minutes)``
        and ``rate(1 hour)``; ``cron(0 2 * * ? *)`` and ``cron(0 2 ? * * *)``."""
        return _canonical(self._rule) == _canonical(other._rule)


def _canonical(rule: _Rule) -> _Rule:
    """``rule`` with every day of the week read as every day of the month (both fire daily)."""
    if isinstance(rule, _Cron) and rule.weekdays == _ALL_WEEKDAYS:
        return replace(rule, days=_ALL_DAYS, last_day=False, weekdays=None)
    return rule


def parse(expression: str) -> Schedule:
    """Validate ``expression`` now and return its Schedule."""
    return Schedule(expression)


def _parse_rule(expression: str) -> _Rule:
    if not isinstance(expression, str):
        raise ScheduleExpressionError(f"{expression!r}: expression must be a string")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise ScheduleExpressionError(
            f"{expression[:40]}...: longer than {MAX_EXPRESSION_LENGTH} characters, the most "
            "EventBridge Scheduler accepts"
        )
    if expression.startswith("rate("):
        return _parse_rate(expression)
    if expression.startswith("cron("):
        return _parse_cron(expression)
    if expression.startswith("at("):
        return _parse_at(expression)
    raise ScheduleExpressionError(
        f"{expression}: expected rate(value unit), cron(fields) or at(yyyy-mm-ddThh:mm:ss)"
    )


def _parse_rate(expression: str) -> _Rate:
    match = _RATE_RE.fullmatch(expression)
    if match is None:
        raise ScheduleExpressionError(f"{expression}: expected rate(value unit)")
    text, unit = match.groups()
    if not text.isascii() or not text.isdigit() or int(text) == 0:
        raise ScheduleExpressionError(f"{expression}: value must be a positive integer")
    value = int(text)
    singular = unit.removesuffix("s")
    if singular not in _RATE_UNITS:
        raise ScheduleExpressionError(
            f"{expression}: unit must be one of minute, minutes, hour, hours, day, days"
        )
    if value == 1 and unit != singular:
        raise ScheduleExpressionError(f"{expression}: with value 1 the unit must be {singular!r}")
    if value > 1 and unit == singular:
        raise ScheduleExpressionError(
            f"{expression}: with a value above 1 the unit must be {singular + 's'!r}"
        )
    if value > MAX_RATE // _RATE_UNITS[singular]:
        raise ScheduleExpressionError(
            f"{expression}: longer than {MAX_RATE.days} days, the longest rate Galley accepts"
        )
    return _Rate(value * _RATE_UNITS[singular])


def _parse_at(expression: str) -> _At:
    match = _AT_RE.fullmatch(expression)
    if match is None:
        raise ScheduleExpressionError(f"{expression}: expected at(yyyy-mm-ddThh:mm:ss)")
    year, month, day, hour, minute, second = (int(part) for part in match.groups())
    try:
        when = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as error:
        raise ScheduleExpressionError(f"{expression}: not a valid date and time: {error}") from None
    return _At(when)


def _parse_cron(expression: str) -> _Cron:
    match = _CRON_RE.fullmatch(expression)
    if match is None:
        raise ScheduleExpressionError(f"{expression}: expected cron(fields) with a closing ')'")
    texts = match.group(1).split()
    if len(texts) != len(_CRON_FIELDS):
        raise ScheduleExpressionError(
            f"{expression}: expected 6 fields (minutes hours day-of-month month day-of-week year)"
            f", got {len(texts)}"
        )
    minutes, hours, day_text, month_text, weekday_text, year_text = texts
    day_unset, weekday_unset = day_text == "?", weekday_text == "?"
    if day_unset == weekday_unset:
        which = "both are" if day_unset else "neither is"
        raise ScheduleExpressionError(
            f"{expression}: exactly one of day-of-month and day-of-week must be '?', {which}"
        )
    last_day = day_text.upper() == "L"
    days = None if day_unset or last_day else _values(expression, _DAY_OF_MONTH, day_text)
    weekdays = None if weekday_unset else _values(expression, _DAY_OF_WEEK, weekday_text)
    return _Cron(
        minutes=_values(expression, _MINUTES, minutes),
        hours=_values(expression, _HOURS, hours),
        days=None if days is None else frozenset(days),
        last_day=last_day,
        months=_values(expression, _MONTH, month_text),
        weekdays=None if weekdays is None else frozenset(weekdays),
        years=_values(expression, _YEAR, year_text),
    )


def _values(expression: str, spec: _FieldSpec, text: str) -> tuple[int, ...]:
    """The sorted values one cron field selects."""
    upper = text.upper()
    _reject_unsupported(expression, spec, upper)
    selected: set[int] = set()
    for item in upper.split(","):
        selected.update(_item_values(expression, spec, item))
    return tuple(sorted(selected))


def _reject_unsupported(expression: str, spec: _FieldSpec, text: str) -> None:
    if "?" in text:
        raise ScheduleExpressionError(
            f"{expression}: {spec.name} field {text!r}: '?' is allowed only as the whole"
            " day-of-month or day-of-week field"
        )
    if "#" in text:
        raise ScheduleExpressionError(
            f"{expression}: {spec.name} field {text!r}: '#' (nth weekday of the month)"
            " is not supported"
        )


def _item_values(expression: str, spec: _FieldSpec, item: str) -> range:
    def fail(problem: str) -> ScheduleExpressionError:
        return ScheduleExpressionError(f"{expression}: {spec.name} field {item!r}: {problem}")

    match = _ITEM_RE.fullmatch(item)
    if match is None:
        raise fail("expected *, a value, a range a-b, or a step */n, a/n or a-b/n")
    star, first_text, last_text, step_text = match.groups()
    step = 1 if step_text is None else int(step_text)
    if step == 0:
        raise fail("step must be a positive integer")
    if star:
        return range(spec.low, spec.high + 1, step)
    first = _value(spec, first_text, fail)
    if last_text is not None:
        last = _value(spec, last_text, fail)
        if first > last:
            raise fail(f"range start {first} is after its end {last} (ranges must not wrap)")
    else:
        # "a/n" runs from a to the top of the field; a bare "a" is just a.
        last = spec.high if step_text is not None else first
    return range(first, last + 1, step)


def _value(spec: _FieldSpec, text: str, fail: _Fail) -> int:
    if text in spec.names:
        return spec.names[text]
    if _SPECIAL_RE.fullmatch(text):
        if "W" in text:
            raise fail("'W' (nearest weekday) is not supported")
        if spec is _DAY_OF_MONTH:
            raise fail("'L' is supported only as the whole day-of-month field")
        raise fail(f"'L' is not supported in the {spec.name} field")
    if not text.isdigit():
        raise fail(f"{text!r} is not a number{' or name' if spec.names else ''}")
    value = int(text)
    if not spec.low <= value <= spec.high:
        raise fail(f"value {value} is out of range {spec.low}-{spec.high}")
    return value
