"""moto's server for the local stack: S3's conditional writes and SQS receives made atomic, and
the stack's data kept across restarts.

S3 applies a conditional write (``If-Match`` / ``If-None-Match``) atomically: of two writers
holding the same ETag, exactly one succeeds. moto 5 checks the condition and then writes, without
a lock, and its threaded server runs requests side by side, so under contention both writers
win, and a reader can meet an object in the middle of being replaced (``ValueError: I/O
operation on closed file``). Idempotency leases (runtime/idempotency) rest on that promise; on
the local stack it must hold as it does on AWS.

:func:`serialize_s3_objects` runs moto's object requests (GET, PUT, HEAD, DELETE, copy of one
key) one at a time. Bucket-level requests (listings, batch deletes) stay concurrent. Call it in
the process that serves moto: ``python -m runner.local.motoserver`` (what ``galley local up``
and the tests start) does.

SQS hands a message to one receiver at a time. moto's ReceiveMessage checks each message's
visibility and then marks it received, without a lock, so two receives at the same moment (two
workers, or one worker's receivers polling side by side) can both return the same message: it
runs twice. :func:`serialize_sqs_receives` takes messages from a queue one receive at a time; the
long poll's waiting happens outside the lock, so a poll waiting on an empty queue holds up no one.
:func:`serialize_sqs_queue_writes` does the same for sends and deletes: moto deletes a message by
rebuilding its queue's list of messages, so of two deletes at once (two workers acking) the last
put back the message the other had deleted (it ran again a visibility timeout later), and a
message sent meanwhile could vanish.
:func:`lighten_sqs_receives` removes moto's heaviest cost: for each message it hands out, moto
computes every attribute of the queue (each count a pass over all its messages) to read one
number, so a receive from a queue of N messages cost N x 10 passes; moto ran out of CPU at ~30
receives of ten a second on a queue of a few hundred. :func:`lighten_sqs_sends` does the same for
a send, which read one attribute through all of them: three passes over the queue's messages for
each message sent, so a backlog slowed every producer, and moto spent 43% of its time there in the
side-by-side benchmark. :func:`quicken_sqs_clock` tells the time from ``time.time()``: moto built
three datetimes each time it asked (twice per message of the queue, per receive).
:func:`remember_moto_modules` lists moto's modules once: its dispatcher listed its ~200 package
folders (a stat each) for every request, under a lock all requests share. :func:`reuse_threads`
serves each connection on a thread that then waits for the next one: moto's answers close every
connection, and werkzeug's threaded server started a thread for each, its accept loop waiting for
the new thread to run.

With ``--data FILE`` the server keeps the stack's data (:mod:`runner.local.snapshot`): ``POST
/_galley/restore``, sent by `galley local up` once template.yaml is deployed, puts FILE's
messages and objects back; on SIGTERM, SIGINT or SIGHUP the server stops taking requests, lets
those in progress finish (a long poll is not waited for: at worst its message is delivered and
also saved, a duplicate, never a loss), writes FILE and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from moto.s3.responses import S3Response

from runner.errors import LocalDataError
from runner.local import snapshot

_LOCK = threading.RLock()
#: How long a stopping server waits for the requests in progress before it saves the data.
DRAIN_SECONDS = 10.0

StartResponse = Callable[..., Any]


def _under_lock(owner: type, name: str, lock_for: Callable[[Any], Any]) -> None:
    """Run ``owner.name`` holding ``lock_for(self)``; a method already wrapped stays as it is."""
    current = getattr(owner, name)
    if getattr(current, "galley_serialized", False):
        return

    @functools.wraps(current)
    def serialized(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock_for(self):
            return current(self, *args, **kwargs)

    serialized.galley_serialized = True  # type: ignore[attr-defined]
    setattr(owner, name, serialized)


def serialize_s3_objects() -> None:
    """Run moto's S3 object requests one at a time, in this process. Idempotent."""
    _under_lock(S3Response, "key_response", lambda _: _LOCK)


#: Per queue (ARN): held while moto takes messages from it, adds one or deletes one.
_QUEUE_LOCKS: dict[str, threading.RLock] = {}
_QUEUE_LOCKS_GUARD = threading.Lock()


def _queue_lock(queue: Any) -> threading.RLock:
    """The queue's lock: reentrant, since a receive deletes what it moves to a dead-letter queue."""
    with _QUEUE_LOCKS_GUARD:
        return _QUEUE_LOCKS.setdefault(queue.queue_arn, threading.RLock())


