"""Arguments too large for SQS travel through S3 (claim check): worker and Lambda consumer."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from runner.core.settings import ProducerSettings, load
from runner.local import embedded
from runner.local.process import Child, wait_for
from runner.producer import sender
from runner.wire import codec, payloads
from tests import support
from tests.e2e.test_reliability import TASKS

pytestmark = pytest.mark.e2e

FIVE_MIB = "x" * (5 * 1024 * 1024)


def payload_keys(stack: embedded.LocalResources) -> list[str]:
    _, s3 = support.clients(stack)
    listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix=payloads.PREFIX)
    return [o["Key"] for o in listed.get("Contents", [])]


def test_5_mib_argument_round_trips_through_a_worker(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    stack = make_stack()
    client = app_for(stack)
    # GIVEN a 5 MiB argument sent with apply_async (send_task), no worker yet
    result = client.send_task("reliability.measure", args=[FIVE_MIB], kwargs={"label": "big"})
    sqs, _ = support.clients(stack)
    (message,) = sqs.receive_message(QueueUrl=stack.queue_url, VisibilityTimeout=0)["Messages"]
    # THEN SQS carries a small message with a pointer; the arguments are in S3
    decoded = codec.decode(message["Body"])
    assert len(message["Body"]) < 10_000
    assert decoded.args == [] and decoded.kwargs == {}
    assert payloads.pointer_of(decoded.headers) is not None
    assert len(payload_keys(stack)) == 1
    # WHEN a worker runs it
    worker(stack, **TASKS)
    value = result.get(timeout=120)
    # THEN the task saw the real argument, and the payload is deleted once acknowledged
    assert value == {
        "size": len(FIVE_MIB),
        "sha256": hashlib.sha256(FIVE_MIB.encode()).hexdigest(),
        "label": "big",
    }
    wait_for(lambda: payload_keys(stack) == [], timeout=30, what="the payload to be deleted")


def test_message_just_under_the_threshold_stays_inline(
    attach: embedded.LocalResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the producer's threshold and an argument whose message is just below it
    threshold = 64 * 1024
    monkeypatch.setenv("GALLEY_PAYLOAD_THRESHOLD_BYTES", str(threshold))
    settings = load(ProducerSettings)
    blob = "y" * 30_000
    while True:  # grow the argument until the message is within 200 bytes of the threshold
        call = sender.Call("reliability.measure", [blob])
        size = len(sender.message_request(call, attach.queue_url)[1]["MessageBody"])
        if size > threshold - 200:
            break
        blob += "y" * max(1, (threshold - 200 - size) // 2)
    assert size <= threshold
    sender.enqueue("reliability.measure", [blob], settings=settings)
    sender.enqueue("reliability.measure", [blob + "y" * 300], settings=settings)
    sqs, _ = support.clients(attach)
    bodies = [
        codec.decode(m["Body"])
        for m in sqs.receive_message(QueueUrl=attach.queue_url, MaxNumberOfMessages=10)["Messages"]
    ]
    inline = [b for b in bodies if payloads.pointer_of(b.headers) is None]
    offloaded = [b for b in bodies if payloads.pointer_of(b.headers) is not None]
    # THEN the one under the threshold is inline, the one over it went through S3
    assert [len(b.args[0]) for b in inline] == [len(blob)]
    assert [b.args for b in offloaded] == [[]]
    assert json.loads(offloaded[0].headers["argsrepr"].replace("'", '"'))[0].startswith("yyy")
    assert len(payload_keys(attach)) == 1
