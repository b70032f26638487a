from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from runner.errors import ScheduleExpressionError
from runner.local.cadence import Schedule, parse


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def fires(expression: str, start: datetime, count: int) -> list[datetime]:
    """The first ``count`` fire times after ``start``, each fed back in as the next moment."""
    schedule = parse(expression)
    found: list[datetime] = []
    moment = start
    for _ in range(count):
        fired = schedule.next_after(moment)
        assert fired is not None
        found.append(fired)
        moment = fired
    return found


# --- rate(...) ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "interval"),
    [
        ("rate(1 minute)", timedelta(minutes=1)),
        ("rate(5 minutes)", timedelta(minutes=5)),
        ("rate(90 minutes)", timedelta(minutes=90)),
        ("rate(1 hour)", timedelta(hours=1)),
        ("rate(12 hours)", timedelta(hours=12)),
        ("rate(1 day)", timedelta(days=1)),
        ("rate(7 days)", timedelta(days=7)),
    ],
)
def test_rate_fires_one_interval_after_the_moment(expression: str, interval: timedelta) -> None:
    # GIVEN a moment that is not minute-aligned
    moment = utc(2024, 2, 28, 23, 59, 30)
    # WHEN the schedule is asked for its next fire
    fired = parse(expression).next_after(moment)
    # THEN it is exactly one interval later (seconds kept: rate is anchored on the caller's time)
    assert fired == moment + interval


def test_rate_chains_from_the_previous_fire() -> None:
    assert fires("rate(20 minutes)", utc(2024, 12, 31, 23, 30), 3) == [
        utc(2024, 12, 31, 23, 50),
        utc(2025, 1, 1, 0, 10),
        utc(2025, 1, 1, 0, 30),
    ]


# --- cron(...): minutes and hours ---------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    ["cron(0/15 * * * ? *)", "cron(*/15 * * * ? *)", "cron(0,15,30,45 * * * ? *)"],
)
@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (utc(2024, 5, 1, 10, 7, 30), utc(2024, 5, 1, 10, 15)),
        # strictly after: a moment exactly on a fire time moves on to the next one
        (utc(2024, 5, 1, 10, 15), utc(2024, 5, 1, 10, 30)),
        (utc(2024, 5, 1, 10, 14, 59), utc(2024, 5, 1, 10, 15)),
        (utc(2024, 5, 1, 10, 52), utc(2024, 5, 1, 11, 0)),
        (utc(2024, 12, 31, 23, 45), utc(2025, 1, 1, 0, 0)),
    ],
)
def test_cron_every_15_minutes(expression: str, moment: datetime, expected: datetime) -> None:
    assert parse(expression).next_after(moment) == expected


def test_cron_every_15_minutes_sequence() -> None:
    assert fires("cron(0/15 * * * ? *)", utc(2024, 5, 1, 23, 20), 4) == [
        utc(2024, 5, 1, 23, 30),
        utc(2024, 5, 1, 23, 45),
        utc(2024, 5, 2, 0, 0),
        utc(2024, 5, 2, 0, 15),
    ]


@pytest.mark.parametrize(
    ("expression", "moment", "expected"),
    [
        # a-b/n: 8:10, 8:20, 8:30, 8:40 only
        ("cron(10-40/10 8 * * ? *)", utc(2024, 5, 1, 8, 35), utc(2024, 5, 1, 8, 40)),
        ("cron(10-40/10 8 * * ? *)", utc(2024, 5, 1, 8, 40), utc(2024, 5, 2, 8, 10)),
        # a/n: 5, 25, 45
        ("cron(5/20 * * * ? *)", utc(2024, 5, 1, 8, 26), utc(2024, 5, 1, 8, 45)),
        ("cron(5/20 * * * ? *)", utc(2024, 5, 1, 8, 45), utc(2024, 5, 1, 9, 5)),
        # hour list and range
        ("cron(30 6,18 * * ? *)", utc(2024, 5, 1, 6, 30), utc(2024, 5, 1, 18, 30)),
        ("cron(0 9-17 * * ? *)", utc(2024, 5, 1, 17, 0), utc(2024, 5, 2, 9, 0)),
        # 10:00 every day, from before and after today's fire
        ("cron(0 10 * * ? *)", utc(2024, 5, 1, 9, 59, 59), utc(2024, 5, 1, 10, 0)),
        ("cron(0 10 * * ? *)", utc(2024, 5, 1, 10, 0, 1), utc(2024, 5, 2, 10, 0)),
    ],
)
def test_cron_minute_and_hour_fields(expression: str, moment: datetime, expected: datetime) -> None:
    assert parse(expression).next_after(moment) == expected


