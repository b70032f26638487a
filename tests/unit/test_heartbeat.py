from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from runner.process import wait_for
from runner.worker.heartbeat import Beat, extend, receipts

Q1 = "http://127.0.0.1:1/123456789012/jobs"
Q2 = "http://127.0.0.1:1/123456789012/long"


def request(queue: str | None, handle: str) -> Any:
    info = {"sqs_message": {"ReceiptHandle": handle}, "sqs_queue": queue} if queue else {}
    return SimpleNamespace(message=SimpleNamespace(delivery_info=info))


class FakeSQS:
    def __init__(self, fail_queue: str | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail_queue = fail_queue

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[Any]) -> Any:  # noqa: N803
        self.calls.append({"QueueUrl": QueueUrl, "Entries": Entries})
        if QueueUrl == self.fail_queue:
            raise ConnectionError("endpoint unreachable")
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def test_receipts_group_by_queue_and_skip_non_sqs_requests() -> None:
    found = receipts([request(Q1, "a"), request(Q2, "b"), request(Q1, "a"), request(None, "x")])
    assert found == {Q1: ["a"], Q2: ["b"]}


def test_extend_batches_by_ten_and_survives_a_failing_queue() -> None:
    sqs = FakeSQS(fail_queue=Q2)
    handles = [f"h{i:02d}" for i in range(23)]
    extended = extend(sqs, {Q1: handles, Q2: ["z"]}, 120)
    assert extended == 23
    q1_calls = [c for c in sqs.calls if c["QueueUrl"] == Q1]
    assert [len(c["Entries"]) for c in q1_calls] == [10, 10, 3]
    assert {e["VisibilityTimeout"] for c in q1_calls for e in c["Entries"]} == {120}
    assert any(c["QueueUrl"] == Q2 for c in sqs.calls)


def test_beat_extends_while_running_and_stops() -> None:
    sqs = FakeSQS()
    running = [request(Q1, "r1")]
    beat = Beat(sqs, 30, interval=0.01, requests=lambda: list(running))
    beat.start()
    try:
        wait_for(lambda: len(sqs.calls) >= 2, timeout=5, what="two heartbeats")
        running.clear()  # the task ended: no more calls carry its handle
        seen = len(sqs.calls)
        wait_for(lambda: beat.is_alive(), timeout=1)
    finally:
        beat.stop()
        beat.join(timeout=5)
    assert not beat.is_alive()
    assert all(c["Entries"][0]["ReceiptHandle"] == "r1" for c in sqs.calls[:seen])
    assert len(sqs.calls) <= seen + 1
    assert Beat(sqs, 30).interval == 10  # a third of the visibility timeout
