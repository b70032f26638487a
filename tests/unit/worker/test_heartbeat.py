from __future__ import annotations

from typing import Any

from runner.local.process import wait_for
from runner.worker.heartbeat import Beat, extend
from runner.worker.ledger import Ledger

Q1 = "http://127.0.0.1:1/123456789012/jobs"
Q2 = "http://127.0.0.1:1/123456789012/long"


class FakeSQS:
    def __init__(self, fail_queue: str | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail_queue = fail_queue

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[Any]) -> Any:  # noqa: N803
        self.calls.append({"QueueUrl": QueueUrl, "Entries": Entries})
        if QueueUrl == self.fail_queue:
            raise ConnectionError("endpoint unreachable")
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def test_extend_batches_by_ten_and_survives_a_failing_queue() -> None:
    sqs = FakeSQS(fail_queue=Q2)
    handles = [f"h{i:02d}" for i in range(23)]
    extended = extend(sqs, {Q1: handles, Q2: ["z"]}, 120)
    assert extended == 23
    q1_calls = [c for c in sqs.calls if c["QueueUrl"] == Q1]
    assert [len(c["Entries"]) for c in q1_calls] == [10, 10, 3]
    assert {e["VisibilityTimeout"] for c in q1_calls for e in c["Entries"]} == {120}
    assert any(c["QueueUrl"] == Q2 for c in sqs.calls)


def test_beat_extends_every_held_message_until_it_is_settled() -> None:
    # GIVEN a ledger holding one message per queue, one of them being settled
    ledger = Ledger()
    ledger.add(Q1, {"ReceiptHandle": "r1", "MessageId": "m1", "Body": "x"})
    ledger.add(Q2, {"ReceiptHandle": "r2", "MessageId": "m2", "Body": "y"})
    ledger.decide("r2", "delete")
    sqs = FakeSQS()
    beat = Beat(sqs, 30, ledger.by_queue, interval=0.01)
    beat.start()
    try:
        # WHEN it beats
        wait_for(lambda: len(sqs.calls) >= 4, timeout=5, what="two rounds of heartbeats")
        # THEN both are extended on their own queue, settling or not
        assert {c["QueueUrl"] for c in sqs.calls} == {Q1, Q2}
        # AND once they leave the ledger, no call carries them any more
        ledger.forget("r1")
        ledger.forget("r2")
        seen = len(sqs.calls)
        wait_for(lambda: beat.is_alive(), timeout=1)
    finally:
        beat.stop()
        beat.join(timeout=5)
    assert not beat.is_alive()
    assert len(sqs.calls) <= seen + 2
    assert Beat(sqs, 30, ledger.by_queue).interval == 10  # a third of the visibility timeout


def test_a_failing_ledger_read_does_not_stop_the_beat() -> None:
    calls: list[int] = []

    def held() -> dict[str, list[str]]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("set changed size during iteration")
        return {}

    beat = Beat(FakeSQS(), 30, held, interval=0.01)
    beat.start()
    try:
        wait_for(lambda: len(calls) >= 3, timeout=5, what="the beat to go on after an error")
    finally:
        beat.stop()
        beat.join(timeout=5)
