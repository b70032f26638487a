"""runner.settlement.rules.judge: the verdict on a received message, before any task code runs.

Examples for each rule, then properties over arbitrary input: bytes, text (lone surrogates
included), JSON values, base64 of JSON, and well-formed kombu envelopes with mutated headers,
properties and bodies. The strategies here are reused by tests/integration/test_consumer_fuzz.py.
"""

from __future__ import annotations

import ast
import base64
import json
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.core.deadletter import MAX_REASON_CHARS
from runner.settlement import rules
from runner.wire import codec, payloads

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
QUEUE = "jobs"
BUCKET = "results-bucket"
KNOWN = ("tasks.imports.import_records", "tasks.reports.summarize_csv", "tasks.my_job")
#: A JSON number Python will not read (more than sys.get_int_max_str_digits() digits).
HUGE_INT = "9" * 5000
_HUGE_MARK = "\x00huge-int\x00"


def judge(body: str | bytes, **overrides: Any) -> rules.Verdict:
    options: dict[str, Any] = {
        "now": NOW,
        "is_known": KNOWN.__contains__,
        "max_hop": 900,
        "results_bucket": BUCKET,
    }
    return rules.judge(body, **{**options, **overrides})


def body_of(task: str = KNOWN[0], args: Any = (1,), **options: Any) -> str:
    return codec.encode(task, args, {}, queue=QUEUE, **options)


def envelope_body(mutate: Callable[[dict[str, Any]], None], **options: Any) -> str:
    """A kombu message for KNOWN[0], its envelope changed by ``mutate`` (plain JSON)."""
    envelope = json.loads(body_of(sqs_base64=False, **options))
    mutate(envelope)
    return json.dumps(envelope)


# --- examples: one per rule ---


def test_a_plain_message_runs() -> None:
    verdict = judge(body_of())
    assert (verdict.action, verdict.reason, verdict.delay_seconds) == ("run", None, None)
    assert verdict.message is not None and verdict.message.args == [1]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ("not a celery message", "neither base64 nor a JSON object"),
        (b"\xff\xfe", "neither base64 nor a JSON object"),
        ("{}", "not a kombu message"),
        ("", "empty"),
    ],
)
def test_undecodable_bodies_are_dead_lettered_with_the_reason(
    body: str | bytes, detail: str
) -> None:
    verdict = judge(body)
    assert (verdict.action, verdict.message) == ("dead-letter", None)
    assert verdict.reason is not None and verdict.reason.startswith(rules.UNDECODABLE)
    assert detail in verdict.reason


@pytest.mark.parametrize(
    ("task_body", "detail"),
    [
        (f"[[{HUGE_INT}], {{}}, {{}}]", "integer string conversion"),  # ValueError
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),  # RecursionError
    ],
    ids=["5000-digit-int", "nesting-too-deep"],
)
def test_json_python_cannot_read_is_dead_lettered_with_the_reason(
    task_body: str, detail: str
) -> None:
    def swap_body(envelope: dict[str, Any]) -> None:
        envelope["body"] = base64.b64encode(task_body.encode()).decode()

    # GIVEN valid JSON that Python's reader gives up on (ValueError, RecursionError)
    body = envelope_body(swap_body)
    # WHEN it is judged
    verdict = judge(body)
    # THEN it is dead-lettered with the reason
    assert (verdict.action, verdict.message) == ("dead-letter", None)
    assert verdict.reason is not None and verdict.reason.startswith(rules.UNDECODABLE)
    assert detail in verdict.reason


def test_an_unknown_task_is_dead_lettered() -> None:
    verdict = judge(body_of("tasks.nope"))
    assert (verdict.action, verdict.reason) == ("dead-letter", "unknown task 'tasks.nope'")
    assert verdict.message is not None and verdict.message.task == "tasks.nope"


def test_an_expired_message_expires() -> None:
    verdict = judge(body_of(expires=10, now=NOW - timedelta(seconds=11)))
    assert verdict.action == "expire"
    assert verdict.reason == "expired at 2026-03-01T11:59:59+00:00"


def test_a_message_not_yet_expired_runs() -> None:
    assert judge(body_of(expires=10, now=NOW - timedelta(seconds=9))).action == "run"


@pytest.mark.parametrize(
    ("countdown", "max_hop", "delay"),
    [(2000, 900, 900), (30, 900, 30), (30, 7, 7), (30, 0, 1), (30, 10_000, 30)],
)
def test_a_future_eta_is_deferred_by_the_next_hop(countdown: int, max_hop: int, delay: int) -> None:
    verdict = judge(body_of(countdown=countdown, now=NOW), max_hop=max_hop)
    assert (verdict.action, verdict.delay_seconds) == ("defer", delay)
    assert verdict.reason == f"due at {(NOW + timedelta(seconds=countdown)).isoformat()}"


