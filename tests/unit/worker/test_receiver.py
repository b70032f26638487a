"""How many messages the receiver asks for: full batches while there is a backlog."""

from __future__ import annotations

import threading
import time
from typing import Any

from runner.local.process import wait_for
from runner.worker.ledger import Ledger
from runner.worker.receiver import Intake, Receiver

Q = "http://127.0.0.1:1/123456789012/jobs"


def receiver(
    ledger: Ledger, limit: int, intake: Intake | None = None, lead: bool = True
) -> Receiver:
    return Receiver(
        object(),
        Q,
        ledger,
        lambda received: None,
        lambda entry: None,
        capacity=lambda: limit,
        intake=intake,
        lead=lead,
    )


def short_jobs(ledger: Ledger) -> Ledger:
    """A ledger that has seen outcomes in milliseconds: the queue runs short jobs."""
    entry = ledger.add(Q, {"ReceiptHandle": "done", "Body": "b"})
    ledger.decide(entry.receipt, "delete")
    ledger.forget(entry.receipt)
    assert ledger.typical_hold(Q) < 1
    return ledger


def hold(ledger: Ledger, n: int) -> list[str]:
    receipts = [f"r{i:02d}" for i in range(n)]
    for receipt in receipts:
        ledger.add(Q, {"ReceiptHandle": receipt, "MessageId": receipt, "Body": "b"})
    return receipts


def test_a_busy_worker_waits_for_room_for_a_whole_batch() -> None:
    """Issue 12: the receiver asked for whatever room there was, one or two messages at a time
    (0.9 ReceiveMessage per job on a backlog)."""
    ledger = short_jobs(Ledger())
    receipts = hold(ledger, 11)
    # GIVEN a limit of 20 and 11 held: room for 9, not for a batch of 10
    r = receiver(ledger, 20)
    assert r._reserve() == 0
    # WHEN one more job finishes (its delete waits for its batch)
    ledger.decide(receipts[0], "delete")
    # THEN it asks for ten
    assert r._reserve() == 10


def test_the_wait_ends_as_soon_as_a_job_is_decided() -> None:
    ledger = short_jobs(Ledger())
    receipts = hold(ledger, 11)
    r = receiver(ledger, 20)
    threading.Timer(0.05, ledger.decide, (receipts[0], "delete")).start()
    done = threading.Event()
    result: list[Any] = []

    def room() -> None:
        result.append(r._reserve())
        done.set()

    threading.Thread(target=room).start()
    assert done.wait(0.9), "the receiver slept through the decision"
    assert result == [0]


def test_an_idle_worker_asks_at_once_and_a_small_one_for_half_its_limit() -> None:
    ledger = short_jobs(Ledger())
    assert receiver(ledger, 16)._reserve() == 10
    assert receiver(ledger, 4)._reserve() == 4
    hold(ledger, 2)
    assert receiver(ledger, 4)._reserve() == 2  # two running, two more at hand
    assert receiver(short_jobs(Ledger()), 4)._reserve() == 4
    three = short_jobs(Ledger())
    hold(three, 3)
    assert receiver(three, 4)._reserve() == 0


def test_one_process_with_a_prefetch_of_two_has_its_next_job_at_hand() -> None:
    # found by the SIGTERM e2e test: with room asked for in batches of the whole limit, a worker
    # of one process and a prefetch of two did not receive the next job until the first ended
    ledger = short_jobs(Ledger())
    hold(ledger, 1)
    assert receiver(ledger, 2)._reserve() == 1


def test_a_second_receiver_polls_only_while_there_is_a_backlog_and_room() -> None:
    # GIVEN a lead and two followers sharing an intake, room for 32
    ledger, intake = short_jobs(Ledger()), Intake()
    lead = receiver(ledger, 32, intake)
    followers = [receiver(ledger, 32, intake, lead=False) for _ in range(2)]
    assert lead._reserve() == 10
    # WHEN there is no backlog THEN the followers do not poll (an idle queue: one long poll)
    assert followers[0]._reserve() == 0
    # WHEN the last poll came back full
    lead._unreserve(10, backlog=True)
    hold(ledger, 10)
    # THEN a follower asks for the next batch while those run, and the last has no room left
    assert followers[0]._reserve() == 10
    assert followers[1]._reserve() == 10
    assert lead._reserve() == 0
    assert intake.reserved == 20


class OneBatchSQS:
    """Answers the first receive with two messages, then nothing."""

    def __init__(self) -> None:
        self.calls = 0

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        if self.calls == 1:
            return {"Messages": [{"ReceiptHandle": f"h{i}", "Body": "b"} for i in range(2)]}
        time.sleep(0.01)
        return {}


