"""The dashboard's routes: the page, its JSON API, and the checks of everything a request holds.

:meth:`Dashboard.handle` takes a :class:`Request` and returns a :class:`Response`, with no socket
in between, so the API is tested (and fuzzed) in-process. Every answer of the API is JSON; every
error is ``{"error": "one line"}`` with a 4xx/5xx status: bad input is 400, an unknown job 404,
a refused request 401/403, AWS out of reach 502/503. Nothing a request holds raises out of it.

Routes:
    GET  /                 the page (static/index.html, with this process's CSRF token)
    GET  /static/NAME      its script and style sheet
    GET  /api/overview     queues (and their depth history), workers, running jobs and their
                           progress, per-task counts, jobs a second: a `galley top` frame
    GET  /api/dlq          each dead-letter queue's messages (the recent failures), newest first;
                           CSRF token needed (a listing receives every message)
    GET  /api/job?id=ID    one job: state, task, args, result or error and traceback, progress
    POST /api/dlq          {"action": "redrive", "queue": "jobs"|"long", "ids": [...]} (no ids:
                           all) or {"action": "purge", "queue": ...}; CSRF token and Origin needed
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from runner.core import queues
from runner.errors import GalleyError
from runner.ops import dlq, registry, status, top
from runner.ops.dashboard import jobs
from runner.ops.dashboard.guard import Guard, Refusal
from runner.ops.dashboard.history import History

log = logging.getLogger(__name__)

#: Largest POST body read (an action names at most MAX_IDS ids).
MAX_BODY_BYTES = 64 * 1024
MAX_IDS = 100
ACTIONS = ("redrive", "purge")
#: How many messages of each dead-letter queue the page lists.
DLQ_LIMIT = dlq.DEFAULT_LIMIT
#: How long a request waits for its turn behind another (a refresh, a listing or an action
#: waiting for AWS) before it is answered 503: a hanging endpoint then holds a few of the
#: server's threads, not one more at every refresh of every page.
TURN_WAIT_SECONDS = 15.0
#: Static files by route, and their types.
STATIC = {
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
}
#: Sent with every answer: the page loads only its own files, and no other site frames it.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Request:
    method: str
    #: The request target as sent: path and query.
    target: str
    #: Header names in lower case.
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


class Dashboard:
    """The routes of one dashboard server over one stack (``target``, read with ``clients``)."""

    def __init__(
        self,
        target: status.Target,
        clients: Callable[[str], Any],
        guard: Guard,
        *,
        interval: float = top.DEFAULT_INTERVAL,
    ) -> None:
        self.target, self.clients, self.guard = target, clients, guard
        self.interval = interval
        self.watch = top.Watch(target, clients)  # StatusError without a results bucket
        self.history = History()
        self._prefixes: list[str] = []
        #: Frames one at a time (the Watch keeps samples between them).
        self._frame_lock = threading.Lock()
        #: A listing receives every dead letter for a moment: a redrive at the same time would
        #: not see them, so listings, redrives and purges take turns.
        self._dlq_lock = threading.Lock()
        self.turn_wait = TURN_WAIT_SECONDS

    # --- dispatch ---

    def handle(self, request: Request) -> Response:
        """The answer to ``request``; never raises."""
        try:
            return self._route(request)
        except _Busy as error:
            return _error(503, str(error))
        except Exception as error:  # the server must not die; say what happened, in one line
            log.exception("dashboard: %s %s failed", request.method, request.target[:200])
            return _error(500, f"internal error: {type(error).__name__}: {error}")

    def _route(self, request: Request) -> Response:
        split = urlsplit(request.target)
        query = parse_qs(split.query, keep_blank_values=True)
        token = query.get("token", [None])[-1]
        if refusal := self.guard.check_access(request.headers, token):
            return _refused(refusal)
        path = split.path
        if request.method == "POST":
            if path != "/api/dlq":
                return _error(405 if path in _GETS else 404, f"no POST route {path!r}")
            if refusal := self.guard.check_post(request.headers):
                return _refused(refusal)
            return self.act(request.body)
        if request.method not in ("GET", "HEAD"):
            return _error(405, f"method {request.method} is not allowed here")
        if path == "/api/dlq" and (refusal := self.guard.check_csrf(request.headers)):
            return _refused(refusal)
        return self._get(path, query, token)

    def _get(self, path: str, query: dict[str, list[str]], token: str | None) -> Response:
        if path == "/":
            return self._page(token)
        if path in STATIC:
            name, kind = STATIC[path]
            return Response(200, _static(name), kind)
        if path == "/api/overview":
            return self.overview()
        if path == "/api/dlq":
            return self.dead_letters()
        if path == "/api/job":
            return self.job(query.get("id", [""])[-1])
        return _error(404, f"no route {path!r}")

    def _page(self, token: str | None) -> Response:
        if token is not None and self.guard.token is not None:
            # the token leaves the address bar (and history) for a cookie
            return Response(303, b"", "text/plain", {"Location": "/", **_cookie(self.guard)})
        page = _static("index.html").decode()
        page = page.replace("{{csrf}}", self.guard.csrf).replace(
            "{{interval}}", f"{self.interval:g}"
        )
        return Response(200, page.encode(), "text/html; charset=utf-8")

    # --- reads ---

    def overview(self) -> Response:
        """A `galley top` frame as JSON, with the queues' depth history."""
        with self._turn(self._frame_lock, "the refresh before this one"):
            try:
                frame = self.watch.frame()
            except GalleyError as error:  # the stack cannot be reached at all (yet)
                return _error(503, str(error))
            except (ClientError, BotoCoreError) as error:
                return _error(503, registry.reason(error))
        at = frame.at.timestamp()
        self.history.add(at, frame.queues)
        self._prefixes = sorted({w.results_prefix for w in frame.registry.workers})
        return _json(
            200,
            {
                "source": frame.source,
                "bucket": frame.bucket,
                "at": at,
                "rate": frame.rate,
                "queues": [_queue(q) for q in frame.queues],
                "history": self.history.as_dict(),
                "workers": [{"name": w.name, **w.as_dict()} for w in frame.registry.workers],
                "gone": frame.registry.gone,
                "notes": frame.registry.notes,
                "registry_problem": frame.registry.problem,
                "tasks": frame.tasks,
                "jobs": [_job(job) for job in frame.jobs],
            },
        )

    def dead_letters(self) -> Response:
        """Each dead-letter queue's messages, newest failure first (a peek: see runner.ops.dlq)."""
        sqs = self.clients("sqs")
        listed = []
        with self._turn(self._dlq_lock, "a dead-letter listing or action"):
            for role in queues.ROLES:
                listed.append(self._letters(sqs, role))
        return _json(200, {"queues": listed, "limit": DLQ_LIMIT})

    def _letters(self, sqs: Any, role: str) -> dict[str, Any]:
        url = self.target.dead_letter_queues.get(role)
        found: dict[str, Any] = {"role": role, "name": f"{role} DLQ", "url": url, "letters": []}
        if url is None:
            found["problem"] = f"not set ({dlq.ROLES[role].variable})"
            return found
        try:
            if dlq.count(sqs, url):
                letters = sorted(dlq.peek(sqs, url, DLQ_LIMIT), key=_newest_first)
                found["letters"] = [letter.as_dict() for letter in letters]
        except (ClientError, BotoCoreError) as error:
            found["problem"] = registry.reason(error)
        return found

    def job(self, job_id: str) -> Response:
        """One job by id: 400 for what cannot be an id, 404 for no such job."""
        if not self.target.bucket:
            return _error(503, "no results bucket: jobs cannot be looked up")
        try:
            found = jobs.lookup(self.clients("s3"), self.target.bucket, self._prefixes, job_id)
        except ValueError as error:
            return _error(400, str(error))
        except jobs.NoSuchJob as error:
            return _error(404, str(error))
        except jobs.Unreadable as error:
            return _error(502, str(error))
        return _json(200, {"job": found})

    @contextmanager
    def _turn(self, lock: threading.Lock, before: str) -> Iterator[None]:
        """Holds ``lock``; _Busy (a 503) if ``before`` holds it past :attr:`turn_wait`."""
        if not lock.acquire(timeout=self.turn_wait):
            raise _Busy(f"{before} is still waiting for AWS; try again in a moment")
        try:
            yield
        finally:
            lock.release()

    # --- actions ---

    def act(self, body: bytes) -> Response:
        """Redrive or purge a dead-letter queue, as `galley dlq redrive` / `purge` do."""
        try:
            action, role, ids = _action(body)
        except ValueError as error:
            return _error(400, str(error))
        url = self.target.dead_letter_queues.get(role)
        if url is None:
            return _error(400, f"the {role} DLQ is not set ({dlq.ROLES[role].variable})")
        sqs = self.clients("sqs")
        try:
            with self._turn(self._dlq_lock, "a dead-letter listing or action"):
                if action == "purge":
                    return self._purge(sqs, role, url)
                return self._redrive(sqs, role, url, ids)
        except (ClientError, BotoCoreError) as error:
            return _error(502, f"SQS: {registry.reason(error)}")
        except GalleyError as error:
            return _error(400, str(error))

    def _purge(self, sqs: Any, role: str, url: str) -> Response:
        count = dlq.count(sqs, url)
        dlq.purge(sqs, url)
        return _json(200, {"purged": count, "message": f"purged the {role} DLQ ({count} messages)"})

    def _redrive(self, sqs: Any, role: str, url: str, ids: list[str] | None) -> Response:
        result = dlq.redrive(sqs, url, ids=ids)
        moved = [
            {
                "id": m.task_id or m.message_id,
                "task": m.task,
                "queue": m.queue,
                "spent_retries": m.spent_retries,
            }  # fmt: skip
            for m in result.moved
        ]
        failed = [{"id": f.task_id or f.message_id, "reason": f.reason} for f in result.failed]
        lines = [f"moved {m['task'] or '(undecodable)'} {m['id']}" for m in moved]
        lines += [f"not moved {f['id']}: {f['reason']}" for f in failed]
        summary = f"{len(moved)} moved, {len(failed)} not moved from the {role} DLQ"
        return _json(200, {"moved": moved, "not_moved": failed, "message": summary, "lines": lines})