# --- cron(...): day-of-week (AWS 1 = SUN ... 7 = SAT) -----------------------------------------

FRIDAY_AFTER_NINE = utc(2024, 1, 5, 10, 0)  # 2024-01-05 is a Friday


@pytest.mark.parametrize(
    ("day_of_week", "expected"),
    [
        ("MON-FRI", utc(2024, 1, 8, 9)),
        ("2-6", utc(2024, 1, 8, 9)),
        ("mon-fri", utc(2024, 1, 8, 9)),
        ("SUN", utc(2024, 1, 7, 9)),
        ("1", utc(2024, 1, 7, 9)),
        ("SAT", utc(2024, 1, 6, 9)),
        ("7", utc(2024, 1, 6, 9)),
        ("FRI", utc(2024, 1, 12, 9)),
        ("6", utc(2024, 1, 12, 9)),
        ("TUE,THU", utc(2024, 1, 9, 9)),
        ("3,5", utc(2024, 1, 9, 9)),
        ("WED", utc(2024, 1, 10, 9)),
        ("*", utc(2024, 1, 6, 9)),
        ("1/3", utc(2024, 1, 6, 9)),  # SUN(1), WED(4), SAT(7): Saturday comes first
    ],
)
def test_cron_day_of_week_names_and_numbers(day_of_week: str, expected: datetime) -> None:
    # GIVEN a 09:00 schedule on the given days of the week
    schedule = parse(f"cron(0 9 ? * {day_of_week} *)")
    # WHEN asked after Friday's 09:00
    fired = schedule.next_after(FRIDAY_AFTER_NINE)
    # THEN the first matching day at 09:00 follows
    assert fired == expected


def test_cron_weekdays_skip_the_weekend() -> None:
    found = fires("cron(0 9 ? * MON-FRI *)", utc(2024, 1, 1), 7)
    assert [fired.strftime("%a %d") for fired in found] == [
        "Mon 01",
        "Tue 02",
        "Wed 03",
        "Thu 04",
        "Fri 05",
        "Mon 08",
        "Tue 09",
    ]


# --- cron(...): L, leap day, month and year rollover -------------------------------------------


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (utc(2024, 1, 15), utc(2024, 1, 31, 23, 0)),
        (utc(2024, 1, 31, 23, 0), utc(2024, 2, 29, 23, 0)),  # leap year
        (utc(2023, 2, 1), utc(2023, 2, 28, 23, 0)),
        (utc(2024, 4, 1), utc(2024, 4, 30, 23, 0)),
        (utc(2024, 12, 31, 23, 0), utc(2025, 1, 31, 23, 0)),
    ],
)
def test_cron_last_day_of_month(moment: datetime, expected: datetime) -> None:
    assert parse("cron(0 23 L * ? *)").next_after(moment) == expected


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (utc(2024, 3, 1), utc(2028, 2, 29)),
        (utc(2024, 2, 29), utc(2028, 2, 29)),
        (utc(2024, 2, 28, 23, 59), utc(2024, 2, 29)),
        # 2100 is not a leap year, so 2096's successor is 2104
        (utc(2096, 3, 1), utc(2104, 2, 29)),
    ],
)
def test_cron_leap_day(moment: datetime, expected: datetime) -> None:
    assert parse("cron(0 0 29 2 ? *)").next_after(moment) == expected