def test_a_due_eta_runs_and_a_naive_eta_means_utc() -> None:
    assert judge(body_of(eta=NOW - timedelta(seconds=1))).action == "run"
    naive = (NOW + timedelta(seconds=60)).replace(tzinfo=None)
    assert judge(body_of(eta=naive)).delay_seconds == 60


def test_expiry_wins_over_a_future_eta() -> None:
    def expired(envelope: dict[str, Any]) -> None:
        envelope["headers"]["expires"] = (NOW - timedelta(seconds=1)).isoformat()

    assert judge(envelope_body(expired, countdown=60, now=NOW)).action == "expire"


@pytest.mark.parametrize("header", ["eta", "expires"])
@pytest.mark.parametrize(
    "value", ["tomorrow", 12, ["2026-01-01"], "0001-01-01T00:00:00+05:00", "9999-12-31T23:59-05:00"]
)
def test_a_malformed_time_header_is_dead_lettered_naming_it(header: str, value: Any) -> None:
    def set_header(envelope: dict[str, Any]) -> None:
        envelope["headers"][header] = value

    verdict = judge(envelope_body(set_header))
    assert verdict.action == "dead-letter"
    assert verdict.reason is not None and f"header {header!r}" in verdict.reason


@pytest.mark.parametrize(
    ("pointer", "detail"),
    [
        ({"bucket": BUCKET, "key": "payloads/another-job/x"}, "is not this job's"),
        ({"bucket": "elsewhere", "key": "payloads/TASK/x"}, "is not this job's"),
        ({"bucket": BUCKET, "key": "results/TASK"}, "is not this job's"),
        ("s3://bucket/key", "is not a payload pointer"),
        ({"bucket": BUCKET}, "is not a payload pointer"),
        (False, "is not a payload pointer"),
    ],
)
def test_a_payload_pointer_that_is_not_the_jobs_own_is_refused(pointer: Any, detail: str) -> None:
    # GIVEN a job with its arguments inline that also carries a payload pointer
    task_id = "0b3c"
    if isinstance(pointer, dict) and "key" in pointer:
        pointer = {**pointer, "key": pointer["key"].replace("TASK", task_id)}
    body = body_of(task_id=task_id, extra_headers={payloads.HEADER: pointer})
    # WHEN it is judged THEN it is refused before it could run
    verdict = judge(body)
    assert verdict.action == "dead-letter"
    assert verdict.reason is not None and detail in verdict.reason


def test_the_jobs_own_payload_pointer_runs() -> None:
    pointer = {"bucket": BUCKET, "key": "payloads/0b3c/first-try"}
    body = body_of(task_id="0b3c", extra_headers={payloads.HEADER: pointer})
    assert judge(body).action == "run"
    # without a bucket to check against, only the key is checked
    assert judge(body, results_bucket=None).action == "run"


@pytest.mark.parametrize(
    ("where", "name", "value", "detail"),
    [
        ("headers", "retries", "1", "header 'retries'"),
        ("headers", "retries", -1, "header 'retries'"),
        ("headers", "timelimit", "60", "header 'timelimit'"),
        ("headers", "timelimit", [60], "header 'timelimit'"),
        ("headers", "timelimit", ["60", None], "header 'timelimit'"),
        ("properties", "delivery_info", ["q"], "property 'delivery_info'"),
        ("headers", "callbacks", "tasks.x", "'callbacks' is not a list"),
        ("headers", "callbacks", [1], "'callbacks' holds a int"),
        ("headers", "errbacks", [{"args": []}], "'errbacks' holds a signature without a task"),
        ("headers", "chain", [{"subtask_type": "nope"}], "unknown type 'nope'"),
        ("headers", "chord", {"task": "t", "kwargs": []}, "'kwargs' is not a dict"),
    ],
)
def test_fields_a_runtime_reads_outside_the_body_are_checked_first(
    where: str, name: str, value: Any, detail: str
) -> None:
    def set_field(envelope: dict[str, Any]) -> None:
        envelope[where][name] = value
        if where == "headers":  # links in the headers count where the body's embed has none
            envelope["body"] = base64.b64encode(b"[[1], {}, {}]").decode()

    verdict = judge(envelope_body(set_field))
    assert verdict.action == "dead-letter"
    assert verdict.reason is not None and detail in verdict.reason, verdict.reason


def test_well_formed_links_and_limits_run() -> None:
    link: dict[str, Any] = {"task": "tasks.my_job", "args": [1], "kwargs": {}, "options": {}}

    def set_fields(envelope: dict[str, Any]) -> None:
        envelope["headers"].update(timelimit=[60, 50.5], retries=2)
        embed = {"callbacks": [link], "errbacks": None, "chain": [link], "chord": None}
        envelope["body"] = base64.b64encode(json.dumps([[1], {}, embed]).encode()).decode()

    assert judge(envelope_body(set_fields)).action == "run"


