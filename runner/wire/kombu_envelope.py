"""kombu's envelope around a task message, and the SQS ``MessageBody`` around that.

Layers 2 and 3 of :mod:`runner.wire.codec`: kombu's envelope (``{"body", "content-encoding",
"content-type", "headers", "properties"}``, the body base64-encoded as kombu's virtual channel
does) and the SQS transport's base64 of the whole envelope (``sqs_base64_encoding``). Knows
nothing of Celery's protocol: the body is text, the headers a dict. Reading raises
:class:`WireError` for anything kombu's transport or Celery's worker would not accept.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from runner.errors import KombuJSONError, WireError
from runner.wire import kombu_json

JSON_CONTENT_TYPE = "application/json"
PICKLE_CONTENT_TYPE = "application/x-python-serialize"
CONTENT_ENCODING = "utf-8"
#: kombu's virtual channel encodes every body with this codec (``Channel.body_encoding``).
BODY_ENCODING = "base64"

#: kombu's ``Channel.B64_REGEX``: what the SQS transport tries to base64-decode.
_B64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def wrap(
    body_text: str,
    *,
    headers: Mapping[str, Any],
    properties: Mapping[str, Any],
    content_type: str = JSON_CONTENT_TYPE,
    content_encoding: str = CONTENT_ENCODING,
    sqs_base64: bool = True,
) -> str:
    """The SQS ``MessageBody`` kombu's SQS transport sends for a serialised body."""
    body: str = body_text
    if properties.get("body_encoding") == BODY_ENCODING:
        body = base64.b64encode(body_text.encode()).decode()
    envelope = {
        "body": body,
        "content-encoding": content_encoding,
        "content-type": content_type,
        "headers": headers,
        "properties": properties,
    }
    text = kombu_json.dumps(envelope)
    return base64.b64encode(text.encode()).decode() if sqs_base64 else text


def read(message_body: str | bytes) -> dict[str, Any]:
    """The envelope of an SQS ``MessageBody`` (base64 or plain JSON), checked to be kombu's."""
    return _envelope(_outer_text(message_body))


def with_headers(message_body: str, changes: Mapping[str, Any]) -> str:
    """``message_body`` with the headers in ``changes`` set, the rest as it was: the body field
    (the arguments) byte for byte, every other field and the headers' order kept, base64 if it
    was. The envelope is read as plain JSON, so kombu's type markers travel untouched."""
    read(message_body)  # a WireError for anything that is not kombu's envelope
    is_base64 = not message_body.strip().startswith("{")
    envelope = json.loads(_outer_text(message_body))
    envelope["headers"] = {**(envelope.get("headers") or {}), **changes}
    text = kombu_json.dumps(envelope)
    return base64.b64encode(text.encode()).decode() if is_base64 else text


def body_text(envelope: Mapping[str, Any]) -> str:
    """The serialised body an envelope carries, once its content type and encodings are ones
    Galley reads (JSON, UTF-8, body in base64 or plain, no compression)."""
    _check_content(envelope, envelope["headers"])
    return _body_text(envelope["body"], envelope["properties"])


def loads(text: str, what: str) -> Any:
    """JSON text with kombu's type markers decoded; ``what`` names it in a :class:`WireError`."""
    try:
        return json.loads(text, object_hook=kombu_json.object_hook)
    except json.JSONDecodeError as error:
        raise WireError(f"{what} is not JSON: {error.msg} at position {error.pos}") from None
    except KombuJSONError as error:
        raise WireError(str(error)) from None
    except RecursionError:
        raise WireError(f"{what} is nested too deeply to read") from None
    except ValueError as error:  # e.g. an integer past Python's 4300-digit conversion limit
        raise WireError(f"{what} cannot be read: {error}") from None


def _outer_text(message_body: str | bytes) -> str:
    raw = message_body.encode() if isinstance(message_body, str) else bytes(message_body)
    candidate = raw.strip()
    if not candidate:
        raise WireError("message body is empty")
    if candidate.startswith(b"{"):
        return _utf8(candidate, "message body")
    if not _B64.fullmatch(candidate.decode("latin-1")):
        raise WireError("message body is neither base64 nor a JSON object")
    try:
        decoded = base64.b64decode(candidate, validate=True)
    except (binascii.Error, ValueError):
        raise WireError("message body is not valid base64") from None
    return _utf8(decoded, "base64-decoded message body")


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError(f"{what} is not UTF-8 text") from None


def _envelope(text: str) -> dict[str, Any]:
    envelope = loads(text, "kombu envelope")
    if not isinstance(envelope, dict):
        raise WireError(f"kombu envelope is a JSON {type(envelope).__name__}, not an object")
    missing = [k for k in ("body", "properties") if k not in envelope]
    if missing:
        raise WireError(f"JSON object is not a kombu message: no {' or '.join(map(repr, missing))}")
    envelope.setdefault("headers", {})
    for key in ("headers", "properties"):
        if not isinstance(envelope[key], dict):
            raise WireError(f"kombu envelope field {key!r} is not an object")
    return envelope


def _check_content(envelope: Mapping[str, Any], headers: Mapping[str, Any]) -> None:
    content_type = envelope.get("content-type")
    if content_type == PICKLE_CONTENT_TYPE:
        raise WireError(f"unsupported content-type {content_type!r} (pickle is refused; JSON only)")
    if content_type != JSON_CONTENT_TYPE:
        raise WireError(f"unsupported content-type {content_type!r} (only {JSON_CONTENT_TYPE!r})")
    encoding = envelope.get("content-encoding")
    if not isinstance(encoding, str) or encoding.lower() != CONTENT_ENCODING:
        raise WireError(f"unsupported content-encoding {encoding!r} (only 'utf-8')")
    if headers.get("compression"):
        raise WireError(f"compressed body ({headers['compression']!r}) is not supported")


def _body_text(body: Any, properties: Mapping[str, Any]) -> str:
    body_encoding = properties.get("body_encoding")
    if not isinstance(body, str):
        raise WireError(f"kombu envelope 'body' is a {type(body).__name__}, not a string")
    if body_encoding in (None, "utf-8"):
        return body
    if body_encoding != BODY_ENCODING:
        raise WireError(f"unsupported body_encoding {body_encoding!r} (only 'base64')")
    try:
        decoded = base64.b64decode(body.encode(), validate=True)
    except (binascii.Error, ValueError):
        raise WireError("message body says body_encoding 'base64' but is not base64") from None
    return _utf8(decoded, "task body")
