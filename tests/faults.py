"""FaultProxy: an HTTP/1.1 proxy in front of the moto server that injects network and AWS faults.

Point a process at ``proxy.url`` instead of the moto server (``AWS_ENDPOINT_URL`` for a worker,
``endpoint_url=`` for a client) and switch faults on and off from the test thread::

    with FaultProxy(moto_server.url) as proxy:
        proxy.inject("http_error", status=500, service="sqs", action="ReceiveMessage", p=0.5)
        ...
        proxy.heal()

It parses every request (Content-Length or chunked body; ``Expect: 100-continue`` is answered by
the proxy itself), classifies it — ``sqs:<Action>`` from ``X-Amz-Target: AmazonSQS.<Action>``
(botocore's JSON protocol) or an ``Action=`` parameter (the query protocol), else ``s3:<METHOD>``
— and either forwards it over a keep-alive upstream connection of its own (one per client
connection) or answers with a fault. Responses are read whole, then relayed (a chunked body as
one chunk; a body delimited by the upstream closing gets a Content-Length).

Client connections are kept alive as AWS keeps them, whatever the upstream does: moto's server
answers every request with ``Connection: close`` (so a client talking to moto directly never
reuses a connection), and the proxy treats Connection as hop-by-hop and reconnects upstream.

Faults (``inject(kind, ...)``), each limited to a service, an action and a probability ``p``
(every fault draws from its own ``random.Random`` seeded from the proxy's seed and the fault's
number, so a sequential client sees the same outcomes on every run):

``http_error``  ``status`` (500 by default) with the service's error body, not forwarded: SQS
                JSON ``InternalError`` (500) / ``ServiceUnavailable`` (503) with
                ``x-amzn-query-error``; S3 XML ``InternalError`` (500) / ``SlowDown`` (503).
``throttle``    SQS 400 ``RequestThrottled`` (in botocore's ThrottledRetryableChecker list and
                a modeled SQS error); S3 503 ``SlowDown`` (in the same list). Not forwarded.
``reset``       the request is read, then the client connection is closed with an RST
                (SO_LINGER on, timeout 0).
``blackhole``   the request is read and never answered; a matching request already forwarded
                when the black hole is switched on has its answer dropped. The connection is
                held until the fault is removed (``heal``/``remove``/the end of ``fault()``) or
                the proxy stops, then closed with a FIN: a client whose read timeout has passed
                has already given up (ReadTimeoutError); one still waiting sees the connection
                close without an answer (ConnectionClosedError). No late answer is ever sent.
                A swallowed answer's request did reach moto (a ReceiveMessage's messages are
                then in flight, unseen) and counts in ``counts()``.
``latency``     ``seconds`` of delay before forwarding (latency faults add up; they combine with
                the first matching fault of another kind).

A request whose upstream cannot be reached (moto stopped) gets its client connection reset, as a
dead network path would. Nothing listens beyond 127.0.0.1; stdlib only.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import select
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO
from urllib.parse import parse_qs, urlsplit

HOST = "127.0.0.1"
KINDS = ("http_error", "throttle", "reset", "blackhole", "latency")
SERVICES = ("sqs", "s3")
#: Longest request/status/header/chunk-size line accepted.
MAX_LINE = 65536
MAX_HEADERS = 256
#: Headers about one connection (RFC 9110 7.6.1), not relayed from the upstream's answers.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection"})
#: How often a held (black-holed) connection checks whether its client has gone.
HOLD_POLL = 0.25

_SQS_CODES = {500: "InternalError", 503: "ServiceUnavailable"}
_S3_CODES = {500: "InternalError", 503: "SlowDown"}
_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class _Closed(Exception):
    """The peer closed the connection cleanly before the start of a message."""


class _BadMessage(Exception):
    """A malformed or truncated HTTP message."""


@dataclass
class _Message:
    """One HTTP request or response, body read whole."""

    start: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    #: How the body was delimited: "length", "chunked", "eof" or "none".
    framing: str = "none"

    def header(self, name: str) -> str | None:
        lower = name.lower()
        for key, value in self.headers:
            if key.lower() == lower:
                return value
        return None

    def tokens(self, name: str) -> set[str]:
        """Comma-separated, lower-cased values of every ``name`` header."""
        lower = name.lower()
        return {
            token.strip().lower()
            for key, value in self.headers
            if key.lower() == lower
            for token in value.split(",")
        }

    def serialize(self) -> bytes:
        headers = self.headers
        if self.framing == "eof":
            headers = [*headers, ("Content-Length", str(len(self.body)))]
        head = "".join(f"{k}: {v}\r\n" for k, v in headers)
        out = f"{self.start}\r\n{head}\r\n".encode("latin-1")
        if self.framing == "chunked":
            if self.body:
                out += f"{len(self.body):x}\r\n".encode() + self.body + b"\r\n"
            return out + b"0\r\n\r\n"
        return out + self.body


@dataclass(frozen=True)
class Fault:
    """One switched-on fault; ``inject`` returns it, ``remove`` takes it."""

    id: int
    kind: str
    service: str | None = None
    action: str | None = None
    p: float = 1.0
    status: int = 0
    code: str | None = None
    seconds: float = 0.0
    #: Only requests whose path holds this (an S3 key prefix, say), when given.
    path: str | None = None

    def matches(self, service: str, action: str, path: str = "") -> bool:
        return (
            self.service in (None, service)
            and self.action in (None, action)
            and (self.path is None or self.path in path)
        )


@dataclass
class ChaosEvent:
    """A fault the chaos thread switched on, ``started`` seconds after ``start_chaos``."""

    kind: str
    started: float
    seconds: float | None = None


@dataclass
class _ChaosPlan:
    rng: random.Random
    kinds: list[str]
    every: tuple[float, float]
    duration: tuple[float, float]
    deadline: float
    options: dict[str, object]
    seconds: float

    def pause(self, bounds: tuple[float, float]) -> float:
        """A random pause within ``bounds``, cut short at the deadline."""
        return max(0.0, min(self.rng.uniform(*bounds), self.deadline - time.monotonic()))


@dataclass
class _Decision:
    delay: float = 0.0
    fault: Fault | None = None
    #: The newest fault id when the decision was made: black holes newer than this catch the
    #: request's answer on its way back.
    generation: int = 0


@dataclass(eq=False)
class _Link:
    """A client connection and the upstream connection its requests are forwarded over."""

    client: socket.socket
    reader: IO[bytes]
    upstream: socket.socket | None = None
    up_reader: IO[bytes] | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    def close_upstream(self) -> None:
        if self.up_reader is not None:
            with contextlib.suppress(OSError):
                self.up_reader.close()
            self.up_reader = None
        if self.upstream is not None:
            with contextlib.suppress(OSError):
                self.upstream.close()
            self.upstream = None

    def close(self, *, rst: bool = False) -> None:
        self.close_upstream()
        with contextlib.suppress(OSError):
            self.reader.close()
        with contextlib.suppress(OSError):
            if rst:
                self.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.client.close()

    def interrupt(self) -> None:
        """Wake this link's thread from a blocking read (from another thread)."""
        for sock in (self.client, self.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


# --- HTTP/1.1 messages ---


def _read_line(reader: IO[bytes]) -> bytes:
    line = reader.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise _BadMessage("line too long")
    if not line.endswith(b"\n"):
        raise _BadMessage("connection closed mid-line")
    return line.rstrip(b"\r\n")


def _read_start(reader: IO[bytes]) -> str:
    """The request or status line; _Closed on a clean EOF first (blank lines are skipped)."""
    while True:
        line = reader.readline(MAX_LINE + 1)
        if not line:
            raise _Closed
        if len(line) > MAX_LINE or not line.endswith(b"\n"):
            raise _BadMessage("bad start line")
        if line.strip():
            return line.rstrip(b"\r\n").decode("latin-1")


def _read_headers(reader: IO[bytes]) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    while True:
        line = _read_line(reader)
        if not line:
            return headers
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or len(headers) >= MAX_HEADERS:
            raise _BadMessage(f"bad header line {line[:80]!r}")
        headers.append((name.strip(), value.strip()))


def _read_exact(reader: IO[bytes], size: int) -> bytes:
    data = reader.read(size)
    if len(data) != size:
        raise _BadMessage(f"body truncated at {len(data)} of {size} bytes")
    return data


def _read_chunked(reader: IO[bytes]) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = _read_line(reader).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise _BadMessage(f"bad chunk size {size_line[:20]!r}") from None
        if size == 0:
            while _read_line(reader):  # trailers, dropped
                pass
            return b"".join(parts)
        parts.append(_read_exact(reader, size))
        if _read_line(reader):
            raise _BadMessage("chunk not followed by CRLF")


def _read_body(reader: IO[bytes], message: _Message, *, until_eof: bool) -> None:
    if "chunked" in message.tokens("Transfer-Encoding"):
        message.body, message.framing = _read_chunked(reader), "chunked"
    elif (length := message.header("Content-Length")) is not None:
        if not length.isdigit():
            raise _BadMessage(f"bad Content-Length {length!r}")
        message.body, message.framing = _read_exact(reader, int(length)), "length"
    elif until_eof:
        message.body, message.framing = reader.read(), "eof"


def _read_request(reader: IO[bytes], client: socket.socket) -> _Message:
    request = _Message(_read_start(reader), _read_headers(reader))
    if "100-continue" in request.tokens("Expect"):
        # Answered here (botocore otherwise waits a second for it); the upstream never sees it.
        request.headers = [(k, v) for k, v in request.headers if k.lower() != "expect"]
        client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    _read_body(reader, request, until_eof=False)
    return request


def _status(message: _Message) -> int:
    try:
        return int(message.start.split(" ", 2)[1])
    except (IndexError, ValueError):
        raise _BadMessage(f"bad status line {message.start[:80]!r}") from None


def _read_response(reader: IO[bytes], method: str) -> _Message:
    while True:
        response = _Message(_read_start(reader), _read_headers(reader))
        status = _status(response)
        if not 100 <= status < 200:
            break  # interim (1xx) responses are skipped
    if method != "HEAD" and status not in (204, 304):
        _read_body(reader, response, until_eof=True)
    return response


def _method(request: _Message) -> str:
    return request.start.split(" ", 1)[0].upper()


def _wants_close(message: _Message) -> bool:
    if "close" in message.tokens("Connection"):
        return True
    return message.start.startswith("HTTP/1.0") or message.start.endswith("HTTP/1.0")


def _for_client(response: _Message, request: _Message) -> _Message:
    """``response`` as this proxy's own HTTP/1.1 answer: Connection is hop-by-hop, so the client
    connection stays open unless the client asked for it to close (moto closes every upstream
    connection after one response; AWS keeps them alive)."""
    headers = [(k, v) for k, v in response.headers if k.lower() not in HOP_BY_HOP]
    if _wants_close(request):
        headers.append(("Connection", "close"))
    start = "HTTP/1.1 " + response.start.split(" ", 1)[1]
    return _Message(start, headers, response.body, response.framing)


def classify(request: _Message) -> tuple[str, str]:
    """(service, action): ("sqs", "ReceiveMessage") or ("s3", "PUT")."""
    target = request.header("X-Amz-Target") or ""
    if target.startswith("AmazonSQS."):
        return "sqs", target.split(".", 1)[1]
    method = _method(request)
    parts = request.start.split(" ")
    params = parse_qs(urlsplit(parts[1] if len(parts) > 1 else "").query)
    content_type = (request.header("Content-Type") or "").lower()
    if "Action" not in params and content_type.startswith("application/x-www-form-urlencoded"):
        params = parse_qs(request.body.decode("utf-8", "replace"))
    if "Action" in params:
        return "sqs", params["Action"][0]
    return "s3", method


# --- AWS-shaped error answers ---


def _error_response(request: _Message, service: str, status: int, code: str) -> _Message:
    request_id = str(uuid.uuid4())
    message = f"{code} (injected by FaultProxy)"
    start = f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}"
    headers: list[tuple[str, str]]
    if service == "sqs" and request.header("X-Amz-Target"):
        fault_by = "Sender" if status < 500 else "Receiver"
        body = json.dumps({"__type": f"com.amazonaws.sqs#{code}", "message": message}).encode()
        headers = [
            ("Content-Type", "application/x-amz-json-1.0"),
            ("x-amzn-RequestId", request_id),
            ("x-amzn-query-error", f"{code};{fault_by}"),
        ]
    elif service == "sqs":  # query protocol
        fault_by = "Sender" if status < 500 else "Receiver"
        body = (
            f'<?xml version="1.0"?><ErrorResponse><Error><Type>{fault_by}</Type>'
            f"<Code>{code}</Code><Message>{message}</Message><Detail/></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        headers = [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)]
    else:
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message><RequestId>{request_id}</RequestId>"
            f"<HostId>{request_id}</HostId></Error>"
        ).encode()
        headers = [
            ("Content-Type", "application/xml"),
            ("x-amz-request-id", request_id),
            ("x-amz-id-2", request_id),
        ]
    if _method(request) == "HEAD":
        body = b""  # a HEAD answer has no body: botocore reports the status as the code
    headers.append(("Content-Length", str(len(body))))
    return _Message(start, headers, body, "length")


