"""runner.wire.codec against real Celery 5.7 + kombu 5.7, both directions.

Celery's side: a Galley Celery app (``runner.runtime.app.create_app``) whose SQS broker talks to an
in-process moto (``mock_aws``; kombu's *send* path is a plain boto3 client, so in-process moto
sees it). Every SendMessage request any boto3 client makes is recorded, so Celery's request and
Galley's are compared as sent, not reconstructed.

Each sender makes up a few values; the strict contract pins them on both sides instead of
normalising them afterwards, and then compares the whole SendMessage request byte for byte:

- the task id (``headers.id``, ``headers.root_id``, ``properties.correlation_id``): ``task_id=``;
- ``properties.reply_to`` (Celery: its per-thread app oid): ``reply_to=``;
- ``properties.delivery_tag`` (kombu: a uuid4 per message): kombu's ``_next_delivery_tag``
  is patched, ``delivery_tag=`` for Galley;
- the clock ``eta``/``expires`` count from: ``app.now`` is patched, ``now=`` for Galley.

``headers.origin`` (``gen<pid>@<hostname>``) needs no pinning: both run in this process.
:func:`test_unpinned_messages_differ_only_in_ids_and_clock` shows that, left unpinned, exactly
those fields (and no others) differ.
"""

from __future__ import annotations

import base64
import json
import random
import string
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import botocore.client
import pytest
from moto import mock_aws

from runner.core.settings import ProducerSettings, WorkerSettings
from runner.errors import WireError
from runner.producer import sender
from runner.runtime.app import create_app
from runner.wire import codec

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
TAG = "00000000-0000-4000-8000-0000000000aa"
REPLY_TO = "11111111-2222-3333-4444-555555555555"
TASK = "tasks.imports.import_records"


@dataclass
class CelerySide:
    app: Any
    sqs: Any
    queue_url: str
    queue: str
    sent: list[dict[str, Any]]

    def send(self, name: str, **options: Any) -> dict[str, Any]:
        """``app.send_task(name, ...)``; the SendMessage request kombu made for it."""
        before = len(self.sent)
        self.app.send_task(name, **options)
        assert len(self.sent) == before + 1
        return self.sent[-1]

    def receive_one(self) -> dict[str, Any]:
        messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
        assert len(messages.get("Messages", [])) == 1
        return dict(messages["Messages"][0])


@pytest.fixture
def celery_side(monkeypatch: pytest.MonkeyPatch) -> Iterator[CelerySide]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    sent: list[dict[str, Any]] = []
    original = botocore.client.BaseClient._make_api_call  # type: ignore[attr-defined]

    def record(client: Any, operation: str, params: dict[str, Any]) -> Any:
        if operation == "SendMessage":
            sent.append(dict(params))
        return original(client, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", record)
    with mock_aws():
        import boto3

        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="galley-jobs")["QueueUrl"]
        app = create_app(WorkerSettings(queue_url=url, results_bucket="galley-results"))
        try:
            yield CelerySide(app, sqs, url, "jobs", sent)
        finally:
            app.close()


@pytest.fixture
def pinned(celery_side: CelerySide, monkeypatch: pytest.MonkeyPatch) -> CelerySide:
    """Celery's clock and kombu's delivery tag fixed, so whole requests can be compared."""
    import kombu.transport.SQS

    monkeypatch.setattr(celery_side.app, "now", lambda: NOW)
    monkeypatch.setattr(kombu.transport.SQS.Channel, "_next_delivery_tag", lambda self: TAG)
    return celery_side


def envelope(message_body: str) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(message_body)))


# --- Galley's message is Celery's message ---

