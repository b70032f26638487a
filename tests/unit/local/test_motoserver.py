"""runner.local.motoserver: moto's conditional writes made atomic, as S3's are."""

from __future__ import annotations

import contextlib
import datetime
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st
from moto.s3.models import S3Backend

from runner.local import motoserver
from runner.local.process import wait_for

BUCKET = "cas"


@pytest.fixture
def s3(moto_in_process: None) -> Any:
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


def test_of_two_writers_holding_the_same_etag_exactly_one_wins(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an object, and a moto whose writes take a while (as a busy server's do)
    etag = s3.put_object(Bucket=BUCKET, Key="counter", Body=b"0")["ETag"]
    slow_put = S3Backend.put_object

    def put_object(self: S3Backend, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.2)
        return slow_put(self, *args, **kwargs)

    monkeypatch.setattr(S3Backend, "put_object", put_object)
    motoserver.serialize_s3_objects()
    # WHEN two writers replace it at once, each on the ETag it read
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def write(body: bytes) -> None:
        barrier.wait()
        try:
            s3.put_object(Bucket=BUCKET, Key="counter", Body=body, IfMatch=etag)
            outcomes.append("written")
        except ClientError as error:
            outcomes.append(error.response["Error"]["Code"])

    writers = [threading.Thread(target=write, args=(body,)) for body in (b"1", b"2")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    # THEN exactly one wins; the other is told its precondition failed
    assert sorted(outcomes) == ["PreconditionFailed", "written"]


def test_serializing_twice_wraps_once() -> None:
    motoserver.serialize_s3_objects()
    wrapped = motoserver.S3Response.key_response
    motoserver.serialize_s3_objects()
    assert motoserver.S3Response.key_response is wrapped


def test_two_receives_at_the_same_moment_never_return_the_same_message(
    moto_in_process: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto checks a message's visibility, then marks it received, without a lock: two receives
    at once both took the one message (a job run twice, in the chaos suite's "moto receive
    race"). SQS hands a message to one receiver."""
    from moto.sqs.models import Message, SQSBackend

    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="race")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="once")
    # GIVEN a moto whose receives take a while between the check and the mark
    slow_mark = Message.mark_received

    def mark_received(self: Message, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.2)
        return slow_mark(self, *args, **kwargs)

    monkeypatch.setattr(Message, "mark_received", mark_received)
    monkeypatch.setattr(SQSBackend, "receive_message", SQSBackend.receive_message)  # restored after
    motoserver.serialize_sqs_receives()
    # WHEN two receivers poll at the same moment
    got: list[str] = []
    barrier = threading.Barrier(2)

    def receive() -> None:
        barrier.wait()
        answer = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, VisibilityTimeout=30)
        got.extend(m["Body"] for m in answer.get("Messages", []))

    receivers = [threading.Thread(target=receive) for _ in range(2)]
    for receiver in receivers:
        receiver.start()
    for receiver in receivers:
        receiver.join()
    # THEN one of them has it
    assert got == ["once"]


def test_a_long_poll_waiting_on_an_empty_queue_holds_up_no_other_receive(
    moto_in_process: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.sqs.models import SQSBackend

    monkeypatch.setattr(SQSBackend, "receive_message", SQSBackend.receive_message)
    motoserver.serialize_sqs_receives()
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="waits")["QueueUrl"]
    # GIVEN a long poll waiting on the empty queue
    waiting = threading.Thread(
        target=lambda: sqs.receive_message(QueueUrl=url, WaitTimeSeconds=3), daemon=True
    )
    waiting.start()
    time.sleep(0.2)  # let it start waiting (the state under test, not an outcome)
    # WHEN a message is sent and another receiver looks without waiting
    sqs.send_message(QueueUrl=url, MessageBody="now")
    started = time.monotonic()
    answer = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)
    # THEN it is answered at once (with the message, or empty if the waiting poll took it)
    assert time.monotonic() - started < 1.5
    assert len(answer.get("Messages", [])) <= 1
    waiting.join(5)


def test_a_receive_does_not_compute_the_queue_s_attributes_for_each_message(
    moto_in_process: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto read the retention period of each message it handed out through every attribute of
    the queue, each count a pass over all its messages: on a queue of 600, moto's CPU, not the
    worker, set the benchmark's pace."""
    from moto.sqs.models import Queue, SQSBackend

    monkeypatch.setattr(
        SQSBackend,
        "is_message_valid_based_on_retention_period",
        SQSBackend.is_message_valid_based_on_retention_period,
    )
    motoserver.lighten_sqs_receives()
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="light")["QueueUrl"]
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": str(i)} for i in range(10)]
    )
    computed: list[int] = []
    attributes = Queue.attributes
    monkeypatch.setattr(
        Queue, "attributes", property(lambda q: computed.append(1) or attributes.fget(q))
    )
    # WHEN ten messages are received
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    # THEN all ten came, and the queue's attributes were not computed once per message
    assert len(got) == 10
    assert len(computed) <= 1