@pytest.mark.parametrize(
    ("expression", "moment", "expected"),
    [
        # day 31 skips the 30-day months
        ("cron(30 23 31 * ? *)", utc(2024, 4, 1), utc(2024, 5, 31, 23, 30)),
        ("cron(30 23 31 * ? *)", utc(2024, 12, 31, 23, 31), utc(2025, 1, 31, 23, 30)),
        ("cron(0 0 1 JAN ? *)", utc(2024, 6, 1), utc(2025, 1, 1)),
        ("cron(0 0 1 jan ? *)", utc(2024, 6, 1), utc(2025, 1, 1)),
        ("cron(0 0 1 1 ? *)", utc(2024, 1, 1), utc(2025, 1, 1)),
        ("cron(0 12 15 MAR,SEP ? *)", utc(2024, 3, 15, 12), utc(2024, 9, 15, 12)),
        ("cron(0 12 15 JUN-AUG ? *)", utc(2024, 8, 15, 12), utc(2025, 6, 15, 12)),
        ("cron(0 0 1 */3 ? *)", utc(2024, 2, 1), utc(2024, 4, 1)),
        ("cron(59 23 31 12 ? *)", utc(2024, 12, 31, 23, 58), utc(2024, 12, 31, 23, 59)),
        ("cron(59 23 31 12 ? *)", utc(2024, 12, 31, 23, 59), utc(2025, 12, 31, 23, 59)),
        ("cron(0 0 * * ? 2030)", utc(2024, 6, 1), utc(2030, 1, 1)),
        ("cron(0 0 1 1 ? 2026-2030/2)", utc(2026, 1, 1), utc(2028, 1, 1)),
        # a moment before 1970 starts at the first allowed year
        ("cron(0 0 1 1 ? *)", utc(1960, 6, 1), utc(1970, 1, 1)),
    ],
)
def test_cron_month_and_year_rollover(
    expression: str, moment: datetime, expected: datetime
) -> None:
    assert parse(expression).next_after(moment) == expected


@pytest.mark.parametrize(
    ("expression", "moment"),
    [
        ("cron(0 0 * * ? 2000-2010)", utc(2024, 1, 1)),
        ("cron(0 0 * * ? 2010)", utc(2010, 12, 31, 0, 0)),  # the last fire itself
        ("cron(0 0 * * ? *)", utc(2199, 12, 31, 0, 0)),  # AWS years end at 2199
        ("cron(0 0 * * ? *)", utc(9999, 1, 1)),
        ("cron(0 0 31 2 ? *)", utc(1970, 1, 1)),  # February never has a 31st
        ("cron(0 0 30 FEB ? *)", utc(2024, 1, 1)),
    ],
)
def test_cron_that_never_fires_again_returns_none(expression: str, moment: datetime) -> None:
    assert parse(expression).next_after(moment) is None


# --- at(...) ------------------------------------------------------------------------------------

AT = "at(2030-06-15T12:30:45)"


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (utc(2024, 1, 1), utc(2030, 6, 15, 12, 30, 45)),
        (utc(2030, 6, 15, 12, 30, 44), utc(2030, 6, 15, 12, 30, 45)),
        (utc(2030, 6, 15, 12, 30, 45), None),  # strictly after: not again at its own time
        (utc(2031, 1, 1), None),
    ],
)
def test_at_fires_once(moment: datetime, expected: datetime | None) -> None:
    assert parse(AT).next_after(moment) == expected


# --- moments and the Schedule value -------------------------------------------------------------


@pytest.mark.parametrize("expression", ["rate(5 minutes)", "cron(0 10 * * ? *)", AT])
def test_naive_moment_is_rejected(expression: str) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse(expression).next_after(datetime(2024, 1, 1, 9, 0))


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("rate(5 minutes)", utc(2024, 1, 1, 8, 5)),
        ("cron(0 10 * * ? *)", utc(2024, 1, 1, 10, 0)),
    ],
)
def test_non_utc_moment_is_converted_and_result_is_utc(expression: str, expected: datetime) -> None:
    # GIVEN 10:00 at UTC+2, which is 08:00 UTC
    moment = datetime(2024, 1, 1, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    # WHEN
    fired = parse(expression).next_after(moment)
    # THEN the answer is computed in UTC and returned in UTC
    assert fired == expected
    assert fired is not None and fired.tzinfo is UTC


def test_parse_returns_a_frozen_schedule_keyed_by_its_expression() -> None:
    schedule = parse("rate(5 minutes)")
    assert schedule == Schedule("rate(5 minutes)")
    assert schedule.expression == "rate(5 minutes)"
    assert schedule != parse("rate(6 minutes)")
    assert repr(schedule) == "Schedule(expression='rate(5 minutes)')"
    with pytest.raises(AttributeError):
        schedule.expression = "rate(1 minute)"  # type: ignore[misc]


def test_schedule_constructor_validates_eagerly() -> None:
    with pytest.raises(ScheduleExpressionError, match="value must be a positive integer"):
        Schedule("rate(0 minutes)")


def test_error_is_a_value_error() -> None:
    assert issubclass(ScheduleExpressionError, ValueError)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("cron(0 2 * * ? *)", "cron(0 2 ? * * *)"),
        ("cron(0 2 * * ? *)", "cron(0 2 1-31 * ? *)"),
        ("cron(0 2 ? * SUN-SAT *)", "cron(0 2 ? * 1-7 *)"),
        ("cron(0/15 * * * ? *)", "cron(0,15,30,45 * * * ? *)"),
        ("cron(0 8 ? * MON-FRI *)", "cron(0 8 ? * 2-6 *)"),
        ("rate(60 minutes)", "rate(1 hour)"),
        ("rate(1 day)", "rate(24 hours)"),
    ],
)
def test_expressions_written_differently_fire_alike(one: str, other: str) -> None:
    assert parse(one).fires_like(parse(other))
    assert parse(other).fires_like(parse(one))


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("cron(0 2 * * ? *)", "cron(0 3 * * ? *)"),
        ("cron(0 2 * * ? *)", "cron(0 2 ? * MON-FRI *)"),
        ("cron(0 2 L * ? *)", "cron(0 2 31 * ? *)"),
        ("cron(0 0 * * ? *)", "rate(1 day)"),  # a rate is anchored on its start, not midnight
        ("rate(5 minutes)", "rate(6 minutes)"),
    ],
)
def test_expressions_that_fire_at_other_times_differ(one: str, other: str) -> None:
    assert not parse(one).fires_like(parse(other))


