"""Garbage SQS message bodies, for soaks (seeded, deterministic) and for hypothesis (shrinkable).

Each kind of garbage is written once, against a small :class:`Source` of choices; a
:class:`RandomSource` (a seeded ``random.Random``) makes :func:`random_bodies` reproducible for
a soak, and a :class:`DrawSource` (hypothesis's ``draw``) makes :data:`strategies` shrink like
any hypothesis strategy::

    for item in random_bodies(seed=7, n=120, task="soak.target"):
        if item.sendable:
            sqs.send_message(QueueUrl=url, MessageBody=item.body)

    @given(strategies.garbage(task="soak.target"))
    def test_something(item: Garbage) -> None: ...

The kinds (:data:`KINDS`): bytes read as text, plain text, arbitrary JSON, base64 of arbitrary
JSON, kombu envelopes (runner.wire.codec.build/encode_message) with headers or embed fields set to
any JSON value, envelopes whose body is not a 3-element array, a 5000-digit integer argument, lone
surrogates (JSON-escaped, or raw: SQS refuses those), unknown task names, and pickle
content-type. Envelopes name ``task`` (a task the worker knows) unless the kind is about the
name: a mutated envelope may still be a runnable job, and run.

SQS refuses some bodies when they are sent (:func:`sqs_accepts`: empty, too large, or holding a
character outside #x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF); ``Garbage.sendable``
says which, so a soak skips and counts them.
"""

from __future__ import annotations

import base64
import json
import pickle
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Protocol, TypeVar

from hypothesis import strategies as st

from runner.wire import codec

T = TypeVar("T")

#: SQS's limit on a message body (bytes of UTF-8).
MAX_BODY_BYTES = 256 * 1024
DEFAULT_QUEUE = "galley-jobs"
DEFAULT_TASK = "tasks.imports.import_records"
#: Headers of Celery's protocol 2 that mutated envelopes set to arbitrary values.
HEADERS = (
    "eta",
    "expires",
    "timelimit",
    "retries",
    "id",
    "task",
    "shadow",
    "argsrepr",
    "kwargsrepr",
    "root_id",
    "parent_id",
    "group",
    "group_index",
    "origin",
    "ignore_result",
    "stamps",
    "callbacks",
    "chord",
    "chain",
)
#: Fields of the body's third element (``embed``) that mutated envelopes set.
EMBED = ("callbacks", "errbacks", "chain", "chord")
#: Values that reach odd corners (Celery's parsing of times, limits and counters), besides
#: arbitrary JSON. No future date: a job due later would be sent on in delay hops, not settled.
AWKWARD = (
    "2001-02-03T04:05:06",
    "2001-02-03T04:05:06+00:00",
    "2001-02-03",
    "next tuesday",
    "",
    "9999-99-99T99:99:99",
    "2001-02-03T04:05:06+25:00",
    [1, 2],
    [None, None],
    [-1, None],
    ["abc", None],
    [1e300, 1],
    [0.001, None],
    [1, 2, 3],
    -1,
    0,
    True,
    1e308,
    10**30,
    "NaN",
    {},
    [],
    {"task": "no.such.task", "args": [], "kwargs": {}},
    [{"task": 1}],
)


class Source(Protocol):
    """The choices a garbage generator makes."""

    def integer(self, low: int, high: int) -> int: ...

    def choice(self, options: Sequence[T]) -> T: ...

    def text(self, max_size: int, alphabet: str | None = None) -> str:
        """Any characters (lone surrogates included) unless ``alphabet`` is given."""
        ...

    def binary(self, max_size: int) -> bytes: ...

    def real(self) -> float: ...


class RandomSource:
    """Choices from a seeded ``random.Random``: the same seed gives the same garbage."""

    #: (weight, first, last code point) of the characters ``text`` picks from.
    RANGES = (
        (60, 0x20, 0x7E),
        (8, 0x00, 0x1F),
        (10, 0xA0, 0xD7FF),
        (3, 0xD800, 0xDFFF),
        (8, 0xE000, 0xFFFF),
        (6, 0x10000, 0x10FFFF),
    )

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def integer(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def choice(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]

    def text(self, max_size: int, alphabet: str | None = None) -> str:
        size = self.rng.randint(0, max_size)
        if alphabet is not None:
            return "".join(self.rng.choice(alphabet) for _ in range(size))
        weights = [r[0] for r in self.RANGES]
        spans = self.rng.choices(self.RANGES, weights=weights, k=size)
        return "".join(chr(self.rng.randint(first, last)) for _, first, last in spans)

    def binary(self, max_size: int) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, max_size))

    def real(self) -> float:
        return self.rng.choice([0.0, -0.0, 0.5, -1.5, 1e-300, 1e300, self.rng.uniform(-1e6, 1e6)])