def serialize_sqs_receives() -> None:
    """Take messages from each queue one ReceiveMessage at a time, in this process. Idempotent."""
    from moto.sqs.models import SQSBackend

    current = SQSBackend.receive_message
    if getattr(current, "galley_serialized", False):
        return

    @functools.wraps(current)
    def receive_message(
        self: SQSBackend,
        queue_name: str,
        count: int,
        wait_seconds_timeout: int,
        visibility_timeout: int,
        message_attribute_names: list[str] | None = None,
    ) -> Any:
        queue = self.get_queue(queue_name)
        lock = _queue_lock(queue)
        deadline = time.monotonic() + wait_seconds_timeout
        while True:
            with lock:  # one look at the queue, no waiting: moto's own loop with a wait of 0
                found = current(
                    self, queue_name, count, 0, visibility_timeout, message_attribute_names
                )
            remaining = deadline - time.monotonic()
            if found or remaining <= 0:
                return found
            queue.wait_for_messages(1)  # as moto waits: up to a second, woken by a send

    receive_message.galley_serialized = True  # type: ignore[attr-defined]
    SQSBackend.receive_message = receive_message  # type: ignore[method-assign]


def serialize_sqs_queue_writes() -> None:
    """Add and delete a queue's messages one at a time (and not during a receive from it), in
    this process. Idempotent."""
    from moto.sqs.models import Queue

    for name in ("add_message", "delete_message"):
        _under_lock(Queue, name, _queue_lock)


def lighten_sqs_receives() -> None:
    """Check a received message's retention against its queue's setting, not against every
    attribute of the queue computed anew (moto's way). Same answer. Idempotent."""
    from moto.core import utils as moto_utils
    from moto.sqs.models import Message, SQSBackend

    current = SQSBackend.is_message_valid_based_on_retention_period
    if getattr(current, "galley_lightened", False):
        return

    @functools.wraps(current)
    def is_message_valid_based_on_retention_period(
        self: SQSBackend, queue_name: str, message: Message
    ) -> bool:
        retention = int(getattr(self.get_queue(queue_name), "message_retention_period"))  # noqa: B009
        expires = retention + message.sent_timestamp / 1000  # type: ignore[operator]
        return bool(expires > moto_utils.unix_time())

    is_message_valid_based_on_retention_period.galley_lightened = True  # type: ignore[attr-defined]
    SQSBackend.is_message_valid_based_on_retention_period = (  # type: ignore[method-assign]
        is_message_valid_based_on_retention_period
    )


_SENDING = threading.local()


def lighten_sqs_sends() -> None:
    """Read, while a message is sent, the one attribute of its queue a send uses
    (ContentBasedDeduplication), not every attribute computed anew. Same answer. Idempotent."""
    from moto.sqs.models import Queue, SQSBackend

    current = SQSBackend.send_message
    if getattr(current, "galley_lightened", False):
        return
    computed: property = Queue.__dict__["attributes"]

    def attributes(self: Queue) -> dict[str, Any]:
        if not getattr(_SENDING, "active", False):
            return computed.fget(self)  # type: ignore[misc]
        deduplicates = bool(self.fifo_queue and self.content_based_deduplication)  # type: ignore[attr-defined]
        return {"ContentBasedDeduplication": str(deduplicates).lower()}

    @functools.wraps(current)
    def send_message(self: SQSBackend, *args: Any, **kwargs: Any) -> Any:
        _SENDING.active = True
        try:
            return current(self, *args, **kwargs)
        finally:
            _SENDING.active = False

    send_message.galley_lightened = True  # type: ignore[attr-defined]
    Queue.attributes = property(attributes)  # type: ignore[assignment,method-assign]
    SQSBackend.send_message = send_message  # type: ignore[method-assign]


def quick_unix_time(dt: datetime.datetime | None = None) -> float:
    """moto's ``unix_time``: seconds since the epoch of a naive UTC datetime ``dt``, or of now."""
    if dt is None:
        return time.time()
    delta = dt - _EPOCH
    return (delta.days * 86400) + (delta.seconds + (delta.microseconds / 1e6))


def _quick_unix_time_millis(dt: datetime.datetime | None = None) -> float:
    return quick_unix_time(dt) * 1000.0


_EPOCH = datetime.datetime(1970, 1, 1)


def quicken_sqs_clock() -> None:
    """Tell SQS's time from ``time.time()``, not from three datetimes built per question (moto's
    clock). Same answer. Idempotent."""
    from moto.sqs import models

    models.unix_time = quick_unix_time
    models.unix_time_millis = _quick_unix_time_millis


def remember_moto_modules() -> None:
    """List moto's modules once, not on every request (they do not change while it runs)."""
    from moto import backends

    current = backends.list_of_moto_modules
    if getattr(current, "galley_remembered", False):
        return

    @functools.cache
    def modules() -> tuple[str, ...]:
        return tuple(current())

    @functools.wraps(current)
    def list_of_moto_modules() -> Iterable[str]:
        return modules()

    list_of_moto_modules.galley_remembered = True  # type: ignore[attr-defined]
    backends.list_of_moto_modules = list_of_moto_modules


class _InProgress:
    """Counts requests in progress, so a stopping server saves only once they are done."""

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        with self._changed:
            self._count += 1
        try:
            yield
        finally:
            with self._changed:
                self._count -= 1
                self._changed.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._count == 0, timeout=timeout)