def test_a_hand_over_that_fails_gives_the_messages_back_and_keeps_receiving() -> None:
    """Found by the review: an exception while handing messages over ended the receiver thread
    without a word (the worker stopped receiving for good) and left its messages held."""
    ledger, sqs = Ledger(), OneBatchSQS()
    released: list[str] = []

    def deliver(received: Any) -> None:
        raise RuntimeError("the event loop's pipe is gone")

    r = Receiver(
        sqs,
        Q,
        ledger,
        deliver,
        lambda entry: (released.append(entry.receipt), ledger.decide(entry.receipt, "release")),
        capacity=lambda: 4,
        wait_time_seconds=0,
    )
    r.start()
    try:
        wait_for(lambda: sqs.calls >= 3, timeout=5, what="the receiver to poll again")
        assert r.is_alive()
        assert sorted(released) == ["h0", "h1"]
    finally:
        r.stop()
        r.join(5)


def _long_jobs(ledger: Ledger) -> None:
    """Outcomes that took 30 s each: the queue runs long jobs."""
    for i in range(3):
        entry = ledger.add(Q, {"ReceiptHandle": f"old{i}", "Body": "b"})
        entry.received_at -= 30
        ledger.decide(entry.receipt, "delete")
        ledger.forget(entry.receipt)
    assert ledger.typical_hold(Q) > 1


def test_a_queue_of_long_jobs_is_not_buffered() -> None:
    """Found with `galley top`: five 40 s jobs, two workers of two processes; one worker took all
    five (two running, three waiting behind them) while the other stood idle."""
    ledger = Ledger()
    _long_jobs(ledger)
    running: list[int] = [0]
    r = Receiver(
        object(),
        Q,
        ledger,
        lambda received: None,
        lambda entry: None,
        capacity=lambda: 16,
        started=lambda: running[0],
    )
    # GIVEN nothing held: one message is asked for, not a batch
    assert r._reserve() == 1
    r._unreserve(1, backlog=False)
    # WHEN one is held and not yet started THEN no more is asked for
    hold(ledger, 1)
    assert r._reserve() == 0
    # WHEN it has started (a process took it) THEN the next one is asked for
    running[0] = 1
    assert r._reserve() == 1


def test_a_release_does_not_count_as_a_job_s_length() -> None:
    ledger = short_jobs(Ledger())
    entry = ledger.add(Q, {"ReceiptHandle": "r", "Body": "b"})
    entry.received_at -= 30
    ledger.decide("r", "release")
    assert ledger.typical_hold(Q) < 1


def test_a_fresh_worker_takes_its_first_jobs_one_at_a_time() -> None:
    # until an outcome says the jobs are short, a burst is not taken whole by the first worker
    ledger = Ledger()
    assert receiver(ledger, 16)._reserve() == 1


def test_short_jobs_that_waited_in_the_buffer_are_still_short() -> None:
    """Found while measuring issue 12 on a loaded machine: a backlog of 32 short jobs held per
    worker waited up to a second each behind the others, that wait counted as their length,
    and the worker fell back to one message per receive, at a third of its pace."""
    ledger = short_jobs(Ledger())
    for i in range(5):
        entry = ledger.add(Q, {"ReceiptHandle": f"w{i}", "Body": "b"})
        entry.received_at -= 3  # three seconds in the buffer
        ledger.started(entry.receipt)  # then a process took it, and it ran for milliseconds
        ledger.decide(entry.receipt, "delete")
        ledger.forget(entry.receipt)
    assert ledger.typical_hold(Q) < 1


def test_a_waiting_receiver_is_woken_only_when_there_is_room_for_it() -> None:
    """Issue 12: every message received, decided or deleted woke each waiting receiver (three a
    queue) to find no room yet: some 18 thread switches per job in a busy worker's process."""
    ledger = short_jobs(Ledger())
    receipts = hold(ledger, 5)
    woken: list[str] = []
    notify_all = ledger._changed.notify_all

    def counted() -> None:
        woken.append("notify_all")
        notify_all()

    ledger._changed.notify_all = counted  # type: ignore[method-assign]
    # GIVEN a receiver waiting for fewer than 3 undecided messages, and none waiting on another
    found: list[bool] = []
    waiting = threading.Thread(target=lambda: found.append(ledger.wait_below(Q, 3, timeout=10)))
    waiting.start()
    wait_for(lambda: ledger.waiting() == 1, timeout=5, what="the receiver to wait")
    # WHEN messages arrive, one is deleted once decided, and two more are decided: 3 left
    ledger.add(Q, {"ReceiptHandle": "late", "Body": "b"})
    ledger.decide(receipts[0], "delete")
    ledger.forget(receipts[0])
    ledger.decide(receipts[1], "delete")
    ledger.decide(receipts[2], "delete")
    # THEN nothing woke it: there is no room yet
    assert woken == []
    # WHEN one more is decided (2 left)
    ledger.decide(receipts[3], "delete")
    waiting.join(5)
    # THEN it was woken once, and found room
    assert woken == ["notify_all"]
    assert found == [True]
