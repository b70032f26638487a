"""kombu's JSON (``kombu.utils.json``): type markers for datetime, date, time, Decimal, UUID, bytes.

Task arguments travel through this codec, so Galley encodes and decodes exactly as kombu does.
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