class _Busy(Exception):
    """Another request holds what this one needs, past the wait (a 503)."""


# --- what a request holds ---

#: The GET routes (a POST to one of them is 405, not 404).
_GETS = frozenset({"/", "/api/overview", "/api/job", *STATIC})


def _action(body: bytes) -> tuple[str, str, list[str] | None]:
    """The action, the DLQ's role and the ids of a POST body; ValueError naming what is wrong."""
    if len(body) > MAX_BODY_BYTES:
        raise ValueError(f"the request body is over {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the request body is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError('the request body must be a JSON object: {"action": ..., "queue": ...}')
    if unknown := sorted(set(data) - {"action", "queue", "ids"}):
        raise ValueError(f"unknown field(s): {', '.join(map(repr, unknown))}")
    action, role = data.get("action"), data.get("queue")
    if action not in ACTIONS:
        raise ValueError(f"action: expected {' or '.join(ACTIONS)}, got {_shown(action)}")
    if role not in queues.ROLES:
        raise ValueError(f"queue: expected {' or '.join(queues.ROLES)}, got {_shown(role)}")
    ids = data.get("ids")
    if ids is None:
        return action, role, None
    if action == "purge":
        raise ValueError("purge takes no ids: it empties the whole queue")
    if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_IDS:
        raise ValueError(f"ids: expected a list of 1 to {MAX_IDS} job ids (or none for all)")
    return action, role, [jobs.check_id(one) for one in ids]


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:60] + "..."


