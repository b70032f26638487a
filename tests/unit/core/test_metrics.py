"""Job metrics as EMF lines: valid whatever the task names and values, aggregated per interval,
and bounded in the metrics (and so the cost) they create."""

from __future__ import annotations

import io
import json

from hypothesis import given
from hypothesis import strategies as st

from runner.core import emf, metrics
from tests import emf_check

STACK = "demo"


def recorder(**kwargs: object) -> metrics.Recorder:
    return metrics.Recorder(STACK, clock=lambda: 1_700_000_000.0, **kwargs)  # type: ignore[arg-type]


def test_an_interval_of_jobs_is_one_line_per_queue_and_task() -> None:
    # GIVEN two successes, a failure and a retry of one task, and a revoke of another
    rec = recorder()
    for _ in range(2):
        rec.count("jobs", "t.ok", metrics.RECEIVED)
        rec.count("jobs", "t.ok", metrics.STARTED)
        rec.count("jobs", "t.ok", metrics.SUCCEEDED)
        rec.observe("jobs", "t.ok", metrics.RUNTIME, 12.5)
        rec.observe("jobs", "t.ok", metrics.QUEUE_WAIT, 40)
    rec.count("jobs", "t.ok", metrics.FAILED)
    rec.count("jobs", "t.ok", metrics.RETRIED)
    rec.count("long", "t.other", metrics.REVOKED)
    # WHEN the interval ends
    lines = rec.lines()
    # THEN one valid EMF line per (queue, task), with both dimension sets
    assert len(lines) == 2
    documents = [emf_check.check(line) for line in lines]
    for document in documents:
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == metrics.NAMESPACE
        assert directive["Dimensions"] == [["Stack", "Queue", "Task"], ["Stack", "Queue"]]
        assert document["Stack"] == STACK
        assert document["_aws"]["Timestamp"] == 1_700_000_000_000
    # AND the counts and values are the jobs'
    ok = emf_check.totals(lines, Task="t.ok", Queue="jobs")
    assert ok[metrics.SUCCEEDED] == 2 and ok[metrics.FAILED] == 1 and ok[metrics.RETRIED] == 1
    assert ok[metrics.RECEIVED] == 2 and ok[metrics.STARTED] == 2 and ok[metrics.REVOKED] == 0
    assert ok[metrics.RUNTIME] == 2 and ok[metrics.QUEUE_WAIT] == 2
    assert emf_check.totals(lines, Task="t.other", Queue="long")[metrics.REVOKED] == 1
    # AND the interval starts again empty
    assert rec.lines() == []


def test_timings_past_the_spec_s_100_values_go_on_further_lines() -> None:
    # GIVEN 250 runs in one interval
    rec = recorder()
    for number in range(250):
        rec.count("jobs", "t", metrics.SUCCEEDED)
        rec.observe("jobs", "t", metrics.RUNTIME, float(number))
    # WHEN the interval ends
    lines = rec.lines()
    # THEN every value is there, at most 100 to a line, the count once
    totals = emf_check.totals(lines)
    assert totals[metrics.RUNTIME] == 250 and totals[metrics.SUCCEEDED] == 250
    assert len(lines) == 3
    assert sorted(v for line in lines for v in json.loads(line).get(metrics.RUNTIME, [])) == list(
        range(250)
    )


def test_a_busy_interval_costs_few_bytes_a_job() -> None:
    # GIVEN 1,000 jobs of one task in an interval, each with a runtime and a queue wait
    rec = recorder()
    for number in range(1000):
        for counter in (metrics.RECEIVED, metrics.STARTED, metrics.SUCCEEDED):
            rec.count("jobs", "tasks.reports.summarize_csv", counter)
        rec.observe("jobs", "tasks.reports.summarize_csv", metrics.RUNTIME, 100 + number * 1.37)
        rec.observe("jobs", "tasks.reports.summarize_csv", metrics.QUEUE_WAIT, number * 0.91)
    # WHEN the interval ends
    lines = rec.lines()
    # THEN the log costs under 20 bytes a job (one line a job would be ~500)
    size = sum(len(line) + 1 for line in lines)
    assert size / 1000 < 20, size