class GalleyApp:
    """moto's WSGI app, with the restore endpoint and requests counted."""

    def __init__(self, moto_app: Callable[..., Any], data: snapshot.DataFile | None) -> None:
        self.moto_app = moto_app
        self.data = data
        self.in_progress = _InProgress()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == snapshot.RESTORE_PATH:
            return self._restore(environ, start_response)
        if environ.get("HTTP_X_AMZ_TARGET") == "AmazonSQS.ReceiveMessage":
            return self.moto_app(environ, start_response)  # a long poll: not waited for
        with self.in_progress.request():
            result: Iterable[bytes] = self.moto_app(environ, start_response)
            return result

    def _restore(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return _json(start_response, "405 Method Not Allowed", {"error": "POST only"})
        if self.data is None:
            return _json(start_response, "200 OK", {})
        try:
            with self.in_progress.request():
                report = self.data.restore()
        except LocalDataError as error:
            return _json(start_response, "400 Bad Request", {"error": str(error)})
        return _json(start_response, "200 OK", report.model_dump(mode="json"))


def _json(start_response: StartResponse, status: str, body: object) -> list[bytes]:
    payload = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json")])
    return [payload]


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runner.local.motoserver")
    parser.add_argument("-H", "--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("-p", "--port", type=int, default=5000, help="port to listen on")
    parser.add_argument("--data", type=Path, default=None, help="keep the data in this file")
    parser.add_argument(
        "--log-requests",
        action="store_true",
        help="log a line for every request (off: it costs moto a tenth of its time)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Serve moto until SIGTERM, SIGINT or SIGHUP; then save the data (``--data``) and exit."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    args = _arguments(argv)
    if not args.log_requests:  # werkzeug's line per request; errors are still logged
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    os.environ.setdefault("MOTO_PORT", str(args.port))
    serialize_s3_objects()
    serialize_sqs_receives()
    serialize_sqs_queue_writes()
    lighten_sqs_receives()
    lighten_sqs_sends()
    quicken_sqs_clock()
    remember_moto_modules()
    data = snapshot.DataFile(args.data) if args.data else None
    app = GalleyApp(DomainDispatcherApplication(create_backend_app), data)
    server = make_server(
        args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler
    )
    reuse_threads(server)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    serving = threading.Thread(target=server.serve_forever, name="moto-server", daemon=True)
    serving.start()
    print(f"moto serving on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    if not app.in_progress.wait_idle(DRAIN_SECONDS):
        print("saving with requests still in progress", file=sys.stderr, flush=True)
    _save(data)
    server.server_close()


class ThreadReuse:
    """Serves each connection of a ``socketserver.ThreadingMixIn`` server on a thread of its own,
    as the mixin does, but a thread that has served one waits up to ``idle_seconds`` for the next
    before it ends: a connection in progress (a long poll) never holds up another, and a server
    answering one request per connection no longer starts a thread for each."""

    def __init__(self, server: Any, idle_seconds: float = 60.0) -> None:
        self.server = server
        self.idle_seconds = idle_seconds
        #: Threads started, ever.
        self.started = 0
        self._handed: queue.SimpleQueue[tuple[Any, Any]] = queue.SimpleQueue()
        self._idle = 0  # threads waiting on _handed and not yet promised a connection
        self._lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        """The server's accept loop calls this for each connection."""
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._handed.put((request, client_address))
                return
            self.started += 1
        threading.Thread(
            target=self._serve, args=(request, client_address), name="moto-request", daemon=True
        ).start()

    def _serve(self, request: Any, client_address: Any) -> None:
        connection: tuple[Any, Any] | None = (request, client_address)
        while connection is not None:
            self.server.process_request_thread(*connection)  # handles, then closes
            connection = self._next()

    def _next(self) -> tuple[Any, Any] | None:
        with self._lock:
            self._idle += 1
        try:
            return self._handed.get(timeout=self.idle_seconds)
        except queue.Empty:
            with self._lock:
                if self._idle:  # nothing was promised to an idle thread: this one can go
                    self._idle -= 1
                    return None
            return self._handed.get()  # a connection was handed over as the wait ran out


def reuse_threads(server: Any, idle_seconds: float = 60.0) -> ThreadReuse:
    """Make ``server`` (werkzeug's threaded server) serve its connections on reused threads."""
    reuse = ThreadReuse(server, idle_seconds)
    server.process_request = reuse.process_request
    return reuse


def _save(data: snapshot.DataFile | None) -> None:
    if data is None:
        return
    started = time.monotonic()
    saved = data.save()
    if saved is None:
        print(f"not saving: {data.path} was never restored", file=sys.stderr, flush=True)
        return
    messages, objects = saved.counts()
    print(
        f"saved {messages} messages and {objects} objects to {data.path} "
        f"in {time.monotonic() - started:.1f}s",
        file=sys.stderr,
        flush=True,
    )


if __name__ == "__main__":
    main()