# --- what an answer holds ---


def _queue(queue: status.QueueStatus) -> dict[str, Any]:
    return {
        "name": queue.name,
        "role": queue.role,
        "kind": queue.kind,
        "visible": queue.visible,
        "in_flight": queue.in_flight,
        "delayed": queue.delayed,
        "problem": queue.problem,
    }


def _job(job: top.Job) -> dict[str, Any]:
    progress = job.progress
    return {
        "worker": job.worker,
        "id": job.id,
        "task": job.task,
        "age": job.age,
        "progress": None
        if progress is None
        else {"done": progress.done, "total": progress.total, "fraction": progress.fraction},
    }


def _newest_first(letter: dlq.DeadLetter) -> float:
    return -letter.failed_at.timestamp() if letter.failed_at else math.inf


def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def _cookie(guard: Guard) -> dict[str, str]:
    return {"Set-Cookie": guard.cookie()}


def _refused(refusal: Refusal) -> Response:
    return _error(refusal.status, refusal.error)


def _error(code: int, message: str) -> Response:
    return _json(code, {"error": " ".join(message.split())})


def _json(code: int, data: Any) -> Response:
    return Response(code, json.dumps(_finite(data)).encode())


def _finite(value: Any) -> Any:
    """``value`` with every NaN and infinity as None: JSON.parse refuses them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value
