"""Galley's SQS transport for Celery: kombu's SQS channel for sending, Galley's own receive path.

kombu's SQS transport sends well (boto3) but receives badly for a worker that must never fall
over: its pycurl client has no timeouts, a 5xx or a timeout on ReceiveMessage stops the worker,
an undecodable body stops it too, a plain-text one is deleted unseen, and messages are acked and
restored on whatever queue the message itself names. This transport keeps kombu's channel for
publishing and replaces the rest:

- receiving: :class:`~runner.worker.receiver.Receiver` threads per consumed queue (boto3, timeouts,
  retries with backoff, batches of ten while there is a backlog), waking the worker's event loop
  through a pipe;
- checking: every message is judged (runner/settlement/rules.py, the rules the Lambda consumer
  applies too) before Celery sees it; one that is not a runnable JSON task message is
  dead-lettered with the reason and never reaches Celery; one that Celery still cannot accept
  (it raised while taking it) is dead-lettered with Celery's error;
- settling: ack, reject and restore decide an outcome in the process's custody
  (runner/worker/custody.py), carried out on the queue the message was received from;
- restoring: when Celery's consumer restarts, messages of tasks that have started are kept (the
  heartbeat keeps them hidden, their ack comes later); only deliveries that have not started are
  released, at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any

from botocore.config import Config
from kombu.transport import TRANSPORT_ALIASES, virtual
from kombu.transport.SQS import Channel as SQSChannel
from kombu.transport.SQS import Transport as SQSTransport

from runner.core import aws
from runner.core.limits import MAX_DELAY_SECONDS
from runner.settlement import rules
from runner.wire import codec
from runner.worker import receiver as receiving
from runner.worker.custody import Custody, Options, custody
from runner.worker.ledger import Entry

log = logging.getLogger(__name__)

#: broker_url scheme of this transport (``galley-sqs://``).
SCHEME = "galley-sqs"
#: How long closing the connection waits for a receiver's poll in flight (then releases what it
#: brought): the long poll plus the read timeout's margin.
RECEIVER_JOIN_SECONDS = receiving.READ_TIMEOUT + 5
#: Receivers per consumed queue: one always polls; the others poll while there is a backlog and
#: room for a batch, so that the next batch is on its way while the last one runs.
RECEIVERS_PER_QUEUE = 3
#: How long closing waits for outcomes still being settled.
SETTLE_FLUSH_SECONDS = 20.0
#: Reason given to a message rejected without one.
DEFAULT_REJECT_REASON = "rejected by the worker (Reject without requeue)"


class Channel(SQSChannel):
    """kombu's SQS channel; consuming, acking, rejecting and restoring are Galley's."""

    connection: Transport

    @property
    def galley(self) -> Custody:
        return self.connection.galley

    def basic_consume(
        self, queue: str, no_ack: bool, callback: Any, consumer_tag: str, *args: Any, **kwargs: Any
    ) -> Any:
        # virtual.Channel's bookkeeping, without kombu's SQS polling on the event loop
        result = virtual.Channel.basic_consume(
            self, queue, no_ack, callback, consumer_tag, **kwargs
        )
        self.connection.start_receiving(self, queue)
        return result

    def basic_cancel(self, consumer_tag: str) -> Any:
        queue = self._tag_to_queue.get(consumer_tag)
        result = super().basic_cancel(consumer_tag)
        if queue is not None and self.connection is not None:
            self.connection.stop_receiving(queue)
        return result

    def _new_boto_client(
        self,
        service: Any,
        region: Any,
        access_key_id: Any,
        secret_access_key: Any,
        session_token: Any = None,
        config: Config | None = None,
    ) -> Any:
        """kombu's boto3 client (Celery's sends: task code, retries, chords, web apps), its
        User-Agent Galley's (runner.core.aws): botocore would build its own twice per SendMessage.
        ``client-config`` is laid under it, kombu's own ``config`` over it, as kombu does."""
        options = self.transport_options.get("client-config") or {}
        named = Config(**{"user_agent": aws.USER_AGENT, **options})
        named = named.merge(config) if config is not None else named
        named = aws.with_app_id(named, aws.new_session(region))
        return super()._new_boto_client(
            service, region, access_key_id, secret_access_key, session_token, config=named
        )

    def drain_events(self, timeout: float | None = None, callback: Any = None, **kw: Any) -> Any:
        raise virtual.Empty()  # the transport delivers what the receivers bring

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        custody().settle(delivery_tag, "delete")
        self.qos.ack(delivery_tag)

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if requeue:
            custody().settle(delivery_tag, "release")
        else:
            custody().settle(delivery_tag, "dead-letter", DEFAULT_REJECT_REASON)
        self.qos.ack(delivery_tag)

    def _restore(self, message: Any, *args: Any) -> None:
        """Called for each unacknowledged message when the channel closes."""
        tag = message.delivery_tag
        if tag in _started_tags():
            log.info("keeping message %s: its task is running", tag[:16])
            return
        custody().settle(tag, "release")

    def _restore_at_beginning(self, message: Any) -> None:
        custody().settle(message.delivery_tag, "release")