def test_a_naive_now_is_taken_as_utc() -> None:
    body = body_of(countdown=60, now=NOW)
    assert judge(body, now=NOW.replace(tzinfo=None)).delay_seconds == 60


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
        ("nul\x00 and \ufffe", "nul\\u0000 and \\ufffe"),
        ("tab\tnewline\n", "tab\tnewline\n"),
        ("", "no reason given"),
    ],
)
def test_reasons_are_made_safe_for_an_sqs_attribute(text: str, expected: str) -> None:
    assert rules.clean_reason(text) == expected


def test_long_reasons_are_cut() -> None:
    cleaned = rules.clean_reason("x" * (MAX_REASON_CHARS + 10))
    assert len(cleaned) == MAX_REASON_CHARS and cleaned.endswith("...")


def test_settlement_imports_only_the_light_core() -> None:
    # GIVEN the module's own imports
    source = Path(rules.__file__).read_text()
    imported = {
        node.module or ""
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.level == 0
    } | {
        alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    # THEN they are the standard library and the light core: no Celery, kombu, boto3, Lambda
    runner_modules = {m for m in imported if m.startswith("runner")}
    assert runner_modules <= {
        "runner.core",
        "runner.core.deadletter",
        "runner.core.limits",
        "runner.errors",
        "runner.wire",
    }
    assert not {m.split(".")[0] for m in imported} & {"celery", "kombu", "boto3", "botocore"}
    # AND importing it loads no AWS client library and no runtime
    probe = (
        "import sys, runner.settlement.rules\n"
        "heavy = ('boto3', 'botocore', 'celery.app', 'runner.runtime', 'runner.producer',"
        " 'runner.worker', 'runner.lambdas')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))"
    )
    root = Path(__file__).resolve().parents[3]
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=root
    ).stdout
    assert loaded.strip() == "[]"


# --- strategies (also used by tests/integration/test_consumer_fuzz.py) ---

HEADER_NAMES = (
    "eta",
    "expires",
    "timelimit",
    "retries",
    "id",
    "task",
    "argsrepr",
    "kwargsrepr",
    "root_id",
    "parent_id",
    "group",
    "group_index",
    "callbacks",
    "errbacks",
    "chain",
    "chord",
    "shadow",
    "stamps",
    "stamped_headers",
    "ignore_result",
    "origin",
    payloads.HEADER,
)
PROPERTY_NAMES = (
    "delivery_info",
    "body_encoding",
    "delivery_tag",
    "priority",
    "reply_to",
    "correlation_id",
    "delay_seconds",
)

#: Any text, lone surrogates included.
any_text = st.text(st.characters() | st.characters(categories=["Cs"]), max_size=30)
readable_scalars = st.none() | st.booleans() | st.integers() | st.floats() | any_text
#: kombu's JSON type markers (runner/wire/kombu_json.py), valid or not.
kombu_markers = st.fixed_dictionaries(
    {
        "__type__": st.sampled_from(["datetime", "date", "time", "decimal", "uuid", "bytes", "x"]),
        "__value__": readable_scalars,
    }
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4)


