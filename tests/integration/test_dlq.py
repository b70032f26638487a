"""`galley dlq` against a moto server: list without consuming, show, redrive without loss or
duplicates, purge only when confirmed."""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from click.testing import CliRunner, Result

from runner.cli.main import main
from runner.core.deadletter import REASON_ATTRIBUTE, dead_letter
from runner.local import embedded
from runner.local.process import wait_for
from runner.ops import dlq
from runner.wire import codec, payloads
from tests import support

pytestmark = pytest.mark.integration

POLICY_REASON = (
    "moved by the queue's redrive policy after 2 receives (no reason recorded; see the worker logs)"
)
GARBAGE = "not base64 {{{"


@dataclass
class Seeded:
    """What the DLQ holds: task id -> (task name, reason), plus two special messages."""

    stack: embedded.LocalResources
    sqs: Any
    jobs: dict[str, tuple[str, str]] = field(default_factory=dict)
    garbage_id: str = ""
    moved_task_id: str = ""


def _seed(stack: embedded.LocalResources) -> Seeded:
    """Two jobs and one undecodable body dead-lettered by Galley with reasons, and one job
    SQS moved by the queue's redrive policy (maxReceiveCount 2)."""
    sqs, _ = support.clients(stack)
    seeded = Seeded(stack, sqs)
    queue = stack.queue_url.rsplit("/", 1)[1]
    for task, args, reason in [
        ("tasks.reports.summarize_csv", [stack.bucket, "in/a.csv"], "task FAILURE: NoSuchKey"),
        ("tasks.imports.import_records", [[], stack.bucket, "p"], "task FAILURE: ValueError: x"),
    ]:
        task_id = str(uuid.uuid4())
        body = codec.encode(task, args, queue=queue, task_id=task_id)
        dead_letter(sqs, stack.dlq_url, body, reason=reason, source_queue=stack.queue_url)
        seeded.jobs[task_id] = (task, reason)
    seeded.garbage_id = dead_letter(
        sqs, stack.dlq_url, GARBAGE, reason="undecodable message", source_queue=stack.queue_url
    )
    seeded.moved_task_id = str(uuid.uuid4())
    sqs.send_message(
        QueueUrl=stack.queue_url,
        MessageBody=codec.encode("tasks.nope.x", [1], queue=queue, task_id=seeded.moved_task_id),
        MessageAttributes={"trace": {"DataType": "String", "StringValue": "abc"}},
    )

    def received_until_moved() -> bool:
        sqs.receive_message(QueueUrl=stack.queue_url, VisibilityTimeout=0, WaitTimeSeconds=0)
        return support.queue_depth(stack, stack.dlq_url) == 4

    wait_for(received_until_moved, timeout=10, what="SQS to move the message to the DLQ")
    return seeded


@pytest.fixture
def seeded(make_stack: Callable[..., embedded.LocalResources]) -> Seeded:
    return _seed(make_stack(max_receive_count=2))


def galley(stack: embedded.LocalResources, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, ["dlq", *args], env=stack.env(), input=input)


def _dlq_bodies(seeded: Seeded) -> Counter[str]:
    return Counter(letter.body for letter in dlq.peek(seeded.sqs, seeded.stack.dlq_url))


