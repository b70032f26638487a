"""Property: whatever arrives on the queue, the worker's receive path never raises, and every
message gets exactly one outcome — handed to Celery (which can take it), or dead-lettered with a
reason. Hypothesis generates the bodies; Celery's own Request is built for what is handed on."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace
from typing import Any

from celery.worker.request import Request
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from kombu.asynchronous.timer import Timer
from kombu.transport import virtual

from runner.core.settings import WorkerSettings
from runner.runtime.app import create_app
from runner.wire import codec
from runner.worker import transport
from runner.worker.custody import Options
from runner.worker.ledger import Ledger

QUEUE = "galley-jobs"
URL = f"https://sqs.eu-west-1.amazonaws.com/123456789012/{QUEUE}"
APP = create_app(WorkerSettings(queue_url=URL, results_bucket="galley-results", region="eu-west-1"))


@APP.task(name="fuzz.noop")
def noop(*args: Any, **kwargs: Any) -> None:
    """The task fuzzed messages name when they name one that exists."""


class Outcomes:
    options = Options(results_bucket="galley-results")

    def __init__(self) -> None:
        self.ledger = Ledger()
        self.decided: list[tuple[str, str, str | None]] = []
        self.delivered: list[Request] = []
        #: What Celery raised on a message handed to it (caught by the transport's last guard,
        #: but in a real worker some of these surface later, on the event loop: none allowed).
        self.crashed: list[Exception] = []

    def settle(self, receipt: str, action: str, reason: str | None = None) -> bool:
        self.decided.append((receipt, action, reason))
        return True


def celery_takes(outcomes: Outcomes) -> Any:
    """What Celery's consumer does with a payload before the pool: a Message, then a Request."""
    channel = SimpleNamespace(codecs=virtual.Channel.codecs)
    channel.decode_body = lambda body, encoding=None: virtual.Channel.decode_body(
        channel, body, encoding
    )

    def callback(payload: dict[str, Any]) -> None:
        try:
            take(payload)
        except Exception as error:
            outcomes.crashed.append(error)
            raise

    def take(payload: dict[str, Any]) -> None:
        message = virtual.Message(payload, channel=channel)
        request = Request(message, app=APP, task=noop)
        _ = request.eta, request.expires, request.args, request.kwargs, request.argsrepr
        # the prefork pool arms its time-limit timers with these, on the event loop
        hard, soft = request.time_limits
        for seconds in (soft, hard):
            if seconds:
                Timer().call_after(seconds, noop).cancel()
        outcomes.delivered.append(request)

    return callback


def receive(body: str) -> Outcomes:
    outcomes = Outcomes()
    receiver: Any = transport.Transport.__new__(transport.Transport)
    receiver._galley = outcomes
    receiver._callbacks = {QUEUE: celery_takes(outcomes)}
    receiver._consuming = {}
    entry = outcomes.ledger.add(URL, {"ReceiptHandle": "r1", "MessageId": "m1", "Body": body})
    receiver._deliver_one(QUEUE, entry, {"ReceiptHandle": "r1", "Body": body})
    return outcomes


def check(outcomes: Outcomes) -> None:
    """Exactly one outcome; a dead letter always says why; Celery never chokes on what it gets."""
    assert outcomes.crashed == []
    assert len(outcomes.decided) + len(outcomes.delivered) == 1, outcomes.decided
    for _, action, reason in outcomes.decided:
        assert action == "dead-letter"
        assert reason and reason.strip()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
HEADERS = ["eta", "expires", "timelimit", "retries", "id", "task", "shadow", "argsrepr",
           "kwargsrepr", "root_id", "parent_id", "group", "group_index", "origin", "stamps",
           "ignore_result", "replaced_task_nesting", "stamped_headers", "lang"]  # fmt: skip


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def envelope_body(message: codec.TaskMessage, body: Any) -> str:
    envelope = json.loads(base64.b64decode(codec.encode_message(message)))
    envelope["body"] = b64(json.dumps(body).encode())
    return b64(json.dumps(envelope).encode())


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.one_of(st.text(), st.binary().map(lambda b: b.decode("latin-1"))))
def test_arbitrary_text(body: str) -> None:
    check(receive(body))


@FUZZ
@given(json_values)
def test_arbitrary_json_plain_and_base64(value: Any) -> None:
    text = json.dumps(value)
    check(receive(text))
    check(receive(b64(text.encode())))


pairs = st.lists(json_values, min_size=2, max_size=2)


@FUZZ
@given(
    st.dictionaries(st.sampled_from(HEADERS), json_values | pairs, max_size=6),
    json_values,
)
@example(headers={"timelimit": ["abc", None]}, properties={})  # the adversarial review's
def test_task_messages_with_arbitrary_headers_and_properties(
    headers: dict[str, Any], properties: Any
) -> None:
    message = codec.build("fuzz.noop", [1, "two"], {"three": 3}, queue=QUEUE)
    message.headers.update(headers)
    if isinstance(properties, dict):
        message.properties.update(properties)
    check(receive(codec.encode_message(message)))


@FUZZ
@given(json_values)
def test_task_messages_with_arbitrary_bodies(body: Any) -> None:
    message = codec.build("fuzz.noop", [], queue=QUEUE)
    check(receive(envelope_body(message, body)))


def test_a_five_thousand_digit_argument_is_dead_lettered_not_fatal() -> None:
    message = codec.build("fuzz.noop", [], queue=QUEUE)
    check(receive(envelope_body(message, [[0], {}, {}])))
    raw = json.loads(base64.b64decode(codec.encode_message(message)))
    raw["body"] = b64(b"[[" + b"7" * 5000 + b"], {}, {}]")
    outcomes = receive(b64(json.dumps(raw).encode()))
    check(outcomes)
    [(_, action, reason)] = outcomes.decided
    assert action == "dead-letter" and reason and "undecodable" in reason
