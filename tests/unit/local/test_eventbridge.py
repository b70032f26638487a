"""runner.local.eventbridge: Celery beat schedules as EventBridge Scheduler expressions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from celery import Celery
from celery.schedules import crontab, schedule, solar
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from runner.errors import BeatScheduleError
from runner.local import cadence, eventbridge

#: A plain app for the crontabs under test: UTC, and no Galley settings to load.
CLOCK_APP = Celery("eventbridge-tests", set_as_current=False)


def celery_next(cron: crontab, moment: datetime) -> datetime:
    """The first time after ``moment`` Celery's own crontab arithmetic runs ``cron``."""
    last_run_at, delta, _now = cron.remaining_delta(moment)
    fired: datetime = last_run_at + delta
    return fired.astimezone(UTC)


def celery_fires(cron: crontab, moment: datetime, count: int) -> list[datetime]:
    found = []
    for _ in range(count):
        moment = celery_next(cron, moment)
        found.append(moment)
    return found


def eventbridge_fires(expression: str, moment: datetime, count: int) -> list[datetime]:
    rule = cadence.parse(expression)
    found = []
    for _ in range(count):
        fired = rule.next_after(moment)
        assert fired is not None
        found.append(fired)
        moment = fired
    return found


# --- crontab fields, written the ways Celery accepts them ------------------------------------


def field_spec(low: int, high: int, names: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    """One crontab field as text: *, */n, a, a-b, a-b/n, or a list of those (names too)."""
    value = st.integers(low, high)

    def show(number: int) -> st.SearchStrategy[str]:
        return (
            st.sampled_from([str(number), names[number - low]]) if names else st.just(str(number))
        )

    single = value.flatmap(show)
    ranged = st.tuples(value, value)  # a > b wraps around, as Celery reads it
    span = ranged.flatmap(lambda ab: st.tuples(show(ab[0]), show(ab[1])).map("-".join))
    stepped_span = st.tuples(
        ranged.map(lambda ab: f"{ab[0]}-{ab[1]}"), st.integers(1, high - low + 1)
    ).map(lambda pair: f"{pair[0]}/{pair[1]}")
    star_step = st.integers(1, high - low + 1).map(lambda n: f"*/{n}")
    # a few values an even step apart, stopping short of the top or reaching it
    progression = st.tuples(value, st.integers(2, 10), st.integers(3, 6)).map(
        lambda a_n_k: f"{a_n_k[0]}-{min(a_n_k[0] + a_n_k[1] * (a_n_k[2] - 1), high)}/{a_n_k[1]}"
    )
    item = st.one_of(single, span, stepped_span, star_step, progression)
    items = st.lists(item, min_size=1, max_size=4).map(",".join)
    return st.one_of(st.just("*"), item, items)


MINUTE = field_spec(0, 59)
HOUR = field_spec(0, 23)
DAY_OF_MONTH = field_spec(1, 31)
MONTH = field_spec(1, 12)
WEEKDAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
DAY_OF_WEEK = field_spec(0, 6, WEEKDAY_NAMES)
#: Moments from 2000 to 2090, to the second (Celery and EventBridge both ignore seconds).
MOMENT = st.datetimes(datetime(2000, 1, 1), datetime(2090, 12, 31)).map(
    lambda moment: moment.replace(microsecond=0, tzinfo=UTC)
)


@st.composite
def crontabs(draw: st.DrawFn) -> crontab:
    """A crontab EventBridge can say: at most one of day-of-month and day-of-week restricted."""
    restrict = draw(st.sampled_from(["neither", "day_of_month", "day_of_week"]))
    fields = {
        "minute": draw(MINUTE),
        "hour": draw(HOUR),
        "day_of_month": draw(DAY_OF_MONTH) if restrict == "day_of_month" else "*",
        "day_of_week": draw(DAY_OF_WEEK) if restrict == "day_of_week" else "*",
        "month_of_year": draw(MONTH),
    }
    # Some month holds one of its days (day 31 of February alone never comes): Celery refuses
    # the others as it builds the crontab.
    try:
        cron = crontab(**fields, app=CLOCK_APP)
    except ValueError:
        reject()
    return cron


@settings(max_examples=300, deadline=None)
@given(cron=crontabs(), moment=MOMENT)
def test_a_crontab_fires_when_celery_runs_it(cron: crontab, moment: datetime) -> None:
    # GIVEN any crontab EventBridge can express
    # WHEN it is translated
    expression = eventbridge.expression(cron)
    # THEN EventBridge's reading of the expression (cadence) fires exactly when Celery runs it
    assert eventbridge_fires(expression, moment, 3) == celery_fires(cron, moment, 3), expression


# --- crontab: what the translation looks like -------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        (crontab(minute=0, hour=2), "cron(0 2 * * ? *)"),
        (crontab(), "cron(* * * * ? *)"),
        (crontab(minute="*/15"), "cron(0/15 * * * ? *)"),
        (crontab(minute="5-59/10"), "cron(5/10 * * * ? *)"),
        (crontab(minute="0,30", hour="9-17"), "cron(0,30 9-17 * * ? *)"),
        (crontab(minute="10-30/10"), "cron(10,20,30 * * * ? *)"),
        # Celery counts day_of_week from 0 = Sunday, EventBridge from 1 = SUN: names say which
        (crontab(minute=0, hour=8, day_of_week="mon-fri"), "cron(0 8 ? * MON-FRI *)"),
        (crontab(minute=0, hour=8, day_of_week=0), "cron(0 8 ? * SUN *)"),
        (crontab(minute=0, hour=8, day_of_week="sat,sun"), "cron(0 8 ? * SUN,SAT *)"),
        (crontab(minute=0, hour=8, day_of_week="fri-mon"), "cron(0 8 ? * SUN,MON,FRI,SAT *)"),
        (crontab(minute=0, hour=0, day_of_month=1), "cron(0 0 1 * ? *)"),
        (
            crontab(minute=0, hour=0, day_of_month="1,15", month_of_year="*/3"),
            "cron(0 0 1,15 1/3 ? *)",
        ),
        # a full field, however it is written, is "*"
        (crontab(minute=0, hour=0, day_of_week="0-6", day_of_month="1-31"), "cron(0 0 * * ? *)"),
    ],
)
def test_crontab_expressions_read_like_cron(cron: crontab, expected: str) -> None:
    assert eventbridge.expression(cron) == expected
    cadence.parse(expected)  # and EventBridge's rules accept it