# --- malformed and unsupported expressions ------------------------------------------------------

SIX_FIELDS = "expected 6 fields (minutes hours day-of-month month day-of-week year)"


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        # not a schedule expression at all
        ("", "expected rate(value unit), cron(fields) or at(yyyy-mm-ddThh:mm:ss)"),
        ("every 5 minutes", "expected rate(value unit), cron(fields) or at("),
        ("Rate(5 minutes)", "expected rate(value unit), cron(fields) or at("),
        # rate
        ("rate(0 minutes)", "value must be a positive integer"),
        ("rate(-5 minutes)", "value must be a positive integer"),
        ("rate(1.5 hours)", "value must be a positive integer"),
        ("rate(five minutes)", "value must be a positive integer"),
        ("rate(5 weeks)", "unit must be one of minute, minutes, hour, hours, day, days"),
        ("rate(5 seconds)", "unit must be one of minute, minutes, hour, hours, day, days"),
        ("rate(1 hours)", "with value 1 the unit must be 'hour'"),
        ("rate(5 minute)", "with a value above 1 the unit must be 'minutes'"),
        ("rate(5)", "expected rate(value unit)"),
        ("rate(5 minutes", "expected rate(value unit)"),
        # cron shape
        ("cron(0 0 * * ?)", f"{SIX_FIELDS}, got 5"),
        ("cron(0 0 * * ? * *)", f"{SIX_FIELDS}, got 7"),
        ("cron()", f"{SIX_FIELDS}, got 0"),
        ("cron(0 0 * * ? *", "expected cron(fields) with a closing ')'"),
        # the ? rule
        (
            "cron(0 0 * * MON *)",
            "exactly one of day-of-month and day-of-week must be '?', neither is",
        ),
        (
            "cron(0 0 * * * *)",
            "exactly one of day-of-month and day-of-week must be '?', neither is",
        ),
        ("cron(0 0 ? * ? *)", "exactly one of day-of-month and day-of-week must be '?', both are"),
        ("cron(? 0 * * ? *)", "'?' is allowed only as the whole day-of-month or day-of-week field"),
        ("cron(0 0 ?,1 * ? *)", "'?' is allowed only as the whole day-of-month or day-of-week"),
        # ranges of each field
        ("cron(60 * * * ? *)", "minutes field '60': value 60 is out of range 0-59"),
        ("cron(0 24 * * ? *)", "hours field '24': value 24 is out of range 0-23"),
        ("cron(0 0 0 * ? *)", "day-of-month field '0': value 0 is out of range 1-31"),
        ("cron(0 0 32 * ? *)", "day-of-month field '32': value 32 is out of range 1-31"),
        ("cron(0 0 ? 13 MON *)", "month field '13': value 13 is out of range 1-12"),
        ("cron(0 0 ? * 0 *)", "day-of-week field '0': value 0 is out of range 1-7"),
        ("cron(0 0 ? * 8 *)", "day-of-week field '8': value 8 is out of range 1-7"),
        ("cron(0 0 * * ? 1969)", "year field '1969': value 1969 is out of range 1970-2199"),
        ("cron(0 0 * * ? 2024-2200)", "year field '2024-2200': value 2200 is out of range"),
        # item syntax
        ("cron(*/0 * * * ? *)", "minutes field '*/0': step must be a positive integer"),
        ("cron(0 22-2 * * ? *)", "range start 22 is after its end 2 (ranges must not wrap)"),
        ("cron(0 0 ? * FRI-MON *)", "range start 6 is after its end 2 (ranges must not wrap)"),
        ("cron(0 0 * FOO ? *)", "month field 'FOO': 'FOO' is not a number or name"),
        ("cron(0 0 * MON ? *)", "month field 'MON': 'MON' is not a number or name"),
        ("cron(0 0 ? * JAN *)", "day-of-week field 'JAN': 'JAN' is not a number or name"),
        ("cron(JAN 0 * * ? *)", "minutes field 'JAN': 'JAN' is not a number"),
        ("cron(0 0 1,,2 * ? *)", "expected *, a value, a range a-b, or a step */n, a/n or a-b/n"),
        ("cron(0 0 1-2-3 * ? *)", "expected *, a value, a range a-b, or a step"),
        ("cron(0 0 */ * ? *)", "expected *, a value, a range a-b, or a step"),
        # unsupported Quartz extensions
        ("cron(0 0 15W * ? *)", "'W' (nearest weekday) is not supported"),
        ("cron(0 0 LW * ? *)", "'W' (nearest weekday) is not supported"),
        ("cron(0 0 ? * 6#3 *)", "'#' (nth weekday of the month) is not supported"),
        ("cron(0 0 ? * FRI#1 *)", "'#' (nth weekday of the month) is not supported"),
        ("cron(0 0 ? * 6L *)", "'L' is not supported in the day-of-week field"),
        ("cron(0 0 ? * L *)", "'L' is not supported in the day-of-week field"),
        ("cron(0 0 L-3 * ? *)", "'L' is supported only as the whole day-of-month field"),
        ("cron(0 0 1,L * ? *)", "'L' is supported only as the whole day-of-month field"),
        ("cron(L 0 * * ? *)", "'L' is not supported in the minutes field"),
        ("cron(0 0 * L ? *)", "'L' is not supported in the month field"),
        # at
        ("at(2024-02-30T00:00:00)", "not a valid date and time: day is out of range"),
        ("at(2024-01-01T25:00:00)", "not a valid date and time: hour must be in 0..23"),
        ("at(2024-01-01 00:00:00)", "expected at(yyyy-mm-ddThh:mm:ss)"),
        ("at(2024-01-01T00:00)", "expected at(yyyy-mm-ddThh:mm:ss)"),
        ("at(2024-01-01T00:00:00Z)", "expected at(yyyy-mm-ddThh:mm:ss)"),
    ],
)
def test_malformed_expression_names_the_problem(expression: str, problem: str) -> None:
    # WHEN the expression is parsed
    with pytest.raises(ScheduleExpressionError, match=re.escape(problem)) as caught:
        parse(expression)
    # THEN the message quotes the expression first, then says what is wrong
    assert str(caught.value).startswith(f"{expression}: ")


