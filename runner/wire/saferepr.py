"""A port of Celery 5.7's ``celery.utils.saferepr`` for ``argsrepr``/``kwargsrepr``.

The producer must write these headers exactly as Celery does: strings quoted its own way, long
values cut with '...', nesting deeper than ``maxlevels`` elided. Checked against Celery's own
function on fuzzed values in tests/unit/test_wire.py.
"""

from __future__ import annotations

import traceback
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from itertools import chain
from numbers import Number
from typing import Any, NamedTuple


class _Lit(NamedTuple):
    value: str
    truncate: bool
    direction: int


class _Key(NamedTuple):
    value: Any


class _Quoted(NamedTuple):
    value: str | bytes


class _Dirty(NamedTuple):
    objid: int


_DICT = (_Lit("{", False, +1), _Lit("}", False, -1))
_LIST = (_Lit("[", False, +1), _Lit("]", False, -1))
_TUPLE = (_Lit("(", False, +1), _Lit(")", False, -1))
_TUPLE_END_SV = _Lit(",)", False, -1)
_KVSEP = _Lit(": ", True, 0)
_SEP = _Lit(", ", True, 0)


def saferepr(obj: Any, maxlen: int | None = None, maxlevels: int = 3) -> str:
    """``celery.utils.saferepr.saferepr``: Celery's ``argsrepr``/``kwargsrepr``."""
    return "".join(_saferepr(obj, maxlen, maxlevels))


def _truncate(text: str, maxlen: int | None) -> str:
    if maxlen and len(text) >= maxlen:
        return text[:maxlen].rsplit(" ", 1)[0] + "..."
    return text


def _format_chars(value: str | bytes, maxlen: int | None) -> str:
    if isinstance(value, bytes):
        chunk, more = (value[:maxlen], "...") if maxlen and len(value) > maxlen else (value, "")
        try:
            shown = chunk.decode("utf-8")
        except UnicodeDecodeError:
            shown = chunk.hex()
        return f"b'{shown}{more}'"
    return "'{}'".format(_truncate(value, maxlen).replace("'", "\\'"))


def _repr(obj: Any) -> str:
    try:
        return repr(obj)
    except Exception as exc:
        stack = "\n".join(traceback.format_stack())
        return f"<Unrepresentable {type(obj)!r}{id(obj):#x}: {exc!r} {stack!r}>"


def _saferepr(obj: Any, maxlen: int | None, maxlevels: int) -> Iterator[str]:
    stack: deque[Iterator[Any]] = deque([iter([obj])])
    for token, it in _reprstream(stack, maxlevels):
        if maxlen is not None and maxlen <= 0:
            if isinstance(token, _Lit) and token.direction < 0:
                yield token.value
                continue
            yield ", ..."
            stack.append(chain([token], it))
            break
        if isinstance(token, _Lit):
            val = token.value
        elif isinstance(token, _Key):
            val = saferepr(token.value, maxlen, maxlevels)
        elif isinstance(token, _Quoted):
            val = _format_chars(token.value, maxlen)
        else:
            val = _truncate(token, maxlen)
        yield val
        if maxlen is not None:
            maxlen -= len(val)
    yield from _dangling(stack)


def _dangling(stack: deque[Iterator[Any]]) -> Iterator[str]:
    """Past ``maxlen``: the closing parens of the containers that were opened."""
    depth = 0
    for rest in stack:
        for item in rest:
            if isinstance(item, _Lit) and not item.truncate:
                depth += item.direction
                if depth < 0:
                    depth = 0
                    yield item.value


def _chainlist(items: Iterable[Any]) -> Iterator[Any]:
    items = list(items)
    for i, value in enumerate(items):
        yield value
        if i < len(items) - 1:
            yield _SEP


def _chaindict(mapping: Mapping[Any, Any]) -> Iterator[Any]:
    for i, (key, value) in enumerate(mapping.items()):
        yield _Key(key)
        yield _KVSEP
        yield value
        if i < len(mapping) - 1:
            yield _SEP


def _container(val: Any) -> tuple[_Lit, _Lit, Iterator[Any]] | None:
    if isinstance(val, set | frozenset):
        start, end = _Lit("{", False, +1), _Lit("}", False, -1)
        if type(val) is not set:
            start = _Lit(f"{type(val).__name__}({{", False, +1)
            end = _Lit("})", False, -1)
        return start, end, _chainlist(val)
    if isinstance(val, tuple):
        return _TUPLE[0], _TUPLE_END_SV if len(val) == 1 else _TUPLE[1], _chainlist(val)
    if isinstance(val, dict):
        return _DICT[0], _DICT[1], _chaindict(val)
    if isinstance(val, list):
        return _LIST[0], _LIST[1], _chainlist(val)
    return None


def _scalar(val: Any) -> Any:
    """The token for a value that is not a container, or None if it is one."""
    if isinstance(val, Decimal):
        return _repr(val)
    if isinstance(val, Number):
        return str(val)
    if isinstance(val, str | bytes):
        return _Quoted(val)
    if isinstance(val, set | frozenset) and not val:
        return f"{type(val).__name__}()"
    if isinstance(val, range) or not isinstance(val, set | frozenset | tuple | dict | list):
        return _repr(val)
    return None


def _reprstream(stack: deque[Iterator[Any]], maxlevels: int) -> Iterator[tuple[Any, Any]]:
    seen: set[int] = set()
    level = 0
    while stack:
        it = stack.popleft()
        for val in it:
            if isinstance(val, _Dirty):
                seen.discard(val.objid)
                continue
            if isinstance(val, _Lit):
                level += val.direction
                yield val, it
                continue
            if isinstance(val, _Key):
                yield val, it
                continue
            token = _scalar(val)
            if token is not None:
                yield token, it
                continue
            container = _container(val)
            assert container is not None
            start, end, items = container
            if maxlevels and level >= maxlevels:
                yield _Lit(f"{start.value}...{end.value}", False, 0), it
                continue
            if id(val) in seen:
                yield f"<Recursion on {type(val).__name__} with id={id(val)}>", it
                continue
            seen.add(id(val))
            stack.append(chain([start], items, [_Dirty(id(val)), end], it))
            break