def test_restricting_both_days_is_refused_with_the_reason() -> None:
    # GIVEN a crontab that runs on the 1st of the month, only if it is a Monday (Celery: both)
    cron = crontab(minute=0, hour=0, day_of_month=1, day_of_week="mon")
    # WHEN it is translated THEN the error says why EventBridge cannot say it
    with pytest.raises(BeatScheduleError, match=r"both day_of_month and day_of_week.*'\?'"):
        eventbridge.expression(cron)


# --- intervals: rate(...) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("every", "expected"),
    [
        (timedelta(minutes=1), "rate(1 minute)"),
        (timedelta(minutes=5), "rate(5 minutes)"),
        (timedelta(minutes=90), "rate(90 minutes)"),
        (timedelta(hours=1), "rate(1 hour)"),
        (timedelta(hours=36), "rate(36 hours)"),
        (timedelta(days=1), "rate(1 day)"),
        (timedelta(weeks=2), "rate(14 days)"),
        (300, "rate(5 minutes)"),  # a number is seconds, as in beat_schedule
        (120.0, "rate(2 minutes)"),
        (schedule(timedelta(hours=6)), "rate(6 hours)"),
        (schedule(600), "rate(10 minutes)"),
    ],
)
def test_intervals_become_rates(every: object, expected: str) -> None:
    assert eventbridge.expression(every) == expected
    cadence.parse(expected)


@pytest.mark.parametrize(
    ("every", "message"),
    [
        (timedelta(seconds=30), r"30 seconds.*shortest EventBridge Scheduler rate is 1 minute"),
        (10, r"10 seconds.*shortest EventBridge Scheduler rate is 1 minute"),
        (timedelta(seconds=90), r"90 seconds is not a whole number of minutes"),
        (61.5, r"61.5 seconds is not a whole number of minutes"),
        (0, r"0 seconds"),
        (-60, r"-60 seconds"),
        # found by review: rate(999999999 days) passed, then overflowed the local scheduler
        (timedelta(days=999999999), r"longer than 36500 days, the longest rate Galley accepts"),
        (timedelta(days=36501), r"longer than 36500 days"),
        (float("inf"), r"longer than 36500 days"),
    ],
)
def test_intervals_eventbridge_cannot_keep_are_refused(every: object, message: str) -> None:
    with pytest.raises(BeatScheduleError, match=message):
        eventbridge.expression(every)


def test_relative_intervals_are_refused() -> None:
    with pytest.raises(BeatScheduleError, match="relative=True"):
        eventbridge.expression(schedule(timedelta(hours=1), relative=True))


def test_solar_is_refused_clearly() -> None:
    # GIVEN a solar schedule (built by hand: its constructor needs the ephem library)
    sunrise = solar.__new__(solar)
    sunrise.event, sunrise.lat, sunrise.lon = "sunrise", 52.37, 4.89
    # WHEN it is translated THEN the error says EventBridge cannot, and what to use instead
    with pytest.raises(BeatScheduleError, match=r"solar.*no EventBridge.*crontab"):
        eventbridge.expression(sunrise)


@pytest.mark.parametrize("thing", ["0 2 * * *", None, True, object()])
def test_anything_else_is_refused_naming_its_type(thing: object) -> None:
    with pytest.raises(BeatScheduleError, match=type(thing).__name__):
        eventbridge.expression(thing)