def _started_tags() -> set[str]:
    """Delivery tags of the tasks that have started in this worker (Celery's own record)."""
    from celery.worker import state

    for _ in range(5):  # the event loop changes the set; copy, retrying if it changed meanwhile
        try:
            return {r.message.delivery_tag for r in list(state.active_requests)}
        except RuntimeError:
            continue
    return set()


class Transport(SQSTransport):
    Channel = Channel

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        options = client.transport_options
        self._options = Options.from_transport_options(options)
        # Built on first use: a connection that only sends (a web app's, a retry's) starts no
        # thread and opens no pipe.
        self._galley: Custody | None = None
        self._pipe: tuple[int, int] | None = None
        self.region = options.get("region")
        self.wait_time_seconds = int(options.get("wait_time_seconds", 20))
        self._inbox: deque[tuple[str, Entry, dict[str, Any]]] = deque()
        self._arrived = threading.Condition()
        self._receivers: dict[str, list[receiving.Receiver]] = {}
        self._stopped: list[receiving.Receiver] = []
        self._consuming: dict[str, Any] = {}  # queue -> the Channel consuming it
        self._hub: Any = None

    @property
    def galley(self) -> Custody:
        """This process's custody of received messages (runner/worker/custody.py)."""
        if self._galley is None:
            self._galley = custody(self._options)
        return self._galley

    def _wake_fds(self) -> tuple[int, int]:
        """The pipe a receiver writes to, to wake the event loop: (read end, write end)."""
        if self._pipe is None:
            read, write = os.pipe()
            os.set_blocking(read, False)
            os.set_blocking(write, False)
            self._pipe = (read, write)
        return self._pipe

    # --- receiving ---

    def start_receiving(self, channel: Any, queue: str) -> None:
        if queue in self._receivers:
            return
        url = channel._new_queue(queue)
        self._consuming[queue] = channel
        intake = receiving.Intake()
        threads = [
            receiving.Receiver(
                aws.client("sqs", use="receive", region=self.region),
                url,
                self.galley.ledger,
                lambda received: self._arrive(queue, received),
                self._release,
                capacity=lambda: channel.qos.prefetch_count or 0,
                started=lambda: len(_started_tags() & set(self.galley.ledger.receipts(url))),
                wait_time_seconds=self.wait_time_seconds,
                intake=intake,
                lead=number == 0,
            )
            for number in range(RECEIVERS_PER_QUEUE)
        ]
        self._receivers[queue] = threads
        for thread in threads:
            thread.start()
        log.info("receiving from %s", url)

    def _release(self, entry: Entry) -> None:
        self.galley.settle(entry.receipt, "release")

    def stop_receiving(self, queue: str) -> None:
        threads = self._receivers.pop(queue, [])
        self._consuming.pop(queue, None)
        for thread in threads:
            thread.stop()
            self._stopped.append(thread)

    def _arrive(self, queue: str, received: list[tuple[Entry, dict[str, Any]]]) -> None:
        """On a receiver's thread: queue the messages and wake the event loop."""
        with self._arrived:
            self._inbox.extend((queue, entry, message) for entry, message in received)
            self._arrived.notify_all()
        with contextlib.suppress(OSError):  # full pipe: a wake-up is pending anyway
            os.write(self._wake_fds()[1], b"!")

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        self._hub = loop
        loop.add_reader(self._wake_fds()[0], self._on_wake)

    def _on_wake(self, *args: Any) -> None:
        with contextlib.suppress(OSError):
            while os.read(self._wake_fds()[0], 4096):
                pass
        self._deliver_arrived()

    def drain_events(self, connection: Any, timeout: Any = None) -> None:  # type: ignore[override]
        """For event loops without a hub (Celery's synloop): wait for messages, deliver them."""
        with self._arrived:
            if not self._inbox and not self._arrived.wait_for(lambda: bool(self._inbox), timeout):
                raise TimeoutError()
        self._deliver_arrived()

    def _deliver_arrived(self) -> None:
        while True:
            with self._arrived:
                if not self._inbox:
                    return
                queue, entry, sqs_message = self._inbox.popleft()
            self._deliver_one(queue, entry, sqs_message)

    def _deliver_one(self, queue: str, entry: Entry, sqs_message: dict[str, Any]) -> None:
        verdict = rules.judge(
            entry.body,
            now=datetime.now(UTC),
            # unknown tasks are Celery's to refuse (runner/worker/refusals.py): it records why
            is_known=lambda name: True,
            max_hop=MAX_DELAY_SECONDS,
            results_bucket=self.galley.options.results_bucket,
        )
        if verdict.action == "dead-letter":
            self.galley.settle(entry.receipt, "dead-letter", verdict.reason)
            return
        # run, defer (runner/worker/hops.py) and expire (Celery's own) are Celery's to carry out
        envelope = codec.envelope(entry.body)
        callback = self._callbacks.get(queue)
        if callback is None:  # no consumer any more: give it back
            self.galley.settle(entry.receipt, "release")
            return
        payload = self._payload(envelope, queue, entry, sqs_message)
        try:
            callback(payload)
        except Exception as error:
            log.exception("the worker could not take message %s", entry.message_id)
            channel = self._consuming.get(queue)
            if channel is not None:
                channel.qos.ack(entry.receipt)
            reason = f"the worker could not take it: {type(error).__name__}: {error}"
            self.galley.settle(entry.receipt, "dead-letter", reason)

    @staticmethod
    def _payload(
        envelope: dict[str, Any], queue: str, entry: Entry, sqs_message: dict[str, Any]
    ) -> dict[str, Any]:
        """kombu's payload for ``envelope``: delivered on ``queue`` through the default exchange,
        whatever the message says (Celery sends a retry to the exchange and routing key its
        message was delivered with; a named exchange is bound to no queue here, and kombu would
        drop the retry without a word)."""
        properties = envelope.setdefault("properties", {})
        info = properties["delivery_info"] = dict(properties.get("delivery_info") or {})
        info.update(
            exchange="", routing_key=queue, sqs_message=sqs_message, sqs_queue=entry.queue_url
        )
        properties["delivery_tag"] = entry.receipt
        return envelope

    # --- closing ---

    def close_connection(self, connection: Any) -> None:
        """Stop receiving, give back what was received and not started, settle what is decided."""
        if self._galley is None:  # a connection that only sent
            super().close_connection(connection)
            self._close_pipe()
            return
        for queue in list(self._receivers):
            self.stop_receiving(queue)
        still = receiving.join_all(self._stopped, RECEIVER_JOIN_SECONDS)
        if still:
            log.warning("%d receiver(s) still waiting on SQS at shutdown", len(still))
        if self._hub is not None and self._pipe is not None:
            with contextlib.suppress(Exception):
                self._hub.remove_reader(self._pipe[0])
        with self._arrived:
            left = list(self._inbox)
            self._inbox.clear()
        for _, entry, _ in left:
            self.galley.settle(entry.receipt, "release")
        super().close_connection(connection)  # closes channels: unacked deliveries restored
        if not self.galley.settler.flush(SETTLE_FLUSH_SECONDS):
            log.warning(
                "%d outcome(s) not settled on SQS at shutdown: those messages reappear after "
                "their visibility timeout",
                self.galley.settler.pending(),
            )
        self._close_pipe()

    def _close_pipe(self) -> None:
        pipe, self._pipe = self._pipe, None
        for fd in pipe or ():
            with contextlib.suppress(OSError):
                os.close(fd)


def register() -> None:
    TRANSPORT_ALIASES[SCHEME] = f"{__name__}:Transport"
