"""Splitting work into the batches SQS's batch calls accept.

:func:`batched` cuts by count: ReceiveMessage, DeleteMessageBatch and
ChangeMessageVisibilityBatch take at most :data:`limits.MAX_BATCH_MESSAGES` entries.
:func:`batched_by_size` also keeps each batch's bytes within
:data:`limits.MAX_BATCH_PAYLOAD_BYTES`, as SendMessageBatch requires.

Both keep every item exactly once and in order. (``itertools.batched`` is Python 3.12+ and yields
tuples; these yield lists.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from runner.core import limits

T = TypeVar("T")


def batched(items: Iterable[T], size: int = limits.MAX_BATCH_MESSAGES) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items of ``items`` (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def batched_by_size(
    items: Iterable[T],
    size_of: Callable[[T], int],
    *,
    max_items: int = limits.MAX_BATCH_MESSAGES,
    max_bytes: int = limits.MAX_BATCH_PAYLOAD_BYTES,
) -> Iterator[list[T]]:
    """Consecutive lists of ``items``, each of at most ``max_items`` items whose ``size_of``
    add up to at most ``max_bytes``.

    An item larger than ``max_bytes`` on its own gets a batch of its own (the call that sends it
    is refused for that batch alone), never dropped and never looped on.
    """
    if max_items < 1:
        raise ValueError(f"max_items must be at least 1, got {max_items}")
    chunk: list[T] = []
    total = 0
    for item in items:
        size = size_of(item)
        if chunk and (len(chunk) == max_items or total + size > max_bytes):
            yield chunk
            chunk, total = [], 0
        chunk.append(item)
        total += size
    if chunk:
        yield chunk