CASES: dict[str, dict[str, Any]] = {
    "tuple args": {"args": (1, 2)},
    "list args, unicode and quotes, countdown": {
        "args": [[{"a": 1}], "bucket", "prefix"],
        "kwargs": {"x": "é", "it's": "a\nb"},
        "countdown": 30,
    },
    "kombu JSON types, long reprs, root and parent ids": {
        "args": (
            datetime(2020, 1, 1, tzinfo=UTC),
            b"x",
            b"\xff\x00",
            Decimal("1.10"),
            uuid.UUID(int=5),
            date(2020, 1, 2),
            time(1, 2, 3),
            1.5,
            True,
            None,
            "s" * 2000,
        ),
        "kwargs": {"k": list(range(300)), "deep": {"a": {"b": {"c": {"d": 1}}}}},
        "root_id": "root-1",
        "parent_id": "parent-1",
    },
    "fractional countdown, SQS delay, expires": {
        "args": [1],
        "countdown": 12.5,
        "delay_seconds": 13,
        "expires": 60,
    },
    "retries and empty call": {"args": (), "retries": 3},
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_encode_is_byte_for_byte_what_celery_sends(
    pinned: CelerySide, case: dict[str, Any]
) -> None:
    # GIVEN the same call made through Celery and through runner.wire.codec
    options = {k: v for k, v in case.items() if k not in ("args", "kwargs")}
    task_id = str(uuid.uuid4())
    celery = pinned.send(
        TASK,
        args=case["args"],
        kwargs=case.get("kwargs"),
        task_id=task_id,
        reply_to=REPLY_TO,
        **options,
    )
    galley = codec.encode(
        TASK,
        case["args"],
        case.get("kwargs"),
        queue=pinned.queue,
        task_id=task_id,
        reply_to=REPLY_TO,
        delivery_tag=TAG,
        now=NOW,
        **options,
    )
    # THEN the SendMessage requests are identical, MessageBody byte for byte
    expected = {"QueueUrl": pinned.queue_url, "MessageBody": galley}
    if "delay_seconds" in options:
        expected["DelaySeconds"] = options["delay_seconds"]
    assert celery == expected


def test_plain_json_bodies_match_too(pinned: CelerySide) -> None:
    # GIVEN kombu with sqs_base64_encoding off (as tools other than kombu may send)
    pinned.app.conf.broker_transport_options = {
        **pinned.app.conf.broker_transport_options,
        "sqs_base64_encoding": False,
    }
    celery = pinned.send(TASK, args=[[], "b", "p"], task_id="t-1", reply_to=REPLY_TO)
    galley = codec.encode(
        TASK,
        [[], "b", "p"],
        queue=pinned.queue,
        task_id="t-1",
        reply_to=REPLY_TO,
        delivery_tag=TAG,
        sqs_base64=False,
    )
    # THEN the body is the envelope JSON itself, identical to Galley's
    assert celery["MessageBody"].startswith('{"body": ')
    assert celery["MessageBody"] == galley
    # AND it decodes like a base64 one
    assert codec.decode(galley) == codec.decode(base64.b64encode(galley.encode()).decode())


#: Sender-made-up values: (section, field). Everything else must be equal without pinning.
UNPINNED = {
    ("headers", "id"): "the task id, uuid4 per call",
    ("headers", "root_id"): "defaults to the task id",
    ("headers", "eta"): "now + countdown, each sender's clock",
    ("properties", "correlation_id"): "the task id",
    ("properties", "reply_to"): "Celery's per-thread app oid; Galley's equivalent",
    ("properties", "delivery_tag"): "kombu's uuid4 per message",
}


def test_unpinned_messages_differ_only_in_ids_and_clock(celery_side: CelerySide) -> None:
    # GIVEN the same call, nothing pinned
    args, kwargs = ([{"name": "a", "email": "a@x"}], "bucket", "in/"), {"note": "ü"}
    celery = envelope(celery_side.send(TASK, args=args, kwargs=kwargs, countdown=30)["MessageBody"])
    galley = envelope(
        codec.encode(TASK, args, kwargs, queue=celery_side.queue, countdown=30, delay_seconds=30)
    )
    # THEN the SQS delay is the countdown's, less any whole second Celery's clock moved on
    # between its eta and its publish hook (a busy machine)
    delays = [m["properties"].pop("delay_seconds") for m in (celery, galley)]
    assert delays[1] == 30
    assert 30 - 5 < delays[0] <= 30
    # AND exactly the made-up fields differ, and they have the right shape
    differing = {
        (section, key)
        for section in ("headers", "properties")
        for key in celery[section]
        if celery[section][key] != galley[section][key]
    }
    assert differing == set(UNPINNED)
    for message in (celery, galley):
        for section, key in UNPINNED:
            if key != "eta":
                uuid.UUID(message[section][key])
        assert message["headers"]["id"] == message["headers"]["root_id"]
        assert message["headers"]["id"] == message["properties"]["correlation_id"]
    etas = [datetime.fromisoformat(m["headers"]["eta"]) for m in (celery, galley)]
    assert abs(etas[0] - etas[1]) < timedelta(seconds=5)
    assert all(eta.utcoffset() == timedelta(0) for eta in etas)
    # AND once the made-up fields are blanked, the envelopes are equal, body included
    for message in (celery, galley):
        for section, key in UNPINNED:
            message[section][key] = "*"
    assert celery == galley


def test_producer_request_is_celerys_with_sqs_delay(celery_side: CelerySide) -> None:
    # GIVEN the producer's countdown, and Celery asked for the same SQS delay
    task_id = str(uuid.uuid4())
    sender.enqueue(
        TASK,
        [[], "b", "p"],
        countdown=45,
        task_id=task_id,
        client=celery_side.sqs,
        settings=ProducerSettings(queue_url=celery_side.queue_url),
    )
    galley = celery_side.sent[-1]
    celery = celery_side.send(
        TASK, args=[[], "b", "p"], countdown=45, delay_seconds=45, task_id=task_id
    )
    # THEN both requests delay the message by 45 s and carry the same envelope
    assert galley.keys() == celery.keys() == {"QueueUrl", "MessageBody", "DelaySeconds"}
    assert galley["DelaySeconds"] == celery["DelaySeconds"] == 45
    assert galley["QueueUrl"] == celery["QueueUrl"]
    ours, theirs = envelope(galley["MessageBody"]), envelope(celery["MessageBody"])
    for message in (ours, theirs):
        message["headers"]["eta"] = "*"
        message["properties"]["reply_to"] = message["properties"]["delivery_tag"] = "*"
    assert ours == theirs
    assert ours["properties"]["delay_seconds"] == 45


def test_galley_app_carries_a_countdown_as_sqs_delay(celery_side: CelerySide) -> None:
    # GIVEN Galley's Celery app, a countdown and nothing else (stock Celery would only set an
    # eta header: the message is receivable at once and a worker holds it in memory)
    request = celery_side.send(TASK, args=[1], countdown=600)
    # THEN runner.runtime.publish's hook made it an SQS delay: nobody holds the message (the
    # delay is what remains of the countdown when the hook runs: a busy machine loses a second)
    assert 595 <= request["DelaySeconds"] <= 600
    message = codec.decode(request["MessageBody"])
    assert message.eta is not None
    assert message.delay_seconds == request["DelaySeconds"]


def test_delays_beyond_sqs_limit_get_one_hop(celery_side: CelerySide) -> None:
    request = celery_side.send(TASK, args=[1], countdown=2000)
    assert request["DelaySeconds"] == 900  # the rest is hopped by whoever receives it


# --- decoding Celery's messages ---


def test_decode_reads_what_celery_put_on_the_queue(pinned: CelerySide) -> None:
    # GIVEN a message stock Celery sent, as boto3 receives it
    pinned.send(
        TASK,
        args=[[{"name": "a"}], "bucket", "in/"],
        kwargs={"when": datetime(2020, 5, 6, 7, 8, tzinfo=UTC)},
        task_id="t-42",
        parent_id="p-1",
        countdown=90,
        retries=2,
    )
    message = codec.decode(pinned.receive_one()["Body"])
    # THEN every part is where the consumer expects it
    assert message.task == TASK
    assert message.id == "t-42"
    assert message.args == [[{"name": "a"}], "bucket", "in/"]
    assert message.kwargs == {"when": datetime(2020, 5, 6, 7, 8, tzinfo=UTC)}
    assert message.eta == NOW + timedelta(seconds=90)
    assert message.retries == 2
    assert (message.root_id, message.parent_id) == ("t-42", "p-1")
    assert message.delivery_info == {"exchange": "", "routing_key": "jobs"}
    assert message.routing_key == "jobs"
    assert message.properties["delivery_tag"] == TAG
    assert message.headers["argsrepr"] == "[[{'name': 'a'}], 'bucket', 'in/']"
    assert message.embed == {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


ROUND_TRIPS: dict[str, codec.TaskMessage] = {
    "plain": codec.build("t.a", (1, "x"), {"k": [1, 2]}, queue="q"),
    "typed arguments": codec.build(
        "t.b",
        [datetime(2020, 1, 1, 1, 1, tzinfo=UTC), b"\x00\xff", b"ok", Decimal("2.50")],
        {"u": uuid.UUID(int=9), "d": date(2021, 2, 3), "t": time(4, 5)},
        queue="q",
        countdown=5,
        delay_seconds=5,
        expires=120,
        parent_id="p",
        root_id="r",
        retries=1,
    ),
    "eta datetime": codec.build("t.c", queue="q", eta=datetime(2030, 1, 1, tzinfo=UTC)),
}


@pytest.mark.parametrize("message", ROUND_TRIPS.values(), ids=list(ROUND_TRIPS))
@pytest.mark.parametrize("sqs_base64", [True, False])
def test_decode_of_encode_is_identity(message: codec.TaskMessage, sqs_base64: bool) -> None:
    assert codec.decode(codec.encode_message(message, sqs_base64=sqs_base64)) == message


def test_a_raw_body_without_body_encoding_round_trips() -> None:
    # GIVEN a message whose body is JSON text, not base64 (body_encoding absent)
    message = codec.build("t.a", [1], queue="q")
    raw = replace(message, properties={**message.properties, "body_encoding": None})
    body = codec.encode_message(raw)
    assert envelope(body)["body"].startswith("[[1], {}")
    # THEN it decodes to the same call
    assert codec.decode(body) == raw
    assert codec.decode(body).args == [1]


@pytest.mark.parametrize("sqs_base64", [True, False])
def test_with_headers_changes_only_the_headers_named(sqs_base64: bool) -> None:
    # GIVEN a message with retries spent, typed arguments, an idempotency key, a payload pointer
    message = codec.build(
        "t.a",
        [datetime(2020, 1, 1, tzinfo=UTC), Decimal("1.10"), b"\xff"],
        {"k": "é"},
        queue="q",
        retries=3,
        expires=60,
        now=NOW,
        extra_headers={
            codec.IDEMPOTENCY_HEADER: "order-1",
            "galley_payload": {"bucket": "b", "key": "payloads/x/y"},
        },
    )
    body = codec.encode_message(message, sqs_base64=sqs_base64)
    # WHEN its retry count is set back to 0
    changed = codec.with_headers(body, retries=0)
    # THEN it decodes to the same message with only that header changed
    assert codec.decode(changed) == replace(message, headers={**message.headers, "retries": 0})
    # AND the arguments travel byte for byte, in the same outer form (base64 or plain JSON)
    outer = (lambda text: json.loads(base64.b64decode(text))) if sqs_base64 else json.loads
    assert outer(changed)["body"] == outer(body)["body"]
    assert list(outer(changed)["headers"]) == list(outer(body)["headers"])  # Celery's order


def test_with_headers_refuses_what_decode_refuses() -> None:
    with pytest.raises(WireError, match="neither base64 nor a JSON object"):
        codec.with_headers("not a message {", retries=0)


def test_build_derived_fields() -> None:
    message = codec.build("t.a", (1,), queue="q", countdown=10, delay_seconds=10, now=NOW)
    assert message.args == [1]
    assert message.headers["argsrepr"] == "(1,)"  # Celery's repr of what was passed
    assert message.eta == NOW + timedelta(seconds=10)
    assert message.delay_seconds == 10
    assert message.expires is None
    assert message.routing_key == "q"
    assert message.root_id == message.id == message.properties["correlation_id"]


@pytest.mark.parametrize(
    ("call", "error", "reason"),
    [
        ({"args": "abc"}, TypeError, "args must be a list or tuple"),
        ({"kwargs": [1]}, TypeError, "kwargs must be a mapping"),
        ({"countdown": 1, "eta": NOW}, ValueError, "countdown or eta, not both"),
        ({"countdown": 1, "now": datetime(2020, 1, 1)}, ValueError, "timezone-aware"),
        ({"expires": -1}, ValueError, "expires must be >= 0"),
        ({"queue": ""}, ValueError, "queue"),
    ],
)
def test_build_refuses_bad_calls(call: dict[str, Any], error: type, reason: str) -> None:
    arguments: dict[str, Any] = {"queue": "q", **call}
    with pytest.raises(error, match=reason):
        codec.build("t.a", **arguments)


def test_arguments_that_are_not_json_are_refused_on_encode() -> None:
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        codec.encode("t.a", [object()], queue="q")


# --- what cannot be decoded, and why ---


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _tampered(change: Any) -> str:
    """A good Galley message, its envelope changed by ``change(envelope)``."""
    document = envelope(codec.encode("t.a", [1], queue="q"))
    change(document)
    return _b64(json.dumps(document))


BAD: dict[str, tuple[str, str]] = {
    "empty": ("  ", "empty"),
    "garbage": ("not base64 {{{", "neither base64 nor a JSON object"),
    "base64 of binary": ("abc=", "not UTF-8"),
    "base64 of text": (_b64("hello world"), "kombu envelope is not JSON"),
    "base64 of a JSON array": (_b64("[1, 2]"), "JSON list, not an object"),
    "JSON but not kombu": (_b64('{"json": "but not kombu"}'), "not a kombu message"),
    "yaml content": (
        _tampered(lambda e: e.update({"content-type": "application/x-yaml"})),
        "unsupported content-type 'application/x-yaml'",
    ),
    "missing task header": (_tampered(lambda e: e["headers"].pop("task")), "missing header 'task'"),
    "missing id header": (_tampered(lambda e: e["headers"].pop("id")), "missing header 'id'"),
    "body not base64": (_tampered(lambda e: e.update(body="%%%")), "is not base64"),
    "body not protocol 2": (
        _tampered(lambda e: e.update(body=_b64("[1, 2]"))),
        r"not a protocol-2 \[args, kwargs, embed\]",
    ),
    "bad eta": (
        _tampered(lambda e: e["headers"].update(eta="tomorrow")),
        "header 'eta' is not an ISO 8601 datetime",
    ),
    "unknown type marker": (
        _tampered(lambda e: e.update(body=_b64('[[{"__type__": "x", "__value__": 1}], {}, {}]'))),
        "unsupported kombu JSON type marker 'x'",
    ),
    "unsupported body_encoding": (
        _tampered(lambda e: e["properties"].update(body_encoding="rot13")),
        "unsupported body_encoding 'rot13'",
    ),
}


@pytest.mark.parametrize(("body", "reason"), BAD.values(), ids=list(BAD))
def test_bad_messages_raise_wire_error_with_reason(body: str, reason: str) -> None:
    with pytest.raises(WireError, match=reason) as caught:
        codec.decode(body)
    assert isinstance(caught.value, ValueError)
    assert caught.value.reason == str(caught.value)


def test_celery_pickle_message_is_refused(celery_side: CelerySide) -> None:
    # GIVEN a well-formed task message whose body kombu serialised with pickle
    with celery_side.app.producer_or_acquire() as publisher:
        publisher.publish(
            [[[], "bucket", "prefix"], {}, {}],
            serializer="pickle",
            routing_key=celery_side.queue,
            exchange="",
            headers={"task": TASK, "id": "t-1", "lang": "py"},
        )
    body = celery_side.receive_one()["Body"]
    # THEN decoding refuses it, naming pickle, before the body is touched
    with pytest.raises(WireError, match="'application/x-python-serialize' .*pickle"):
        codec.decode(body)


def test_celery_protocol_1_message_is_refused(celery_side: CelerySide) -> None:
    celery_side.app.conf.task_protocol = 1
    celery_side.send(TASK, args=[1])
    with pytest.raises(WireError, match="protocol 1"):
        codec.decode(celery_side.receive_one()["Body"])


def test_celery_compressed_message_is_refused(celery_side: CelerySide) -> None:
    celery_side.send(TASK, args=[1], compression="zlib")
    with pytest.raises(WireError, match="compressed body"):
        codec.decode(celery_side.receive_one()["Body"])


# --- argsrepr/kwargsrepr: the port of Celery's saferepr ---


def _value(rnd: random.Random, depth: int = 0) -> Any:
    pick = rnd.random()
    if depth > 4 or pick < 0.45:
        text = "".join(rnd.choice(string.printable + "é'\"") for _ in range(rnd.randint(0, 40)))
        return rnd.choice(
            [rnd.randint(-(10**6), 10**6), rnd.random(), True, None, text, "w " * 300]
            + [b"ab'c", b"\xff\x00", Decimal("1.50"), date(2020, 1, 1)]
        )
    if pick < 0.65:
        return [_value(rnd, depth + 1) for _ in range(rnd.randint(0, 6))]
    if pick < 0.75:
        return tuple(_value(rnd, depth + 1) for _ in range(rnd.randint(0, 3)))
    if pick < 0.8:
        return rnd.choice([set(range(rnd.randint(0, 3))), frozenset({1})])
    keys = ["a", "b'", "k" * 30, 1, 2.5]
    return {rnd.choice(keys): _value(rnd, depth + 1) for _ in range(rnd.randint(0, 5))}


def test_saferepr_matches_celerys() -> None:
    from celery.utils.saferepr import saferepr

    rnd = random.Random(20260101)  # noqa: S311 - test data, not crypto
    compared = 0
    for _ in range(400):
        value = _value(rnd)
        for maxlen in (None, 0, 1, 7, 64, 1024, rnd.randint(1, 2000)):
            for maxlevels in (0, 1, 3):
                assert codec.saferepr(value, maxlen, maxlevels) == saferepr(
                    value, maxlen, maxlevels
                ), (value, maxlen, maxlevels)
                compared += 1
    assert compared == 400 * 7 * 3