def test_a_send_does_not_count_the_queue_s_messages(
    moto_in_process: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto read one attribute of the queue for each message sent (ContentBasedDeduplication)
    through all of them, three counts each a pass over every message: sending to a queue of N
    messages cost 3N passes, and a backlog slowed every producer and every worker."""
    from moto.sqs.models import Queue, SQSBackend

    monkeypatch.setattr(SQSBackend, "send_message", SQSBackend.send_message)
    computed: list[int] = []
    attributes = Queue.attributes
    monkeypatch.setattr(
        Queue, "attributes", property(lambda q: computed.append(1) or attributes.fget(q))
    )
    motoserver.lighten_sqs_sends()
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="sent")["QueueUrl"]
    computed.clear()
    # WHEN twenty messages are sent, one by one and in a batch
    for i in range(10):
        sqs.send_message(QueueUrl=url, MessageBody=str(i))
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": str(i)} for i in range(10)]
    )
    # THEN the queue's attributes were not computed, and all twenty are there
    assert computed == []
    assert (
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"][
            "ApproximateNumberOfMessages"
        ]
        == "20"
    )


def test_a_fifo_queue_still_deduplicates_by_content_after_the_send_is_lightened(
    moto_in_process: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.sqs.models import Queue, SQSBackend

    monkeypatch.setattr(SQSBackend, "send_message", SQSBackend.send_message)
    monkeypatch.setattr(Queue, "attributes", Queue.attributes)
    motoserver.lighten_sqs_sends()
    sqs = boto3.client("sqs", region_name="us-east-1")
    deduplicating = {"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    url = sqs.create_queue(QueueName="d.fifo", Attributes=deduplicating)["QueueUrl"]
    plain = sqs.create_queue(QueueName="p.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    for queue in (url, url, plain):
        sqs.send_message(
            QueueUrl=queue,
            MessageBody="same",
            MessageGroupId="g",
            **({} if queue == url else {"MessageDeduplicationId": "x"}),
        )
    # THEN the same content sent twice is kept once, on the queue that deduplicates by content
    counts = [
        sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"
        ]["ApproximateNumberOfMessages"]
        for q in (url, plain)
    ]
    assert counts == ["1", "1"]


def test_a_receive_reads_the_clock_without_building_datetimes_for_each_message(
    moto_in_process: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receive looks at every message of the queue, asking the time twice for each (visible?
    delayed?), and moto's clock built three datetime objects per question: on a backlog of a
    thousand, a receive cost moto more than the job it handed out."""
    import moto.core.utils
    from moto.sqs import models

    monkeypatch.setattr(models, "unix_time", models.unix_time)
    monkeypatch.setattr(models, "unix_time_millis", models.unix_time_millis)
    motoserver.quicken_sqs_clock()
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="backlog")["QueueUrl"]
    for _ in range(20):
        sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "x"} for i in range(10)]
        )
    built: list[int] = []
    utcnow = moto.core.utils.utcnow
    monkeypatch.setattr(moto.core.utils, "utcnow", lambda: built.append(1) or utcnow())
    # WHEN ten are received and the first is made visible again
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"], VisibilityTimeout=0
    )
    # THEN ten came, the clock built no datetime, and the queue counts as before
    assert len(got) == 10
    assert built == []
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (
        attributes["ApproximateNumberOfMessages"],
        attributes["ApproximateNumberOfMessagesNotVisible"],
    ) == ("191", "9")


@given(
    st.datetimes(min_value=datetime.datetime(1971, 1, 1), max_value=datetime.datetime(2200, 1, 1))
)
def test_the_quick_clock_tells_moto_s_time(moment: datetime.datetime) -> None:
    from moto.core import utils

    assert motoserver.quick_unix_time(moment) == utils.unix_time(moment)
    assert abs(motoserver.quick_unix_time() - utils.unix_time()) < 0.05


def test_a_message_past_its_queue_s_retention_is_not_handed_out(
    moto_in_process: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.sqs.models import SQSBackend

    monkeypatch.setattr(
        SQSBackend,
        "is_message_valid_based_on_retention_period",
        SQSBackend.is_message_valid_based_on_retention_period,
    )
    motoserver.lighten_sqs_receives()
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="old", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="fresh")
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=url)["Messages"]] == ["fresh"]
    sqs.send_message(QueueUrl=url, MessageBody="stale")
    # WHEN the retention clock has passed the second one's 60 s
    monkeypatch.setattr("moto.core.utils.unix_time", lambda *a: time.time() + 61)
    # THEN it is not handed out
    assert "Messages" not in sqs.receive_message(QueueUrl=url)


