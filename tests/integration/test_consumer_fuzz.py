"""The Lambda consumer's whole decode -> settle path, fuzzed, on a moto server with the real app.

Bodies come from the generators of tests/unit/settlement/test_rules.py (bytes, text, JSON, base64,
mutated kombu envelopes), made valid SQS text, really sent to a queue and received from it, then
handled as one Lambda batch. Every record must get exactly one outcome, and the queues must show
it: a settled record's message is deleted, a dead-lettered one is on the DLQ with its reason.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.core.deadletter import REASON_ATTRIBUTE
from runner.core.settings import ConsumerSettings
from runner.lambdas.records import Consumer, Outcome
from runner.local import embedded
from runner.local.process import wait_for
from runner.wire import codec
from tests import support
from tests.integration.test_consumer import Deadline, record, shared_app, shared_stack
from tests.unit.settlement.test_rules import (
    NOW,
    QUEUE,
    kombu_envelopes,
    message_bodies,
    plain_values,
)

#: The app's tasks the envelopes name (besides made-up names): real tasks, run for real.
TASKS = (
    "tasks.imports.import_records",
    "tasks.reports.summarize_csv",
    "tasks.uploads.publish_upload",
)
#: Characters SQS refuses in a message body: a record never holds them.
_NOT_SQS_TEXT = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
#: Why a record may be handed back to SQS: the invocation is ending, or a settle call failed.
_MAY_RETRY = re.compile(r"invocation ending|DLQ send:|defer failed:|rejected, requeue")


def sqs_text(body: str | bytes) -> str:
    """``body`` as SQS could have delivered it: text of the characters SQS takes, not empty."""
    text = body.decode("latin-1") if isinstance(body, bytes) else body
    return _NOT_SQS_TEXT.sub("", text) or "?"


@st.composite
def runnable_calls(draw: st.DrawFn, bucket: str) -> str:
    """A call that can succeed: due now, due soon, or expired by the consumer's clock (NOW)."""
    options: dict[str, Any] = draw(st.sampled_from([{}, {"countdown": 30}, {"expires": 1}]))
    return codec.encode(
        "tasks.imports.import_records",
        [[{"name": "Ada", "email": "ada@example.com"}], bucket, "fuzz"],
        {},
        queue=QUEUE,
        now=NOW - timedelta(seconds=draw(st.integers(0, 5))),
        **options,
    )


#: Headers that only describe a call: a message with any of them mutated reaches the tracer.
METADATA_HEADERS = (
    "argsrepr",
    "kwargsrepr",
    "root_id",
    "parent_id",
    "group",
    "group_index",
    "shadow",
    "stamps",
    "stamped_headers",
    "ignore_result",
    "origin",
    "replaced_task_nesting",
    "lang",
)


@st.composite
def traced_calls(draw: st.DrawFn) -> str:
    """A call of one of the app's tasks with any arguments and odd metadata: run by the tracer."""
    message = codec.build(
        draw(st.sampled_from(TASKS)),
        draw(st.lists(plain_values, max_size=3)),
        draw(st.dictionaries(st.sampled_from(["bucket", "key", "records", "x"]), plain_values)),
        queue=QUEUE,
    )
    for name in draw(st.lists(st.sampled_from(METADATA_HEADERS), unique=True, max_size=3)):
        message.headers[name] = draw(plain_values)
    return codec.encode_message(message)


@st.composite
def record_bodies(draw: st.DrawFn, bucket: str) -> str:
    """Mostly messages naming the app's tasks (some reach the tracer), else anything."""
    kind = draw(st.integers(0, 5))  # hypothesis draws 0, the simplest, most often
    body: str | bytes
    if kind <= 1:
        body = draw(traced_calls())
    elif kind == 2:
        body = draw(kombu_envelopes(known=TASKS))
    elif kind == 3:
        body = draw(runnable_calls(bucket))
    else:
        body = draw(message_bodies)
    return sqs_text(body)


class RecordingConsumer(Consumer):
    """The consumer, keeping every outcome it logs (each record's, once)."""

    outcomes: list[Outcome]

    def _log(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        super()._log(outcome)


@pytest.fixture
def fuzz_consumer(
    moto_server: embedded.MotoServer,
    make_stack: Callable[..., embedded.LocalResources],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[RecordingConsumer, embedded.LocalResources]]:
    """A consumer of a queue of its own (so hops and leftovers touch no other test), running
    the real app's tasks with results in the session's bucket."""
    stack = shared_stack(moto_server)
    app = shared_app(stack)
    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)
    own = make_stack(visibility_timeout=60)
    settings_ = ConsumerSettings(
        queue_url=own.queue_url, dlq_url=own.dlq_url, results_bucket=stack.bucket
    )
    sqs, _ = support.clients(stack)
    consumer = RecordingConsumer(app, settings_, sqs=sqs, clock=lambda: NOW)
    yield consumer, own