#: JSON any sender may put in arguments (a dict shaped like a kombu type marker is read back as
#: that type, by kombu too: not an argument a sender can round-trip).
plain_values = st.recursive(readable_scalars, _containers, max_leaves=12)
#: JSON a sender should not send: type markers, numbers too long for Python to read.
odd_values = st.one_of(
    st.just(_HUGE_MARK),  # becomes a 5000-digit integer in the JSON text
    kombu_markers,
    st.lists(plain_values | st.just(_HUGE_MARK) | kombu_markers, min_size=1, max_size=3),
)
#: Any JSON value.
json_values = plain_values | odd_values
offsets = st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23)).map(timezone)
iso_times = st.one_of(
    st.datetimes(timezones=st.none() | offsets).map(datetime.isoformat),
    st.sampled_from(["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "", "now"]),
    st.datetimes(
        min_value=datetime(2026, 2, 1), max_value=datetime(2026, 4, 1), timezones=st.just(UTC)
    ).map(datetime.isoformat),  # near NOW: some due, some deferred, some expired
)
header_values = plain_values | iso_times


def to_json(value: Any) -> str:
    """JSON text for ``value``; the huge-int mark becomes a 5000-digit integer."""
    return json.dumps(value).replace(json.dumps(_HUGE_MARK), HUGE_INT)


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()


@st.composite
def task_bodies(draw: st.DrawFn) -> Any:
    """Body element lists: protocol 2 ``[args, kwargs, embed]`` mostly, anything sometimes."""
    args = draw(st.lists(plain_values, max_size=3))
    kwargs = draw(st.dictionaries(any_text, plain_values, max_size=2))
    links = st.dictionaries(st.sampled_from(rules.LINKS), plain_values)
    embed = draw(st.none() | st.just({}) | links)
    shape = draw(st.integers(0, 9))  # hypothesis draws 0, the simplest, most often
    if shape == 9:
        return draw(json_values)
    if shape == 8:
        return draw(st.lists(json_values, min_size=4, max_size=5))
    if shape == 7 and args:  # one argument Python cannot read, or a kombu type marker
        args[draw(st.integers(0, len(args) - 1))] = draw(odd_values)
    return [args, kwargs, embed]


@st.composite
def kombu_envelopes(draw: st.DrawFn, known: tuple[str, ...] = KNOWN) -> str:
    """A message built by runner.wire.codec, then mutated; the SQS MessageBody text."""
    task = draw(st.sampled_from(known) | st.text(min_size=1, max_size=20))
    when: dict[str, Any] = draw(
        st.sampled_from([{}, {"countdown": 30}, {"countdown": 5000}, {"expires": 1}])
    )
    message = codec.build(task, [], {}, queue=QUEUE, now=NOW - timedelta(seconds=2), **when)
    envelope = json.loads(codec.encode_message(message, sqs_base64=False))
    for name in draw(st.lists(st.sampled_from(HEADER_NAMES), unique=True, max_size=4)):
        envelope["headers"][name] = draw(header_values)
    for name in draw(st.lists(st.sampled_from(PROPERTY_NAMES), unique=True, max_size=2)):
        envelope["properties"][name] = draw(plain_values)
    if draw(st.integers(0, 9)) == 9:
        envelope["properties"] = draw(json_values)
    body_text = to_json(draw(task_bodies()))
    properties = envelope["properties"]
    encoding = properties.get("body_encoding") if isinstance(properties, dict) else None
    envelope["body"] = b64(body_text) if encoding == codec.BODY_ENCODING else body_text
    text = to_json(envelope)
    return b64(text) if draw(st.booleans()) else text


#: Every kind of MessageBody the properties cover.
message_bodies = st.one_of(
    st.binary(max_size=200),
    any_text,
    json_values.map(to_json),
    json_values.map(to_json).map(b64),
    kombu_envelopes(),
)


# --- properties ---

_CLEAN = re.compile("[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]+")


def check_verdict(verdict: rules.Verdict, max_hop: int = 900) -> None:
    """What every verdict satisfies, whatever the body."""
    assert verdict.action in ("run", "defer", "expire", "dead-letter")
    if verdict.action == "dead-letter":
        assert verdict.reason, "a dead letter without a reason"
        assert _CLEAN.fullmatch(verdict.reason), f"not SQS text: {verdict.reason!r}"
        assert len(verdict.reason) <= MAX_REASON_CHARS
        assert not verdict.reason.startswith("message could not be judged"), verdict.reason
    else:
        assert verdict.message is not None, f"{verdict.action} without a message"
    if verdict.action == "expire":
        assert verdict.reason
    if verdict.action == "defer":
        assert verdict.delay_seconds is not None and 1 <= verdict.delay_seconds <= max_hop
    else:
        assert verdict.delay_seconds is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=message_bodies, max_hop=st.integers(min_value=1, max_value=900))
def test_judge_never_raises_and_every_verdict_is_complete(body: str | bytes, max_hop: int) -> None:
    # WHEN any body is judged THEN a complete verdict comes back
    check_verdict(judge(body, max_hop=max_hop), max_hop)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=kombu_envelopes())
def test_judge_on_mutated_envelopes(body: str) -> None:
    verdict = judge(body)
    check_verdict(verdict)
    if verdict.action != "dead-letter":
        # what a runtime builds its request from is usable
        assert verdict.message is not None
        assert isinstance(verdict.message.properties.get("delivery_info") or {}, dict)


@settings(max_examples=100, deadline=None)
@given(
    args=st.lists(plain_values, max_size=3),
    when=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
)
def test_a_well_formed_message_is_never_refused(args: list[Any], when: datetime) -> None:
    # GIVEN a message as Celery or the producer sends it, with any JSON arguments and an eta
    eta = when.replace(tzinfo=UTC)
    body = codec.encode(KNOWN[0], json.loads(json.dumps(args)), {}, queue=QUEUE, eta=eta)
    # WHEN it is judged THEN it runs or waits for its eta, never dead-lettered
    verdict = judge(body)
    assert verdict.action == ("defer" if eta > NOW else "run"), verdict.reason
