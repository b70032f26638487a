"""Galley's transport: one custody per process, restores that never release a running task."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import botocore
import pytest
from kombu import Connection
from kombu.utils.encoding import bytes_to_str

from runner.core import aws
from runner.settlement import rules
from runner.wire import codec
from runner.worker import custody as custody_module
from runner.worker import transport
from runner.worker.custody import Options
from runner.worker.ledger import Entry, Ledger

Q = "http://127.0.0.1:1/123456789012/jobs"


class Recorder:
    """A custody that records decisions instead of settling them on SQS."""

    def __init__(self) -> None:
        self.ledger = Ledger()
        self.decided: list[tuple[str, str, str | None]] = []

    def settle(self, receipt: str, action: str, reason: str | None = None) -> bool:
        self.decided.append((receipt, action, reason))
        return True


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    held = Recorder()
    monkeypatch.setattr(transport, "custody", lambda *a, **k: held)
    return held


def test_a_restore_keeps_running_tasks_and_releases_the_rest(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 2: after a lost connection kombu's restore released the messages of tasks still
    running (visibility 0): another worker ran them a second time."""
    # GIVEN a task that has started and one that has not
    monkeypatch.setattr(transport, "_started_tags", lambda: {"running"})
    channel: Any = SimpleNamespace()
    # WHEN Celery's consumer closes its channel and restores what it did not acknowledge
    transport.Channel._restore(channel, SimpleNamespace(delivery_tag="running"))
    transport.Channel._restore(channel, SimpleNamespace(delivery_tag="waiting"))
    # THEN only the one that has not started is released
    assert recorder.decided == [("waiting", "release", None)]


def test_ack_and_reject_settle_by_receipt_whatever_the_message_names(recorder: Recorder) -> None:
    acked: list[str] = []
    channel: Any = SimpleNamespace(qos=SimpleNamespace(ack=acked.append))
    transport.Channel.basic_ack(channel, "r-ack")
    transport.Channel.basic_reject(channel, "r-requeue", requeue=True)
    transport.Channel.basic_reject(channel, "r-reject", requeue=False)
    assert recorder.decided == [
        ("r-ack", "delete", None),
        ("r-requeue", "release", None),
        ("r-reject", "dead-letter", transport.DEFAULT_REJECT_REASON),
    ]
    assert acked == ["r-ack", "r-requeue", "r-reject"]  # kombu's bookkeeping freed each slot


def heartbeats() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "galley-visibility-heartbeat")


def test_one_custody_and_one_heartbeat_per_process_across_connections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Defect 2: each consumer restart started another heartbeat and never stopped the old."""
    monkeypatch.setattr(custody_module, "_custody", {})
    transport.register()
    options = {
        "region": "us-east-1",
        "predefined_queues": {"jobs": {"url": Q}},
        "galley": {"visibility_timeout": 30, "heartbeat": True},
    }
    before = heartbeats()
    # WHEN the consumer connects three times (a start and two restarts)
    transports = [
        Connection("galley-sqs://", transport_options=options).transport for _ in range(3)
    ]
    # THEN they share one custody, with one heartbeat
    assert len({id(t.galley) for t in transports}) == 1
    assert heartbeats() - before == 1
    assert transports[0].galley.options == Options.from_transport_options(options)
    beat = transports[0].galley.beat
    assert beat is not None
    beat.stop()


@pytest.mark.parametrize(
    ("header", "value", "reason"),
    [
        ("timelimit", ["abc", None], "not [hard, soft] seconds"),
        ("timelimit", [1, 2, 3], "not [hard, soft] seconds"),
        ("timelimit", "60", "not [hard, soft] seconds"),
        ("retries", "3", "not a count"),
        ("retries", -1, "not a count"),
        ("retries", True, "not a count"),
        ("shadow", ["x"], "is not a string"),
        ("root_id", 7, "is not a string"),
    ],
)
def test_headers_celery_cannot_take_are_refused(header: str, value: Any, reason: str) -> None:
    message = codec.build("tasks.x", [], queue="jobs")
    message.headers[header] = value
    verdict = judge(codec.encode_message(message))
    assert verdict.action == "dead-letter"
    assert verdict.reason is not None and reason in verdict.reason


def test_celerys_own_headers_are_accepted() -> None:
    message = codec.build("tasks.x", [1], queue="jobs", retries=2)
    message.headers["timelimit"] = [30, 27.5]  # apply_async(time_limit=30, soft_time_limit=27.5)
    assert judge(codec.encode_message(message)).action == "run"


def judge(body: str) -> rules.Verdict:
    return rules.judge(body, now=datetime.now(UTC), is_known=lambda name: True, max_hop=900)


def test_a_connection_that_only_sends_starts_no_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a process that only sends jobs (a web app) and has no custody yet
    monkeypatch.setattr(custody_module, "_custody", {})
    transport.register()
    before = {t.name for t in threading.enumerate()}
    # WHEN it opens a connection and closes it
    options = {"region": "us-east-1", "predefined_queues": {"jobs": {"url": Q}}}
    with Connection("galley-sqs://", transport_options=options) as connection:
        assert connection.default_channel is not None
    # THEN no settler or heartbeat was started for it
    assert {t.name for t in threading.enumerate()} - before == set()
    assert custody_module.current() is None


@pytest.mark.parametrize("delivery_info", [{}, {"exchange": "celery", "routing_key": "x"}, None])
def test_a_message_is_delivered_on_its_queue_through_the_default_exchange(
    delivery_info: dict[str, Any] | None,
) -> None:
    # GIVEN a message whose delivery_info names another exchange and routing key, or none
    envelope: dict[str, Any] = {"properties": {"delivery_info": delivery_info}}
    entry = Entry(queue_url=Q, receipt="r", message_id="m", body="")
    # WHEN the transport hands it to Celery as received on the queue "long"
    payload = transport.Transport._payload(envelope, "long", entry, {"MessageId": "m"})
    # THEN it was delivered on "long" through the default exchange: a retry, which Celery sends
    # to the exchange and routing key it was delivered with, goes back to the queue (a named
    # exchange is bound to no queue on SQS, and the retry would be dropped)
    info = payload["properties"]["delivery_info"]
    assert (info["exchange"], info["routing_key"]) == ("", "long")


class _Sent(Exception):
    pass


def test_the_sending_client_names_galleys_user_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an application id, and a connection with the client-config the app gives kombu
    for name, value in {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SDK_UA_APP_ID", "billing-jobs")
    transport.register()
    options = {
        "region": "us-east-1",
        "predefined_queues": {"jobs": {"url": Q}},
        "client-config": {"read_timeout": 20, "retries": {"mode": "standard", "max_attempts": 5}},
    }
    sent: list[str] = []

    def stop(request: Any, **_: Any) -> None:
        sent.append(bytes_to_str(request.headers["User-Agent"]))
        raise _Sent

    # WHEN Celery sends a job through kombu's SQS client (task code, retries, chords, web apps)
    with Connection("galley-sqs://", transport_options=options) as connection:
        sqs = connection.default_channel.sqs("jobs")
        sqs.meta.events.register("before-send", stop)
        with pytest.raises(_Sent):
            sqs.send_message(QueueUrl=Q, MessageBody="{}")
    # THEN it names Galley's User-Agent, built once, with the application id; client-config holds
    assert sent == [f"{aws.USER_AGENT} app/billing-jobs Botocore/{botocore.__version__}"]
    assert sqs.meta.config.read_timeout == 20
    assert sqs.meta.config.retries["total_max_attempts"] == 6
