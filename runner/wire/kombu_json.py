# Ported from kombu 5.7.0, kombu/utils/json.py. kombu's licence (BSD-3-Clause) follows.
#
# Copyright (c) 2015-2016 Ask Solem & contributors.  All rights reserved.
# Copyright (c) 2012-2014 GoPivotal Inc & contributors.  All rights reserved.
# Copyright (c) 2009-2012, Ask Solem & contributors.  All rights reserved.
#
# Redistribution and use in source and binary forms, with or without
# modification, are permitted provided that the following conditions are met:
#     * Redistributions of source code must retain the above copyright
#       notice, this list of conditions and the following disclaimer.
#     * Redistributions in binary form must reproduce the above copyright
#       notice, this list of conditions and the following disclaimer in the
#       documentation and/or other materials provided with the distribution.
#     * Neither the name of Ask Solem nor the
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

"""kombu's JSON (``kombu.utils.json``): type markers for datetime, date, time, Decimal, UUID, bytes.

Task arguments travel through this codec, so Galley encodes and decodes exactly as kombu does.

Ported from kombu 5.7.0, ``kombu/utils/json.py`` (BSD-3-Clause; the notice is above), so that
the producer and the operator tools need no kombu. What was changed: the wire format is
untouched (the same ``{"__type__": ..., "__value__": ...}`` markers for the same types); the
type table is fixed (no ``register_type``), Django's lazy strings are not special-cased, there
is no ``loads`` (callers pass :func:`object_hook` to ``json.loads``), :func:`dumps` takes no
options, and an unknown marker or a malformed value raises :class:`KombuJSONError` (a
``ValueError``) naming it, where kombu raises ``ValueError("Unsupported type", ...)`` or
whatever the decoder raised. Typed.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from runner.errors import KombuJSONError


class JSONEncoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        reducer = getattr(o, "__json__", None)
        if reducer is not None:
            return reducer()
        for kind, marker, encoder in _ENCODERS:
            if isinstance(o, kind):
                return {"__type__": marker, "__value__": encoder(o)}
        if isinstance(o, bytes):
            try:
                return {"__type__": "bytes", "__value__": o.decode("utf-8")}
            except UnicodeDecodeError:
                return {"__type__": "base64", "__value__": base64.b64encode(o).decode("utf-8")}
        return super().default(o)


# Order matters: datetime is a date.
_ENCODERS: tuple[tuple[type, str, Callable[[Any], Any]], ...] = (
    (datetime, "datetime", datetime.isoformat),
    (date, "date", date.isoformat),
    (time, "time", time.isoformat),
    (Decimal, "decimal", str),
    (uuid.UUID, "uuid", lambda o: {"hex": o.hex}),
)
_DECODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": datetime.fromisoformat,
    "date": lambda v: datetime.fromisoformat(v).date(),
    "time": time.fromisoformat,
    "decimal": Decimal,
    "uuid": lambda v: uuid.UUID(**v),
    "bytes": lambda v: v.encode("utf-8"),
    "base64": lambda v: base64.b64decode(v.encode("utf-8")),
}


def dumps(value: Any) -> str:
    return json.dumps(value, cls=JSONEncoder)


def object_hook(obj: dict[str, Any]) -> Any:
    if obj.keys() != {"__type__", "__value__"}:
        return obj
    decoder = _DECODERS.get(obj["__type__"])
    if decoder is None:
        raise KombuJSONError(f"unsupported kombu JSON type marker {obj['__type__']!r}")
    try:
        return decoder(obj["__value__"])
    except (TypeError, ValueError, AttributeError, ArithmeticError, binascii.Error):
        marker, value = obj["__type__"], obj["__value__"]
        raise KombuJSONError(f"bad kombu JSON {marker!r} value {value!r:.200}") from None