# --- sizes EventBridge refuses (found by review: OverflowError and ValueError tracebacks) ---------


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        # timedelta cannot hold it: OverflowError while parsing
        ("rate(99999999999999999999 days)", "longer than 36500 days"),
        # parsed, then next_after overflowed datetime: `galley local up`'s scheduler calls it
        ("rate(999999999 days)", "longer than 36500 days"),
        ("rate(36501 days)", "longer than 36500 days"),
        ("rate(876001 hours)", "longer than 36500 days"),
        ("rate(52560001 minutes)", "longer than 36500 days"),
        # too many digits for int(): ValueError
        ("rate(" + "9" * 5000 + " minutes)", "longer than 256 characters"),
        ("cron(" + "9" * 5000 + " 0 * * ? *)", "longer than 256 characters"),
    ],
)
def test_expressions_too_large_for_eventbridge_are_refused_when_parsed(
    expression: str, problem: str
) -> None:
    with pytest.raises(ScheduleExpressionError, match=re.escape(problem)) as caught:
        parse(expression).next_after(utc(2026, 1, 1))
    # one line, short enough to read, however long the expression
    assert "\n" not in str(caught.value)
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize(
    "expression", ["rate(36500 days)", "rate(876000 hours)", "rate(52560000 minutes)"]
)
def test_the_longest_rate_fires(expression: str) -> None:
    assert parse(expression).next_after(utc(2199, 12, 31)) == utc(2299, 12, 7)


def test_a_rate_past_the_last_representable_year_never_fires_again() -> None:
    assert parse("rate(36500 days)").next_after(utc(9950, 1, 1)) is None