class DrawSource:
    """Choices drawn by hypothesis (inside ``st.composite``): shrinkable."""

    def __init__(self, draw: Callable[[st.SearchStrategy[Any]], Any]) -> None:
        self.draw = draw

    def integer(self, low: int, high: int) -> int:
        return int(self.draw(st.integers(low, high)))

    def choice(self, options: Sequence[T]) -> T:
        return options[self.integer(0, len(options) - 1)]

    def text(self, max_size: int, alphabet: str | None = None) -> str:
        chars = (
            st.characters(exclude_categories=()) if alphabet is None else st.sampled_from(alphabet)
        )
        return str(self.draw(st.text(chars, max_size=max_size)))

    def binary(self, max_size: int) -> bytes:
        return bytes(self.draw(st.binary(max_size=max_size)))

    def real(self) -> float:
        return float(self.draw(st.floats(allow_nan=False, allow_infinity=False)))


@dataclass(frozen=True)
class Garbage:
    kind: str
    body: str

    @property
    def sendable(self) -> bool:
        return sqs_accepts(self.body)


def sqs_accepts(body: str) -> bool:
    """Would SQS take ``body`` as a MessageBody (characters and size)?"""
    if not body:
        return False
    for char in body:
        code = ord(char)
        if not (
            code in (0x9, 0xA, 0xD)
            or 0x20 <= code <= 0xD7FF
            or 0xE000 <= code <= 0xFFFD
            or 0x10000 <= code <= 0x10FFFF
        ):
            return False
    return len(body.encode("utf-8")) <= MAX_BODY_BYTES


# --- values ---

IDENTIFIER = "abcdefghijklmnopqrstuvwxyz_."
#: kombu's JSON type markers, known and unknown (runner/wire/kombu_json.py).
MARKERS = ("datetime", "date", "time", "decimal", "uuid", "bytes", "base64", "pickle", "")


def json_value(src: Source, depth: int = 3, *, markers: bool = True) -> Any:
    """Any JSON value nested up to ``depth``; with ``markers``, now and then a kombu type marker
    (``{"__type__": ..., "__value__": ...}``), known or not."""
    kinds = ["null", "bool", "int", "real", "text", "text", "awkward"]
    if depth > 0:
        kinds += ["list", "object"] + (["marker"] if markers else [])
    kind = src.choice(kinds)
    if kind == "null":
        return None
    if kind == "bool":
        return bool(src.integer(0, 1))
    if kind == "int":
        return src.choice([src.integer(-(2**63), 2**63), src.integer(-3, 3), 2**64 + 1])
    if kind == "real":
        return src.real()
    if kind == "text":
        return src.text(12)
    if kind == "awkward":
        return src.choice(AWKWARD)
    if kind == "list":
        return [json_value(src, depth - 1, markers=markers) for _ in range(src.integer(0, 4))]
    if kind == "marker":
        return {"__type__": src.choice(MARKERS), "__value__": json_value(src, depth - 1)}
    return {
        src.text(8): json_value(src, depth - 1, markers=markers) for _ in range(src.integer(0, 4))
    }


def dumps(value: Any) -> str:
    """JSON text, non-ASCII as is unless it holds a lone surrogate (which UTF-8 cannot carry,
    nor SQS): then every non-ASCII character travels escaped (``\\ud800``)."""
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value)
    return text


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()


# --- the kinds ---


def _bytes_as_text(src: Source, task: str, queue: str) -> str:
    data = src.binary(src.choice([8, 200]))
    return data.decode(src.choice(["latin-1", "utf-8"]), errors=src.choice(["replace", "ignore"]))


def _plain_text(src: Source, task: str, queue: str) -> str:
    return src.text(200, alphabet=src.choice([None, '{}[]":,=+/ abcXYZ019\n\t']))


def _json(src: Source, task: str, queue: str) -> str:
    return dumps(json_value(src))


def _base64_json(src: Source, task: str, queue: str) -> str:
    return b64(dumps(json_value(src)))


def _uuid(src: Source) -> str:
    return str(uuid.UUID(int=src.integer(0, 2**128 - 1)))


def _message(src: Source, task: str, queue: str) -> codec.TaskMessage:
    """A well-formed task message (ids from ``src``, so the same choices give the same text)."""
    args = [json_value(src, 1, markers=False) for _ in range(src.integer(0, 3))]
    return codec.build(
        task,
        args,
        {"k": json_value(src, 1, markers=False)},
        queue=queue,
        task_id=_uuid(src),
        delivery_tag=_uuid(src),
        reply_to=_uuid(src),
        origin="garbage@soak",
    )


def _envelope(message: codec.TaskMessage) -> dict[str, Any]:
    envelope: dict[str, Any] = json.loads(codec.encode_message(message, sqs_base64=False))
    return envelope


def _outer(src: Source, envelope: dict[str, Any]) -> str:
    text = dumps(envelope)
    return b64(text) if src.integer(0, 3) else text  # kombu base64-encodes, by default


