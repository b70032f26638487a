# Ported from Celery 5.7.0, celery/utils/saferepr.py. Celery's licence (BSD-3-Clause) follows.
#
# Copyright (c) 2017-2026 Asif Saif Uddin, core team & contributors. All rights reserved.
# Copyright (c) 2015-2016 Ask Solem & contributors. All rights reserved.
# Copyright (c) 2012-2014 GoPivotal, Inc.  All rights reserved.
# Copyright (c) 2009, 2010, 2011, 2012 Ask Solem, and individual contributors. All rights reserved.
#
# Redistribution and use in source and binary forms, with or without
# modification, are permitted provided that the following conditions are met:
#     * Redistributions of source code must retain the above copyright
#       notice, this list of conditions and the following disclaimer.
#     * Redistributions in binary form must reproduce the above copyright
#       notice, this list of conditions and the following disclaimer in the
#       documentation and/or other materials provided with the distribution.
#     * Neither the name of Ask Solem, nor the
#       names of its contributors may be used to endorse or promote products
#       derived from this software without specific prior written permission.
#
# THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
# AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO,
# THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR
# PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL Ask Solem OR CONTRIBUTORS
# BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR
# CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF
# SUBSTITUTE GOODS OR SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS
# INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN
# CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE)
# ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE
# POSSIBILITY OF SUCH DAMAGE.

"""A port of Celery 5.7's ``celery.utils.saferepr`` for ``argsrepr``/``kwargsrepr``.

The producer must write these headers exactly as Celery does: strings quoted its own way, long
values cut with '...', nesting deeper than ``maxlevels`` elided. Checked against Celery's own
function on fuzzed values in tests/unit/wire/test_codec.py.

Ported from Celery 5.7.0, ``celery/utils/saferepr.py`` (BSD-3-Clause; the notice is above), so
that the producer needs no Celery. What was changed: the output is meant to be identical; the
code is typed and restructured (``reprstream`` split into ``_scalar`` and ``_container``, the
dangling closing parens in ``_dangling``); ``celery.utils.text.truncate`` and ``pprint``'s
recursion marker are inlined; ``saferepr`` takes no ``seen`` argument and ``reprstream`` is not
public; ``_safetext``, a no-op on the ``str`` tokens it receives, is dropped.
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
