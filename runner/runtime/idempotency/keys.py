"""Idempotency keys: where a task's key comes from, and the S3 key of its record.

A key is the ``galley_idempotency_key`` message header (:data:`HEADER`) when the enqueue gave one,
else what the task's ``idempotency_key`` function (:data:`KEY_ATTRIBUTE`) returns for its
arguments. Its record is ``idempotency/<task name>/<sha256 of the key>`` in the results bucket
(:func:`record_key`). Duck-typed over Celery's task and request: no Celery import.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from runner.errors import IdempotencyKeyError
from runner.wire import codec

#: Where the records live in the results bucket (its lifecycle rule expires them).
PREFIX = "idempotency/"
#: The message header carrying an explicit key (``apply_async(headers={HEADER: key})``).
HEADER = codec.IDEMPOTENCY_HEADER
#: Task attribute: a callable receiving the task's ``*args, **kwargs`` and returning the key.
KEY_ATTRIBUTE = "idempotency_key"


def key_hash(key: str) -> str:
    """sha256 hex of the key's UTF-8 bytes: stable across processes and Python versions."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def record_key(task_name: str, key: str, prefix: str = PREFIX) -> str:
    """The S3 key of ``key``'s record for ``task_name``."""
    return f"{prefix}{task_name}/{key_hash(key)}"


def idempotency_key_for(task: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str | None:
    """The explicit header's key, else the task's key function's, else None."""
    request = task.request
    explicit = getattr(request, HEADER, None)
    if explicit is None:
        explicit = (getattr(request, "headers", None) or {}).get(HEADER)
    if explicit is not None:
        return _checked(task.name, explicit, f"the {HEADER} header")
    function = _key_function(task)
    if function is None:
        return None
    try:
        key = function(*args, **kwargs)
    except Exception as error:
        raise IdempotencyKeyError(
            f"{task.name}: its idempotency_key function raised {type(error).__name__}: {error}"
        ) from error
    return _checked(task.name, key, "its idempotency_key function")


def _key_function(task: Any) -> Callable[..., Any] | None:
    # A function given as a task option becomes a class attribute: read it unbound, or it
    # would receive the task as its first argument.
    function = inspect.getattr_static(task, KEY_ATTRIBUTE, None)
    if isinstance(function, staticmethod | classmethod):
        function = getattr(task, KEY_ATTRIBUTE)
    if function is None:
        return None
    if not callable(function):
        raise IdempotencyKeyError(
            f"{task.name}: idempotency_key must be a callable taking the task's arguments, "
            f"got {type(function).__name__}"
        )
    return function


def _checked(task_name: str, key: Any, source: str) -> str:
    if not isinstance(key, str):
        raise IdempotencyKeyError(
            f"{task_name}: {source} gave {type(key).__name__} {key!r}; a key must be a str"
        )
    if not key:
        raise IdempotencyKeyError(f"{task_name}: {source} gave an empty key")
    return key