def test_values_keep_three_significant_digits() -> None:
    rec = recorder()
    for value in (1234.5678, 0.000123456, 7.0, 99999.0):
        rec.observe("jobs", "t", metrics.RUNTIME, value)
    (line,) = rec.lines()
    assert json.loads(line)[metrics.RUNTIME] == [1230, 0.000123, 7, 100000]


def test_unknown_task_names_and_names_past_the_cap_are_pooled() -> None:
    # GIVEN a recorder that knows two tasks and keeps at most two names
    rec = recorder(known=lambda name: name in {"a", "b"}, max_task_names=2)
    # WHEN jobs of names it does not know, and of one name too many, are counted
    for name in ("a", "b", "not-registered", "spam-1", "spam-2"):
        rec.count("jobs", name, metrics.RECEIVED)
    rec.count("jobs", "a", metrics.RECEIVED)
    # THEN unknown names share one Task value; known names stay, within the cap
    tasks = sorted(json.loads(line)["Task"] for line in rec.lines())
    assert tasks == sorted(["a", "b", metrics.UNKNOWN_TASK])


def test_the_cap_pools_names_past_it_as_other() -> None:
    rec = recorder(max_task_names=2)
    for name in ("a", "b", "c", "d"):
        rec.count("jobs", name, metrics.RECEIVED)
    tasks = sorted(json.loads(line)["Task"] for line in rec.lines())
    assert tasks == sorted(["a", "b", metrics.OTHER_TASKS])


def test_metrics_for_n_task_names() -> None:
    # 9 metrics for each (queue, task) and 9 for each queue's rollup
    assert metrics.custom_metrics(task_names=10, queues=2) == 9 * 10 + 9 * 2
    assert round(metrics.monthly_cost(task_names=10, queues=2), 2) == 32.40


def test_write_sends_each_line_whole_to_the_stream() -> None:
    stream = io.StringIO()
    emf.write(['{"a":1}', '{"b":2}'], stream)
    assert stream.getvalue() == '{"a":1}\n{"b":2}\n'


@given(
    queue=st.text(max_size=40),
    task=st.text(max_size=2000),
    values=st.lists(
        st.floats(allow_nan=False) | st.integers(min_value=-(10**400), max_value=10**400),
        max_size=300,
    ),
    counts=st.lists(st.sampled_from(metrics.COUNTERS), max_size=20),
)
def test_any_names_and_values_give_valid_emf(
    queue: str, task: str, values: list[float], counts: list[str]
) -> None:
    # GIVEN any queue and task names (any unicode, blank, huge) and any values (huge, infinite)
    rec = recorder()
    for counter in counts:
        rec.count(queue, task, counter)
    for value in values:
        rec.observe(queue, task, metrics.RUNTIME, value)
    # WHEN the interval ends
    lines = rec.lines()
    # THEN nothing raised, every line is valid EMF, short enough that no log driver splits it
    # (Docker's split lines at 16 KiB), and nothing was dropped
    assert all(len(line) < 16 * 1024 for line in lines)
    totals = emf_check.totals(lines)
    assert totals[metrics.RUNTIME] == len(values)
    assert sum(totals[c] for c in metrics.COUNTERS) == len(counts)


@given(text=st.text())
def test_a_dimension_value_is_always_one_cloudwatch_takes(text: str) -> None:
    value = emf.dimension_value(text)
    assert 0 < len(value) <= emf.MAX_DIMENSION_VALUE_CHARS and value.strip()
    assert all(32 <= ord(c) < 127 for c in value)
    if text.isascii() and text.isprintable() and text.strip() and len(text) <= 1024:
        assert value == text  # names CloudWatch takes are kept as they are
