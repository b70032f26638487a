"""runner.producer.sender.message_request, fuzzed: any call gets a message or a CallError.

The producer reads what its caller hands it (a Lambda event's values, a web form's): an empty task
name, a NaN or enormous countdown, a lone surrogate, a value JSON cannot carry. Each must be
refused with a CallError naming the task, never another exception.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from runner.errors import CallError, GalleyError
from runner.producer import sender
from runner.wire import codec

QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/jobs"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
odd_values = st.sampled_from([object(), {1, 2}, b"bytes", 1j, float("nan")])
calls = st.builds(
    sender.Call,
    task_name=st.text(max_size=30) | st.just("tasks.example.run"),
    args=st.lists(json_values | odd_values, max_size=3),
    kwargs=st.none() | st.dictionaries(st.text(max_size=5), json_values, max_size=2),
    countdown=st.none() | st.floats(allow_nan=True, allow_infinity=True) | st.integers(-5, 10**15),
    task_id=st.none() | st.text(max_size=40),
    idempotency_key=st.none() | st.text(max_size=20),
)


@given(calls)
def test_any_call_gets_a_message_or_a_call_error(call: sender.Call) -> None:
    try:
        task_id, request = sender.message_request(call, QUEUE_URL)
    except CallError as error:
        # THEN a refusal names the task and is a GalleyError (what entry points catch)
        assert isinstance(error, GalleyError)
        assert repr(call.task_name) in str(error) or call.task_name in str(error)
        return
    # THEN a message is one the codec reads back, for the task that was asked
    message = codec.decode(request["MessageBody"])
    assert (message.task, message.id) == (call.task_name, task_id)
    assert request["MessageBody"].encode("utf-8")
    if call.countdown and call.countdown > 0:
        assert request["DelaySeconds"] == min(math.ceil(call.countdown), 900)


def test_what_the_review_found_is_refused_by_name() -> None:
    cases: list[dict[str, Any]] = [
        {"task_name": ""},
        {"task_name": "tasks.x", "countdown": math.nan},
        {"task_name": "tasks.x", "countdown": math.inf},
        {"task_name": "tasks.x", "countdown": 1e300},
        {"task_name": "tasks.x", "task_id": "\ud800"},
        {"task_name": "tasks.x", "args": [object()]},
    ]
    for case in cases:
        try:
            sender.message_request(sender.Call(**case), QUEUE_URL)
        except CallError:
            continue
        raise AssertionError(f"not refused: {case}")


# --- queue=: the stack's queues by role (runner.core.queues) ---

LONG_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/long-jobs"


class Recorder:
    """An SQS client that records what it is asked to send."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_message(self, **request: Any) -> dict[str, Any]:
        self.sent.append(request)
        return {"MessageId": "m"}


def settings(long_url: str | None = LONG_URL) -> Any:
    from runner.core.settings import ProducerSettings

    return ProducerSettings(queue_url=QUEUE_URL, long_queue_url=long_url, region="us-east-1")


@given(st.sampled_from([None, "jobs", "long"]))
def test_queue_by_role_reaches_its_url_and_names_the_role(queue: str | None) -> None:
    client = Recorder()
    sender.enqueue("tasks.example.run", [1], queue=queue, client=client, settings=settings())
    [request] = client.sent
    assert request["QueueUrl"] == (LONG_URL if queue == "long" else QUEUE_URL)
    assert codec.decode(request["MessageBody"]).routing_key == (queue or "jobs")


@given(st.text(max_size=20).filter(lambda text: text not in ("jobs", "long")))
def test_an_unknown_queue_is_refused_naming_the_queues(queue: str) -> None:
    client = Recorder()
    try:
        sender.enqueue("tasks.example.run", [1], queue=queue, client=client, settings=settings())
    except GalleyError as error:
        assert f"unknown queue {queue!r}: the stack's queues are jobs, long" in str(error)
    assert client.sent == []


def test_the_long_queue_without_its_url_and_a_queue_with_a_url_are_refused() -> None:
    client = Recorder()
    for options, message in [
        ({"queue": "long", "settings": settings(None)}, "GALLEY_LONG_QUEUE_URL is not set"),
        ({"queue": "long", "queue_url": LONG_URL, "settings": settings()}, "not both"),
    ]:
        try:
            sender.enqueue("tasks.example.run", [1], client=client, **options)
        except GalleyError as error:
            assert message in str(error)
        else:
            raise AssertionError(f"{options} was not refused")
    assert client.sent == []