def _drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Receive (and keep invisible) every message of ``url``."""
    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60, MessageAttributeNames=["All"]
    ).get("Messages"):
        messages += batch
    return messages


def test_list_shows_task_id_reason_and_receives_without_consuming(seeded: Seeded) -> None:
    stack = seeded.stack
    # WHEN the DLQ is listed as JSON
    result = galley(stack, "list", "--json")
    # THEN every message is there with its task, id, reason and receive count
    assert result.exit_code == 0, result.output
    listed = {item["task_id"] or item["message_id"]: item for item in json.loads(result.stdout)}
    assert set(listed) == {*seeded.jobs, seeded.garbage_id, seeded.moved_task_id}
    for task_id, (task, reason) in seeded.jobs.items():
        assert listed[task_id]["task"] == task
        assert listed[task_id]["reason"] == reason
        assert listed[task_id]["receive_count"] == 1  # the listing's own receive
        assert listed[task_id]["source_queue"] == stack.queue_url
    garbage = listed[seeded.garbage_id]
    assert (garbage["task"], garbage["task_id"]) == (None, None)
    assert garbage["reason"] == "undecodable message"
    assert "neither base64 nor a JSON object" in garbage["decode_error"]
    moved = listed[seeded.moved_task_id]
    assert (moved["task"], moved["reason"]) == ("tasks.nope.x", POLICY_REASON)
    assert moved["receive_count"] == 3  # moto carries the source queue's 2 receives over
    assert moved["source_queue"] == stack.queue_url  # from ListDeadLetterSourceQueues
    now = datetime.now(UTC)
    for item in listed.values():
        assert now - timedelta(minutes=1) <= datetime.fromisoformat(item["first_seen"]) <= now
    # AND nothing was consumed: all four are still in the DLQ, and a second listing sees them all
    assert support.queue_depth(stack, stack.dlq_url) == 4
    table = galley(stack, "list")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["TASK", "ID", "RECEIVES", "FAILED", "AT", "REASON"]
    for task_id, (task, reason) in seeded.jobs.items():
        row = next(line for line in lines if task_id in line)
        assert row.split()[:3] == [task, task_id, "2"]
        assert row.endswith(f"  {reason}")
    assert any(line.startswith("(undecodable)") and seeded.garbage_id in line for line in lines)
    assert lines[-1] == f"4 message(s) in {stack.dlq_url}"
    assert support.queue_depth(stack, stack.dlq_url) == 4


def test_list_and_show_give_when_each_job_failed(seeded: Seeded) -> None:
    stack, sqs = seeded.stack, seeded.sqs
    # GIVEN a job Galley dead-lettered two days ago (the seeded ones failed just now), and the
    # seeded job SQS moved by its redrive policy, which records no failure time
    failed = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    old_id = str(uuid.uuid4())
    body = codec.encode("tasks.x", [], queue="q", task_id=old_id)
    dead_letter(sqs, stack.dlq_url, body, reason="r", source_queue=stack.queue_url, now=failed)
    sent = datetime.now(UTC)
    # WHEN the DLQ is listed as JSON
    listed = galley(stack, "list", "--json")
    # THEN each job has its failure time: the one Galley recorded, else when SQS had it sent
    assert listed.exit_code == 0, listed.output
    items = {item["task_id"] or item["message_id"]: item for item in json.loads(listed.stdout)}
    assert items[old_id]["failed_at"] == failed.isoformat()
    moved = items[seeded.moved_task_id]
    assert moved["failed_at"] == moved["sent_at"]
    assert items[old_id]["failed_at_source"] == "galley-failed-at"
    assert moved["failed_at_source"] == "SentTimestamp"
    assert sent - timedelta(minutes=1) <= datetime.fromisoformat(moved["failed_at"]) <= sent
    # AND the table shows them under FAILED AT, the sent time marked and explained
    lines = galley(stack, "list").stdout.splitlines()
    assert lines[0].split() == ["TASK", "ID", "RECEIVES", "FAILED", "AT", "REASON"]
    assert f"  {failed:%Y-%m-%d %H:%M:%S}  " in next(line for line in lines if old_id in line)
    moved_row = next(line for line in lines if seeded.moved_task_id in line)
    assert f"  {datetime.fromisoformat(moved['failed_at']):%Y-%m-%d %H:%M:%S}*  " in moved_row
    assert lines[-2] == f"* {dlq.SENT_AT_NOTE}"
    # AND show explains the sent time too
    shown = galley(stack, "show", seeded.moved_task_id)
    moved_at = datetime.fromisoformat(moved["failed_at"])
    assert f"failed at:    {moved_at:%Y-%m-%d %H:%M:%S} ({dlq.SENT_AT_NOTE})" in shown.stdout


def test_peek_reads_past_one_receive_batch_and_honours_the_limit(
    stack: embedded.LocalResources,
) -> None:
    sqs, _ = support.clients(stack)
    for n in range(23):
        dead_letter(sqs, stack.dlq_url, f"body {n}", reason="r", source_queue=stack.queue_url)
    assert len({letter.message_id for letter in dlq.peek(sqs, stack.dlq_url)}) == 23
    assert len(dlq.peek(sqs, stack.dlq_url, limit=15)) == 15
    assert support.queue_depth(stack, stack.dlq_url) == 23


def test_show_decodes_a_message_and_explains_an_undecodable_one(seeded: Seeded) -> None:
    stack = seeded.stack
    task_id, (task, reason) = next(iter(seeded.jobs.items()))
    result = galley(stack, "show", task_id)
    assert result.exit_code == 0, result.output
    assert f"task:         {task}" in result.stdout
    assert f"id:           {task_id}" in result.stdout
    assert f"reason:       {reason}" in result.stdout
    assert "retries:      0" in result.stdout
    assert re.search(r"^failed at:    \d{4}-\d\d-\d\d \d\d:\d\d:\d\d$", result.stdout, re.M)
    assert f'"id": "{task_id}"' in result.stdout  # the headers
    garbage = galley(stack, "show", seeded.garbage_id)
    assert garbage.exit_code == 0, garbage.output
    assert "task:         (undecodable)" in garbage.stdout
    assert f"body:         {GARBAGE}" in garbage.stdout
    missing = galley(stack, "show", "no-such-id")
    assert missing.exit_code == 1
    assert "Error: no message with task id or message id 'no-such-id'" in missing.output


def test_redrive_all_returns_every_message_once_with_its_body(seeded: Seeded) -> None:
    stack, sqs = seeded.stack, seeded.sqs
    before = _dlq_bodies(seeded)
    assert sum(before.values()) == 4
    # WHEN everything is redriven
    result = galley(stack, "redrive", "--all")
    # THEN the DLQ is empty and the source queue holds exactly the same bodies, once each
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "4 moved, 0 not moved"
    assert support.queue_depth(stack, stack.dlq_url) == 0
    assert support.queue_depth(stack, stack.queue_url) == 4
    returned = _drain(sqs, stack.queue_url)
    assert Counter(message["Body"] for message in returned) == before
    # AND Galley's attributes stayed behind while the message's own ones travelled with it
    attributes = [message.get("MessageAttributes", {}) for message in returned]
    assert not any(REASON_ATTRIBUTE in a for a in attributes)
    assert {"trace": {"StringValue": "abc", "DataType": "String"}} in attributes


def test_redrive_gives_a_job_its_retries_back_and_keeps_the_rest(
    stack: embedded.LocalResources,
) -> None:
    # GIVEN a job dead-lettered after its last retry, with an idempotency key and a payload
    # pointer
    sqs, _ = support.clients(stack)
    queue, task_id = stack.queue_url.rsplit("/", 1)[1], str(uuid.uuid4())
    headers = {
        codec.IDEMPOTENCY_HEADER: "order-1",
        payloads.HEADER: {"bucket": stack.bucket, "key": f"{payloads.PREFIX}{task_id}/a"},
    }
    body = codec.encode(
        "tasks.x", [1], {"k": 2}, queue=queue, task_id=task_id, retries=3, extra_headers=headers
    )
    dead_letter(sqs, stack.dlq_url, body, reason="max retries", source_queue=stack.queue_url)
    # WHEN it is redriven
    result = galley(stack, "redrive", task_id)
    # THEN it is back on its queue with its retry count at 0 and everything else as it was
    assert result.exit_code == 0, result.output
    [returned] = _drain(sqs, stack.queue_url)
    before, after = codec.decode(body), codec.decode(returned["Body"])
    assert after.retries == 0
    assert after == replace(before, headers={**before.headers, "retries": 0})
    # AND the output says so
    assert f"moved tasks.x {task_id} -> {stack.queue_url} (retries 3 -> 0)" in result.stdout


def test_redrive_leaves_an_expired_job_in_the_dlq_and_says_why(
    stack: embedded.LocalResources,
) -> None:
    # GIVEN two dead-lettered jobs, one of them past its expiry time
    sqs, _ = support.clients(stack)
    queue, expired_id, live_id = stack.queue_url.rsplit("/", 1)[1], "expired-1", "live-1"
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    for body in (
        codec.encode("tasks.x", [], queue=queue, task_id=expired_id, expires=60, now=an_hour_ago),
        codec.encode("tasks.x", [], queue=queue, task_id=live_id, expires=3600),
    ):
        dead_letter(sqs, stack.dlq_url, body, reason="r", source_queue=stack.queue_url)
    expired_at = an_hour_ago + timedelta(seconds=60)
    # WHEN everything is redriven
    result = galley(stack, "redrive", "--all")
    # THEN the expired one stays in the DLQ (its queue would revoke it unrun), and says so
    assert (
        f"not moved {expired_id}: expired at {expired_at.isoformat(timespec='seconds')}"
        in result.stderr
    )
    assert result.exit_code == 1
    assert [letter.task_id for letter in dlq.peek(sqs, stack.dlq_url)] == [expired_id]
    # AND the other one is back on its queue
    assert [codec.decode(m["Body"]).id for m in _drain(sqs, stack.queue_url)] == [live_id]


def test_redrive_selected_ids_moves_only_those(seeded: Seeded) -> None:
    stack = seeded.stack
    chosen = next(iter(seeded.jobs))
    result = galley(stack, "redrive", chosen, seeded.garbage_id)
    assert result.exit_code == 0, result.output
    assert f"moved tasks.reports.summarize_csv {chosen} -> {stack.queue_url}" in result.stdout
    assert f"moved (undecodable) {seeded.garbage_id} -> {stack.queue_url}" in result.stdout
    assert support.queue_depth(stack, stack.queue_url) == 2
    left = dlq.peek(seeded.sqs, stack.dlq_url)
    assert {letter.task_id for letter in left} == (set(seeded.jobs) - {chosen}) | {
        seeded.moved_task_id
    }


def test_redrive_of_an_unknown_id_moves_nothing_and_says_so(seeded: Seeded) -> None:
    result = galley(seeded.stack, "redrive", "no-such-id")
    assert result.exit_code == 1
    assert "not moved no-such-id: not in the dead-letter queue" in result.stderr
    assert "Error: 1 message(s) not moved" in result.stderr
    assert support.queue_depth(seeded.stack, seeded.stack.dlq_url) == 4
    assert support.queue_depth(seeded.stack, seeded.stack.queue_url) == 0


def test_redrive_from_a_queue_without_source_needs_to(stack: embedded.LocalResources) -> None:
    sqs, _ = support.clients(stack)
    lone = sqs.create_queue(QueueName=f"lone-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    sqs.send_message(QueueUrl=lone, MessageBody="orphan")
    refused = galley(stack, "redrive", "--all", "--queue", lone)
    assert refused.exit_code == 1
    assert "its source queue is not known; give the queue with --to" in refused.stderr
    assert support.queue_depth(stack, lone) == 1
    moved = galley(stack, "redrive", "--all", "--queue", lone, "--to", stack.queue_url)
    assert moved.exit_code == 0, moved.output
    assert support.queue_depth(stack, lone) == 0
    assert [m["Body"] for m in _drain(sqs, stack.queue_url)] == ["orphan"]


def test_redrive_needs_ids_or_all(stack: embedded.LocalResources) -> None:
    result = galley(stack, "redrive")
    assert result.exit_code == 2
    assert "give message IDs or --all" in result.output


def test_purge_asks_first_and_yes_skips_the_question(seeded: Seeded) -> None:
    stack = seeded.stack
    declined = galley(stack, "purge", input="n\n")
    assert f"Delete 4 messages from {stack.dlq_url}? [y/N]" in declined.output
    assert declined.output.splitlines()[-1] == "nothing purged"
    assert declined.exit_code == 0
    assert support.queue_depth(stack, stack.dlq_url) == 4
    purged = galley(stack, "purge", "--yes")
    assert purged.exit_code == 0, purged.output
    assert "Delete" not in purged.output
    assert support.queue_depth(stack, stack.dlq_url) == 0


def test_without_a_dlq_setting_the_error_names_the_variable(stack: embedded.LocalResources) -> None:
    env: dict[str, str | None] = {**stack.env(), "GALLEY_DLQ_URL": None}
    result = CliRunner().invoke(main, ["dlq", "list"], env=env)
    assert result.exit_code == 1
    assert "GALLEY_DLQ_URL: required for --queue jobs (the default) but not set" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_queue_long_works_on_the_long_jobs_dlq(stack: embedded.LocalResources) -> None:
    # GIVEN a long-jobs DLQ holding one dead letter, named by GALLEY_LONG_DLQ_URL
    sqs, _ = support.clients(stack)
    long_dlq = sqs.create_queue(QueueName=f"long-{uuid.uuid4().hex[:8]}-dlq")["QueueUrl"]
    dead_letter(sqs, long_dlq, "long body", reason="r", source_queue=stack.queue_url)
    env = {**stack.env(), "GALLEY_LONG_DLQ_URL": long_dlq}
    # WHEN each DLQ is listed by its role
    long = CliRunner().invoke(main, ["dlq", "list", "--queue", "long", "--json"], env=env)
    jobs = CliRunner().invoke(main, ["dlq", "list", "--queue", "jobs"], env=env)
    # THEN --queue long reads the long-jobs DLQ, and --queue jobs the jobs DLQ
    assert long.exit_code == 0, long.output
    assert [item["reason"] for item in json.loads(long.stdout)] == ["r"]
    assert jobs.exit_code == 0, jobs.output
    assert jobs.stdout == f"no messages in {stack.dlq_url}\n"


def test_queue_long_without_its_variable_names_it(stack: embedded.LocalResources) -> None:
    result = galley(stack, "list", "--queue", "long")
    assert result.exit_code == 1
    assert result.output.startswith("Error: GALLEY_LONG_DLQ_URL: required for --queue long")
    assert len(result.output.splitlines()) == 1


def test_redrive_that_cannot_send_leaves_every_message_in_the_dlq(seeded: Seeded) -> None:
    stack = seeded.stack
    before = _dlq_bodies(seeded)
    nowhere = stack.queue_url.rsplit("/", 1)[0] + "/no-such-queue"
    result = galley(stack, "redrive", "--all", "--to", nowhere)
    assert result.exit_code == 1
    assert result.stdout.splitlines()[-1] == "0 moved, 4 not moved"
    assert _dlq_bodies(seeded) == before


#: Arguments JSON cannot hold; kombu's JSON encoder (Celery's) sends them as type markers.
TYPED_ARGS = [
    datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    Decimal("1.10"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    b"raw",
    b"\xff\x00",
]
TYPED_KWARGS = {"day": date(2026, 1, 2), "at": time(3, 4, 5), "plain": "text"}
#: How show and list --json print them: as they travel, in kombu's type markers.
TYPED_ARGS_SHOWN = (
    '[{"__type__": "datetime", "__value__": "2026-01-02T03:04:05+00:00"}, '
    '{"__type__": "decimal", "__value__": "1.10"}, '
    '{"__type__": "uuid", "__value__": {"hex": "12345678123456781234567812345678"}}, '
    '{"__type__": "bytes", "__value__": "raw"}, '
    '{"__type__": "base64", "__value__": "/wA="}]'
)
TYPED_KWARGS_SHOWN = (
    '{"day": {"__type__": "date", "__value__": "2026-01-02"}, '
    '"at": {"__type__": "time", "__value__": "03:04:05"}, "plain": "text"}'
)


def test_show_prints_arguments_json_cannot_hold(
    stack: embedded.LocalResources, app_for: Callable[[embedded.LocalResources], Any]
) -> None:
    # GIVEN two dead letters whose arguments are datetime, Decimal, UUID, bytes, date, time:
    # one sent by Celery itself (kombu's encoder), one built by runner.wire.codec
    sqs, _ = support.clients(stack)
    queue = stack.queue_url.rsplit("/", 1)[1]
    sent = app_for(stack).send_task(
        "tasks.reports.summarize_csv", args=TYPED_ARGS, kwargs=TYPED_KWARGS
    )
    [message] = _drain(sqs, stack.queue_url)
    dead_letter(sqs, stack.dlq_url, message["Body"], reason="r1", source_queue=stack.queue_url)
    built = str(uuid.uuid4())
    body = codec.encode("tasks.x", TYPED_ARGS, TYPED_KWARGS, queue=queue, task_id=built)
    dead_letter(sqs, stack.dlq_url, body, reason="r2", source_queue=stack.queue_url)

    for task_id in (sent.id, built):
        # WHEN each is shown
        result = galley(stack, "show", task_id)
        # THEN it prints, no traceback, with the arguments as they travel
        assert result.exception is None, result.output
        assert result.exit_code == 0, result.output
        assert f"id:           {task_id}" in result.stdout
        assert f"args:         {TYPED_ARGS_SHOWN}" in result.stdout
        assert f"kwargs:       {TYPED_KWARGS_SHOWN}" in result.stdout
    # AND list --json lists both
    listed = galley(stack, "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert {item["task_id"] for item in json.loads(listed.stdout)} == {sent.id, built}


def test_show_and_list_print_what_json_cannot_hold(
    stack: embedded.LocalResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever a decoded message holds (here: a set and an object in its arguments, a
    datetime in a header), show and list --json print it instead of a TypeError."""
    sqs, _ = support.clients(stack)
    queue = stack.queue_url.rsplit("/", 1)[1]
    task_id = str(uuid.uuid4())
    body = codec.encode("tasks.x", [1], queue=queue, task_id=task_id)
    dead_letter(sqs, stack.dlq_url, body, reason="r", source_queue=stack.queue_url)
    real_decode = codec.decode

    def odd_decode(text: str) -> codec.TaskMessage:
        message = real_decode(text)
        message.args[:] = [{3}, Opaque()]
        message.headers["seen"] = datetime(2026, 1, 2, tzinfo=UTC)
        return message

    # GIVEN a decoder that hands show values JSON has no form for
    monkeypatch.setattr(codec, "decode", odd_decode)
    # WHEN the message is shown and listed
    shown = galley(stack, "show", task_id)
    listed = galley(stack, "list", "--json")
    # THEN both print, with such values in their repr
    assert shown.exception is None, shown.output
    assert 'args:         ["{3}", "<opaque>"]' in shown.stdout
    assert '"__value__": "2026-01-02T00:00:00+00:00"' in shown.stdout  # the header
    assert listed.exit_code == 0, listed.output
    assert [item["task_id"] for item in json.loads(listed.stdout)] == [task_id]


class Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


def test_list_and_show_print_a_task_id_with_a_lone_surrogate(
    stack: embedded.LocalResources,
) -> None:
    """Found by the review of the restructure: such a dead letter (the worker dead-letters it:
    tests/e2e/test_unencodable_ids.py) made `galley dlq list` and `show` fail on printing."""
    # GIVEN a dead letter whose task id holds a lone surrogate (legal in its JSON text)
    sqs, _ = support.clients(stack)
    queue = stack.queue_url.rsplit("/", 1)[1]
    task_id = "job-\udf3c-1"
    body = codec.encode("tasks.x", [1], {}, queue=queue, task_id=task_id)
    dead_letter(sqs, stack.dlq_url, body, reason="r", source_queue=stack.queue_url)
    # WHEN it is listed and shown
    listed = galley(stack, "list")
    shown = galley(stack, "show", task_id)
    # THEN both print, the surrogate as an escape
    for result in (listed, shown):
        assert result.exception is None, result.output
        assert result.exit_code == 0, result.output
    assert "job-\\udf3c-1" in listed.stdout
    assert "id:           job-\\udf3c-1" in shown.stdout


def test_list_and_show_escape_what_a_terminal_would_act_on(
    stack: embedded.LocalResources,
) -> None:
    """Found by the second review of issue 13 (`galley top` and `status` had it too): a task
    name, id or reason is whatever a producer sent; printed raw, an escape sequence in one
    clears the operator's screen and a line break forges a row."""
    sqs, _ = support.clients(stack)
    queue = stack.queue_url.rsplit("/", 1)[1]
    task_id = "job-\x1b[2J-1"
    body = codec.encode("tasks.\x1b]0;owned\x07x", [1], {}, queue=queue, task_id=task_id)
    dead_letter(sqs, stack.dlq_url, body, reason="bad\nFAKE ROW", source_queue=stack.queue_url)
    # WHEN it is listed and shown
    listed = galley(stack, "list")
    shown = galley(stack, "show", task_id)
    # THEN neither prints a control character: each is written as its escape
    for result in (listed, shown):
        assert result.exit_code == 0, result.output
        assert not any(c in result.stdout for c in "\x1b\x07"), result.stdout
        assert "\\x1b[2J" in result.stdout
    assert "bad\\nFAKE ROW" in shown.stdout