def _receive(sqs: Any, url: str, count: int, attributes: bool = False) -> list[dict[str, Any]]:
    got: dict[str, dict[str, Any]] = {}

    def all_there() -> bool:
        extra = {"MessageAttributeNames": ["All"]} if attributes else {}
        response = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, **extra)
        for message in response.get("Messages", []):
            got[message["MessageId"]] = message
        return len(got) >= count

    if count:
        wait_for(all_there, timeout=20, what=f"{count} messages on {url}")
    return list(got.values())


def _receive_sent(sqs: Any, url: str, sent: list[str]) -> dict[str, dict[str, Any]]:
    """The messages ``sent``, received. Others are hops of earlier examples coming due: they
    are deleted (received but never deleted, the queue's redrive policy would move them)."""
    got: dict[str, dict[str, Any]] = {}

    def all_there() -> bool:
        response = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
        for message in response.get("Messages", []):
            if message["MessageId"] in sent:
                got[message["MessageId"]] = message
            else:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return len(got) == len(sent)

    wait_for(all_there, timeout=20, what=f"{len(sent)} messages on {url}")
    return got


def _deleted(sqs: Any, url: str, receipt: str) -> bool:
    """True if the message behind ``receipt`` is gone (moto refuses its receipt handle)."""
    try:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=0)
    except ClientError as error:
        return error.response["Error"]["Code"] == "ReceiptHandleIsInvalid"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=receipt)  # not settled: clean up
    return False


@pytest.mark.filterwarnings("ignore:Exception raised outside body:RuntimeWarning")
def test_the_consumer_settles_any_batch_once_per_record(
    fuzz_consumer: tuple[RecordingConsumer, embedded.LocalResources],
) -> None:
    consumer, own = fuzz_consumer
    sqs = consumer.sqs
    bodies = record_bodies(consumer.settings.results_bucket)
    started = time.monotonic()

    # Function-scoped fixtures on purpose: one queue for all examples, each example checks and
    # cleans up what it sent.
    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(batch=st.lists(bodies, min_size=1, max_size=3))
    def check(batch: list[str]) -> None:
        # GIVEN a batch of records really received from the queue
        sent = [sqs.send_message(QueueUrl=own.queue_url, MessageBody=b)["MessageId"] for b in batch]
        received = _receive_sent(sqs, own.queue_url, sent)
        records = [
            {**record(received[i]["Body"], own, received[i]["ReceiptHandle"]), "messageId": i}
            for i in sent
        ]
        consumer.outcomes = []
        # WHEN the consumer handles it
        response = consumer.handle({"Records": records}, Deadline(60))
        # THEN every record has exactly one outcome, and only failures are reported
        outcomes = consumer.outcomes
        assert [o.message_id for o in outcomes] == sent
        failed = [{"itemIdentifier": o.message_id} for o in outcomes if o.failed]
        assert response == {"batchItemFailures": failed}
        for outcome in outcomes:
            _check_outcome(outcome)
        # AND a settled record's message is deleted at once; only failures stay on the queue
        for outcome, rec in zip(outcomes, records, strict=True):
            gone = _deleted(sqs, own.queue_url, rec["receiptHandle"])
            assert gone == (not outcome.failed), f"{outcome}: deleted={gone}"
        # AND every dead letter is on the DLQ with its reason, and nothing else is
        dead = Counter(
            (rec["body"], o.reason)
            for o, rec in zip(outcomes, records, strict=True)
            if o.action == "dead-lettered"
        )
        assert _dead_letters(sqs, own.dlq_url, sum(dead.values())) == dead

    check()
    assert time.monotonic() - started < 90, "the fuzz run took too long; lower max_examples"


def _check_outcome(outcome: Outcome) -> None:
    assert outcome.action in ("acked", "dead-lettered", "deferred", "expired", "retry-later")
    if outcome.action == "dead-lettered":
        assert outcome.reason, f"dead-lettered without a reason: {outcome}"
    if outcome.action == "retry-later":
        assert outcome.reason and _MAY_RETRY.search(outcome.reason), f"handed back: {outcome}"


def _dead_letters(sqs: Any, dlq_url: str, expected: int) -> Counter[tuple[str, str]]:
    messages = _receive(sqs, dlq_url, expected, attributes=True)
    found: Counter[tuple[str, str]] = Counter()
    for message in messages:
        reason = message.get("MessageAttributes", {}).get(REASON_ATTRIBUTE, {}).get("StringValue")
        found[(message["Body"], reason)] += 1
        sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
    leftover = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10).get("Messages", [])
    assert leftover == [], f"{len(leftover)} unexpected dead letters"
    return found