def _fault_answer(request: _Message, service: str, fault: Fault) -> _Message:
    if fault.kind == "throttle":
        # RequestThrottled and SlowDown are both in botocore's standard-mode
        # ThrottledRetryableChecker._THROTTLED_ERROR_CODES (botocore/retries/standard.py).
        status, code = (400, "RequestThrottled") if service == "sqs" else (503, "SlowDown")
        return _error_response(request, service, status, fault.code or code)
    codes = _SQS_CODES if service == "sqs" else _S3_CODES
    return _error_response(
        request, service, fault.status, fault.code or codes.get(fault.status, "InternalError")
    )


def _client_gone(sock: socket.socket) -> bool:
    """True once the client closed its end (it gave up waiting)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class FaultProxy:
    """A threaded HTTP/1.1 proxy to ``upstream_url`` that injects faults on demand."""

    def __init__(self, upstream_url: str, *, seed: int = 0) -> None:
        parts = urlsplit(upstream_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"FaultProxy needs an http:// upstream, not {upstream_url!r}")
        self.upstream = (parts.hostname, parts.port or 80)
        self.seed = seed
        self.port: int | None = None
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._links: set[_Link] = set()
        self._faults: dict[int, Fault] = {}
        self._rngs: dict[int, random.Random] = {}
        self._ids = itertools.count(1)
        self._last_id = 0
        self._counts: Counter[str] = Counter()
        self._injected: Counter[str] = Counter()
        self._accepted = 0
        self._chaos_thread: threading.Thread | None = None
        self._chaos_stop = threading.Event()
        self._chaos_events: list[ChaosEvent] = []

    # --- lifecycle ---

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("FaultProxy is not started")
        return f"http://{HOST}:{self.port}"

    def start(self) -> FaultProxy:
        """Listen on 127.0.0.1 and a free port; returns self."""
        if self._listener is not None:
            raise RuntimeError("FaultProxy already started")
        self._stopping.clear()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, 0))
        listener.listen(128)
        listener.settimeout(HOLD_POLL)  # so the accept loop notices stop()
        self._listener = listener
        self.port = int(listener.getsockname()[1])
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"fault-proxy-{self.port}", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Stop the chaos thread, drop every connection and stop listening."""
        self._stopping.set()
        self._chaos_stop.set()
        with self._cond:
            links = list(self._links)
            self._cond.notify_all()
        for link in links:
            link.interrupt()
        threads = [self._accept_thread, self._chaos_thread, *(link.thread for link in links)]
        for thread in threads:
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._accept_thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- observations ---

    def counts(self) -> Counter[str]:
        """Forwarded requests by ``service:action`` (``sqs:ReceiveMessage``, ``s3:PUT``)."""
        with self._lock:
            return Counter(self._counts)

    def injected(self) -> Counter[str]:
        """Faults applied to requests, by kind."""
        with self._lock:
            return Counter(self._injected)

    def reset_counts(self) -> None:
        """Zero ``counts()`` and ``injected()``."""
        with self._lock:
            self._counts.clear()
            self._injected.clear()

    @property
    def accepted(self) -> int:
        """Client connections accepted so far."""
        with self._lock:
            return self._accepted

    def active(self) -> list[Fault]:
        """The faults switched on, oldest first."""
        with self._lock:
            return list(self._faults.values())

    # --- faults ---

    def inject(
        self,
        kind: str,
        *,
        service: str | None = None,
        action: str | None = None,
        p: float = 1.0,
        status: int = 500,
        code: str | None = None,
        seconds: float = 0.0,
        path: str | None = None,
    ) -> Fault:
        """Switch a fault on for requests matching ``service``/``action`` (and whose path holds
        ``path``, if given), each with probability ``p``; ``status``/``code`` shape an
        http_error (``code`` also a throttle), ``seconds`` a latency."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {KINDS}")
        if service not in (None, *SERVICES):
            raise ValueError(f"service must be one of {SERVICES} or None, not {service!r}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be within 0..1, not {p}")
        if kind == "http_error" and not 400 <= status <= 599:
            raise ValueError(f"an http_error status must be 4xx or 5xx, not {status}")
        if kind == "latency" and seconds <= 0:
            raise ValueError("a latency fault needs seconds > 0")
        with self._cond:
            fault_id = next(self._ids)
            fault = Fault(fault_id, kind, service, action, p, status, code, seconds, path)
            self._faults[fault_id] = fault
            # Its own generator per fault: its draws do not depend on other faults' traffic.
            self._rngs[fault_id] = random.Random(f"{self.seed}:{fault_id}")  # noqa: S311
            self._last_id = fault_id
            self._cond.notify_all()
        return fault

    def remove(self, fault: Fault) -> None:
        """Switch one fault off; connections its black hole holds are closed."""
        with self._cond:
            self._faults.pop(fault.id, None)
            self._rngs.pop(fault.id, None)
            self._cond.notify_all()

    def heal(self) -> None:
        """Switch every fault off; black-holed connections are closed (never answered late)."""
        with self._cond:
            self._faults.clear()
            self._rngs.clear()
            self._cond.notify_all()

    @contextlib.contextmanager
    def fault(self, kind: str, **options: object) -> Iterator[Fault]:
        """``inject(kind, **options)`` for the duration of the block, removed on exit."""
        injected = self.inject(kind, **options)  # type: ignore[arg-type]
        try:
            yield injected
        finally:
            self.remove(injected)

    # --- chaos ---

    def start_chaos(
        self,
        seed: int,
        *,
        kinds: Sequence[str] = ("http_error", "throttle", "reset", "latency"),
        every: tuple[float, float] = (1.0, 3.0),
        duration: tuple[float, float] = (0.5, 2.0),
        total: float = 600.0,
        service: str | None = None,
        action: str | None = None,
        p: float = 1.0,
        status: int = 500,
        seconds: float = 1.0,
    ) -> None:
        """Switch random faults of ``kinds`` on for ``duration`` seconds, ``every`` seconds, in a
        background thread, until ``stop_chaos``, ``stop`` or ``total`` seconds have passed."""
        if self._chaos_thread is not None and self._chaos_thread.is_alive():
            raise RuntimeError("chaos is already running")
        for kind in kinds:
            if kind not in KINDS:
                raise ValueError(f"unknown fault kind {kind!r}; one of {KINDS}")
        if not kinds or min(*every, *duration) < 0:
            raise ValueError("chaos needs kinds and non-negative every/duration ranges")
        plan = _ChaosPlan(
            rng=random.Random(seed),  # noqa: S311 - fault schedule, not cryptography
            kinds=list(kinds),
            every=every,
            duration=duration,
            deadline=time.monotonic() + total,
            options={"service": service, "action": action, "p": p, "status": status},
            seconds=seconds,
        )
        self._chaos_stop.clear()
        self._chaos_events = []
        self._chaos_thread = threading.Thread(
            target=self._chaos_loop,
            args=(plan,),
            name=f"fault-proxy-chaos-{self.port}",
            daemon=True,
        )
        self._chaos_thread.start()

    def stop_chaos(self) -> list[ChaosEvent]:
        """Stop the chaos thread (its current fault is removed); returns what it switched on."""
        self._chaos_stop.set()
        if self._chaos_thread is not None:
            self._chaos_thread.join(timeout=10)
            self._chaos_thread = None
        return self.chaos_events()

    @property
    def chaos_running(self) -> bool:
        return self._chaos_thread is not None and self._chaos_thread.is_alive()

    def chaos_events(self) -> list[ChaosEvent]:
        with self._lock:
            return list(self._chaos_events)

    @contextlib.contextmanager
    def bursts(self, seed: int, **options: object) -> Iterator[FaultProxy]:
        """``start_chaos(seed, **options)`` for the duration of the block."""
        self.start_chaos(seed, **options)  # type: ignore[arg-type]
        try:
            yield self
        finally:
            self.stop_chaos()

    def _chaos_loop(self, plan: _ChaosPlan) -> None:
        began = time.monotonic()
        while not self._chaos_stop.wait(plan.pause(plan.every)):
            if time.monotonic() >= plan.deadline or self._stopping.is_set():
                return
            kind = plan.rng.choice(plan.kinds)
            seconds = plan.seconds if kind == "latency" else 0.0
            fault = self.inject(kind, seconds=seconds, **plan.options)  # type: ignore[arg-type]
            event = ChaosEvent(kind, round(time.monotonic() - began, 3))
            with self._lock:
                self._chaos_events.append(event)
            start = time.monotonic()
            try:
                self._chaos_stop.wait(plan.pause(plan.duration))
            finally:
                self.remove(fault)
                event.seconds = round(time.monotonic() - start, 3)

    # --- serving ---

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(client, client.makefile("rb"))
            link.thread = threading.Thread(
                target=self._serve, args=(link,), name=f"fault-proxy-conn-{self.port}", daemon=True
            )
            with self._lock:
                if self._stopping.is_set():
                    link.close()
                    return
                self._links.add(link)
                self._accepted += 1
            link.thread.start()

    def _serve(self, link: _Link) -> None:
        rst = False
        try:
            while not self._stopping.is_set():
                request = _read_request(link.reader, link.client)
                keep_alive, rst = self._handle(link, request)
                if not keep_alive:
                    return
        except (_Closed, _BadMessage, OSError):
            return
        finally:
            with self._lock:
                self._links.discard(link)
            link.close(rst=rst)

    def _handle(self, link: _Link, request: _Message) -> tuple[bool, bool]:
        """Answer one request; returns (keep the connection, close it with an RST)."""
        service, action = classify(request)
        parts = request.start.split(" ")
        path = parts[1] if len(parts) > 1 else ""
        decision = self._decide(service, action, path)
        if decision.delay and self._stopping.wait(decision.delay):
            return False, False
        fault = decision.fault
        if fault is not None and fault.kind == "reset":
            return False, True
        if fault is not None and fault.kind == "blackhole":
            self._hold(link, fault)
            return False, False
        if fault is not None:
            answer = _fault_answer(request, service, fault)
            link.client.sendall(_for_client(answer, request).serialize())
            return not _wants_close(request), False
        with self._lock:
            self._counts[f"{service}:{action}"] += 1
        response = self._forward(link, request)
        if response is None:
            return False, True  # upstream unreachable: the client sees a broken connection
        late = self._late_blackhole(service, action, decision.generation, path)
        if late is not None:
            self._hold(link, late)
            return False, False
        link.client.sendall(_for_client(response, request).serialize())
        return not _wants_close(request), False

    def _decide(self, service: str, action: str, path: str = "") -> _Decision:
        decision = _Decision()
        with self._lock:
            decision.generation = self._last_id
            for fault in self._faults.values():
                if not fault.matches(service, action, path):
                    continue
                if fault.kind != "latency" and decision.fault is not None:
                    continue
                if self._rngs[fault.id].random() >= fault.p:
                    continue
                self._injected[fault.kind] += 1
                if fault.kind == "latency":
                    decision.delay += fault.seconds
                else:
                    decision.fault = fault
        return decision

    def _late_blackhole(
        self, service: str, action: str, generation: int, path: str = ""
    ) -> Fault | None:
        """A black hole switched on while the request was upstream, that swallows its answer."""
        with self._lock:
            for fault in self._faults.values():
                if (
                    fault.id > generation
                    and fault.kind == "blackhole"
                    and fault.matches(service, action, path)
                    and self._rngs[fault.id].random() < fault.p
                ):
                    self._injected[fault.kind] += 1
                    return fault
        return None

    def _hold(self, link: _Link, fault: Fault) -> None:
        """Never answer: wait until ``fault`` is off, the proxy stops or the client gives up."""
        while True:
            with self._cond:
                if fault.id not in self._faults or self._stopping.is_set():
                    return
                self._cond.wait(HOLD_POLL)
            if _client_gone(link.client):
                return

    def _connect_upstream(self, link: _Link) -> None:
        sock = socket.create_connection(self.upstream, timeout=5)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link.upstream, link.up_reader = sock, sock.makefile("rb")

    def _forward(self, link: _Link, request: _Message) -> _Message | None:
        """The upstream's answer to ``request``, or None if the upstream could not give one."""
        method = _method(request)
        for _ in range(2):
            reused = link.upstream is not None
            try:
                if not reused:
                    self._connect_upstream(link)
                assert link.upstream is not None and link.up_reader is not None
                link.upstream.sendall(request.serialize())
                response = _read_response(link.up_reader, method)
            except (_Closed, ConnectionResetError, BrokenPipeError):
                link.close_upstream()
                if reused and not self._stopping.is_set():
                    continue  # a kept-alive upstream connection the server had closed: retry once
                return None
            except (_BadMessage, OSError):
                link.close_upstream()
                return None
            if _wants_close(response) or response.framing == "eof":
                link.close_upstream()
            return response
        return None
