"""runner.ops.sqs_sweep.Sweep against a fake SQS whose clock runs: a long sweep sees every message.

Found by the chaos run at N = 10,000: reading a dead-letter queue of ~800 messages from a busy moto
took longer than the sweep's visibility timeout, the first messages came back, a receive brought
nothing new, and the sweep stopped with half the queue unread (`galley dlq list` and `redrive
--all` use the same sweep).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from runner.ops.sqs_sweep import Sweep


@dataclass
class _Message:
    id: str
    visible_at: float = 0.0
    receipt: int = 0


class FakeSQS:
    """One queue; a receive takes ``step`` seconds of its clock (it scans the queue: slow on a busy
    endpoint), a visibility change a tenth of that (it looks up receipt handles)."""

    def __init__(self, n: int, step: float) -> None:
        self.now = 0.0
        self.step = step
        self.messages = [_Message(f"m{i}") for i in range(n)]
        self.calls: Counter[str] = Counter()

    def clock(self) -> float:
        return self.now

    def receive_message(self, **kw: Any) -> dict[str, Any]:
        self.calls["receive"] += 1
        self.now += self.step
        out = []
        for message in self.messages:
            if len(out) == kw["MaxNumberOfMessages"]:
                break
            if message.visible_at <= self.now:
                message.visible_at = self.now + kw["VisibilityTimeout"]
                message.receipt += 1
                out.append(
                    {"MessageId": message.id, "ReceiptHandle": f"{message.id}#{message.receipt}"}
                )
        return {"Messages": out} if out else {}

    def change_message_visibility_batch(self, **kw: Any) -> dict[str, Any]:
        self.calls["change"] += 1
        self.now += self.step / 10
        by_id = {m.id: m for m in self.messages}
        for entry in kw["Entries"]:
            message_id, receipt = entry["ReceiptHandle"].split("#")
            message = by_id[message_id]
            if int(receipt) == message.receipt:  # a stale handle changes nothing
                message.visible_at = self.now + entry["VisibilityTimeout"]
        return {"Successful": [], "Failed": []}


def _sweep(sqs: FakeSQS, visibility: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    with Sweep(sqs, "url", visibility, clock=sqs.clock) as sweep:
        for batch in sweep.batches():
            seen.update(raw["MessageId"] for raw in batch)
    return seen


def test_a_sweep_longer_than_its_visibility_timeout_reads_every_message_once() -> None:
    # GIVEN 800 messages and an endpoint so slow that the sweep outlasts its visibility (30 s)
    sqs = FakeSQS(800, step=0.5)
    # WHEN they are swept
    seen = _sweep(sqs, visibility=30)
    # THEN every message is read, once; and they are all visible again afterwards
    assert len(seen) == 800
    assert set(seen.values()) == {1}
    assert all(message.visible_at <= sqs.now for message in sqs.messages)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 200), share=st.floats(0.0, 0.05), visibility=st.integers(2, 120))
def test_any_sweep_reads_each_message_exactly_once(n: int, share: float, visibility: int) -> None:
    # any endpoint fast enough to extend what a sweep holds within a third of its visibility
    sqs = FakeSQS(n, step=share * visibility)
    seen = _sweep(sqs, visibility=visibility)
    assert sorted(seen) == sorted(m.id for m in sqs.messages)
    assert set(seen.values()) <= {1}