def _mutated_headers(src: Source, task: str, queue: str) -> str:
    message = _message(src, task, queue)
    envelope = _envelope(message)
    body = [message.args, message.kwargs, dict(message.embed)]
    for _ in range(src.integer(1, 3)):
        value = src.choice([json_value(src, 2), src.choice(AWKWARD)])
        if src.integer(0, 3):
            envelope["headers"][src.choice(HEADERS)] = value
        else:
            body[2][src.choice(EMBED)] = value
    envelope["body"] = b64(dumps(body))
    return _outer(src, envelope)


def _not_three_elements(src: Source, task: str, queue: str) -> str:
    message = _message(src, task, queue)
    envelope = _envelope(message)
    body = src.choice(
        [
            [message.args, message.kwargs],
            [message.args, message.kwargs, {}, {}],
            [],
            {"args": message.args},
            json_value(src),
            [json_value(src), json_value(src), json_value(src)],
        ]
    )
    envelope["body"] = b64(dumps(body))
    return _outer(src, envelope)


def _huge_integer(src: Source, task: str, queue: str) -> str:
    message = _message(src, task, queue)
    envelope = _envelope(message)
    digits = "9" * 5000  # past Python's 4300-digit limit on int <-> str
    envelope["body"] = b64(f"[[{digits}], {{}}, {{}}]")
    return _outer(src, envelope)


def _lone_surrogate(src: Source, task: str, queue: str) -> str:
    surrogate = chr(src.integer(0xD800, 0xDFFF))
    message = _message(src, task, queue)
    envelope = _envelope(message)
    where = src.choice(["arg", "header", "raw"])
    if where == "arg":
        envelope["body"] = b64(dumps([[f"x{surrogate}y"], {}, {}]))
    elif where == "header":
        envelope["headers"]["argsrepr"] = f"({surrogate!s},)"
    else:  # the raw character in the body text: SQS refuses it
        return f"{_outer(src, envelope)}{surrogate}"
    return _outer(src, envelope)


def _unknown_task(src: Source, task: str, queue: str) -> str:
    name = "garbage." + src.text(20, alphabet=IDENTIFIER) + src.choice(["", "\u00e9", " x"])
    return _outer(src, _envelope(_message(src, name, queue)))


def _pickle(src: Source, task: str, queue: str) -> str:
    envelope = _envelope(_message(src, task, queue))
    envelope["content-type"] = codec.PICKLE_CONTENT_TYPE
    envelope["content-encoding"] = "binary"
    payload = pickle.dumps(([json_value(src, 1)], {}, {}), protocol=src.integer(0, 5))
    envelope["body"] = base64.b64encode(payload).decode()
    return _outer(src, envelope)


GENERATORS: dict[str, Callable[[Source, str, str], str]] = {
    "bytes-as-text": _bytes_as_text,
    "plain-text": _plain_text,
    "json": _json,
    "base64-json": _base64_json,
    "mutated-headers": _mutated_headers,
    "not-three-elements": _not_three_elements,
    "5000-digit-integer": _huge_integer,
    "lone-surrogate": _lone_surrogate,
    "unknown-task": _unknown_task,
    "pickle": _pickle,
}
KINDS = tuple(GENERATORS)


def make(
    kind: str, src: Source, *, task: str = DEFAULT_TASK, queue: str = DEFAULT_QUEUE
) -> Garbage:
    return Garbage(kind, GENERATORS[kind](src, task, queue))


def random_bodies(
    seed: int, n: int, *, task: str = DEFAULT_TASK, queue: str = DEFAULT_QUEUE
) -> list[Garbage]:
    """``n`` garbage bodies, every kind in turn; item ``i`` depends on ``seed`` and ``i`` only
    (``random_bodies(s, 50)`` starts with ``random_bodies(s, 10)``)."""
    return [
        make(
            KINDS[i % len(KINDS)],
            RandomSource(random.Random(f"{seed}:{i}")),  # noqa: S311 - test data
            task=task,
            queue=queue,
        )  # noqa: S311
        for i in range(n)
    ]


def _garbage(
    kind: str | None = None, *, task: str = DEFAULT_TASK, queue: str = DEFAULT_QUEUE
) -> st.SearchStrategy[Garbage]:
    @st.composite
    def draw_one(draw: Callable[[st.SearchStrategy[Any]], Any]) -> Garbage:
        chosen = kind if kind is not None else draw(st.sampled_from(KINDS))
        return make(chosen, DrawSource(draw), task=task, queue=queue)

    return draw_one()


#: hypothesis strategies: ``strategies.garbage(kind=None, task=..., queue=...)`` gives
#: :class:`Garbage`; ``strategies.bodies(...)`` its body only; ``strategies.json_values()``.
strategies = SimpleNamespace(
    garbage=_garbage,
    bodies=lambda kind=None, **options: _garbage(kind, **options).map(lambda g: g.body),
    json_values=lambda depth=3: st.composite(lambda draw: json_value(DrawSource(draw), depth))(),
)