def test_moto_s_modules_are_listed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's dispatcher listed its package folders (a stat each) for every request."""
    import os

    from moto import backends

    monkeypatch.setattr(backends, "list_of_moto_modules", backends.list_of_moto_modules)
    listed: list[str] = []
    listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path: listed.append(path) or listdir(path))
    motoserver.remember_moto_modules()
    first = list(backends.list_of_moto_modules())
    second = list(backends.list_of_moto_modules())
    assert "sqs" in first and first == second
    assert len(listed) == 1


@contextlib.contextmanager
def _serving(app: Any) -> Iterator[tuple[int, motoserver.ThreadReuse]]:
    """werkzeug's threaded server running ``app`` on reused threads: (its port, the reuse)."""
    from werkzeug.serving import make_server

    before = threading.active_count()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    reuse = motoserver.reuse_threads(server, idle_seconds=0.2)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_port, reuse
    finally:
        server.shutdown()
        server.server_close()
        # its threads end once idle: none is left to later tests that count threads
        wait_for(lambda: threading.active_count() <= before, timeout=10, what="idle threads")


def test_connections_one_after_another_reuse_one_thread() -> None:
    """Issue 12: moto's answers close every connection, and werkzeug's threaded server started a
    thread for each one, its accept loop waiting for the thread to run (the GIL, under load)."""
    import http.client

    served: list[threading.Thread] = []  # the threads themselves: an ident can be reused

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        served.append(threading.current_thread())
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    with _serving(app) as (port, reuse):
        for _ in range(20):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/")
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, b"ok")
            connection.close()
    # one thread, or a few when a connection came before the last thread had closed its own
    # (werkzeug's threaded server alone: 20)
    assert len(served) == 20
    assert len({id(thread) for thread in served}) <= 5
    assert reuse.started <= 5


def test_connections_at_once_each_get_a_thread_and_none_waits() -> None:
    # a long poll holds its thread: a request arriving meanwhile gets another one at once
    import http.client

    release = threading.Event()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/hold":
            release.wait(10)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    held = []
    with _serving(app) as (port, reuse):
        try:
            for _ in range(3):  # three long polls in flight
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                connection.request("GET", "/hold")
                held.append(connection)
            quick = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            quick.request("GET", "/")
            assert quick.getresponse().read() == b"ok"  # not behind the three
            release.set()
            assert [c.getresponse().read() for c in held] == [b"ok"] * 3
        finally:
            release.set()  # a held request never outlives the test
    assert reuse.started == 4


def test_deletes_and_a_send_at_the_same_moment_lose_nothing_and_bring_nothing_back(
    moto_in_process: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto deletes a message by rebuilding its queue's list of messages, without a lock: of two
    deletes at once (two workers acking) the last to finish put back the message the other had
    deleted, and it ran again a visibility timeout later (the chaos suite's 'other' duplicates);
    a message sent meanwhile could vanish from the queue."""
    from moto.sqs.models import Message, Queue, SQSBackend, sqs_backends

    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="writes")["QueueUrl"]
    for body in ("a", "b", "c", "d"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    handles = {
        m["Body"]: m["ReceiptHandle"]
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=4, VisibilityTimeout=60)[
            "Messages"
        ]
    }
    assert sorted(handles) == ["a", "b", "c", "d"]
    # GIVEN a moto whose deletes take a while to look through the queue
    slow_match = Message.had_receipt_handle

    def had_receipt_handle(self: Message, handle: str) -> bool:
        time.sleep(0.01)
        return slow_match(self, handle)

    monkeypatch.setattr(Message, "had_receipt_handle", had_receipt_handle)
    for name in ("delete_message", "add_message"):  # restored after the test
        monkeypatch.setattr(Queue, name, getattr(Queue, name))
    monkeypatch.setattr(SQSBackend, "receive_message", SQSBackend.receive_message)
    motoserver.serialize_sqs_receives()
    motoserver.serialize_sqs_queue_writes()
    # WHEN two messages are deleted and one is sent, at the same moment
    barrier = threading.Barrier(3)

    def at_once(call: Any, **kwargs: Any) -> threading.Thread:
        def run() -> None:
            barrier.wait()
            call(QueueUrl=url, **kwargs)

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    threads = [
        at_once(sqs.delete_message, ReceiptHandle=handles["a"]),
        at_once(sqs.delete_message, ReceiptHandle=handles["b"]),
        at_once(sqs.send_message, MessageBody="e"),
    ]
    for thread in threads:
        thread.join(10)
    # THEN both deleted messages are gone, and the sent one is there
    queue = sqs_backends["123456789012"]["us-east-1"].get_queue("writes")
    assert sorted(m.body for m in queue._messages) == ["c", "d", "e"]
