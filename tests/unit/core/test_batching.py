"""runner.core.batching: every item once and in order, no batch over SQS's limits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.core import limits
from runner.core.batching import batched, batched_by_size

LIMIT = limits.MAX_BATCH_PAYLOAD_BYTES

#: Sizes that reach the byte limit often: tiny, around a tenth, around the limit, and over it.
sizes = st.one_of(
    st.integers(0, 100),
    st.integers(LIMIT // 11, LIMIT // 9),
    st.integers(LIMIT // 3, LIMIT // 2),
    st.integers(LIMIT - 10, LIMIT + 10),
    st.integers(0, 3 * LIMIT),
)


@given(st.lists(st.integers()), st.integers(1, 25))
def test_batched_keeps_every_item_once_in_order(items: list[int], size: int) -> None:
    chunks = list(batched(items, size))
    assert [item for chunk in chunks for item in chunk] == items
    assert all(1 <= len(chunk) <= size for chunk in chunks)
    assert all(len(chunk) == size for chunk in chunks[:-1])  # only the last may be short


@given(st.lists(st.integers()))
def test_batched_defaults_to_sqs_batch_size(items: list[int]) -> None:
    chunks = list(batched(items))
    assert all(len(chunk) <= limits.MAX_BATCH_MESSAGES for chunk in chunks)
    assert len(chunks) == -(-len(items) // limits.MAX_BATCH_MESSAGES)


def test_batched_takes_any_iterable() -> None:
    assert list(batched(iter(range(25)))) == [
        list(range(10)),
        list(range(10, 20)),
        list(range(20, 25)),
    ]
    assert list(batched([])) == []


def test_batched_refuses_an_empty_size() -> None:
    with pytest.raises(ValueError):
        list(batched([1], 0))


@given(st.lists(sizes, max_size=60))
def test_batched_by_size_keeps_every_item_once_in_order(lengths: list[int]) -> None:
    items = list(enumerate(lengths))  # distinct items, even of equal sizes
    chunks = list(batched_by_size(items, lambda item: item[1]))
    assert [item for chunk in chunks for item in chunk] == items
    assert all(chunk for chunk in chunks)


@given(st.lists(sizes, max_size=60))
def test_no_batch_is_over_the_limits(lengths: list[int]) -> None:
    for chunk in batched_by_size(lengths, lambda length: length):
        assert len(chunk) <= limits.MAX_BATCH_MESSAGES
        # only a single item larger than the limit on its own makes a batch over it
        assert sum(chunk) <= LIMIT or len(chunk) == 1


@given(st.lists(sizes, max_size=60))
def test_batches_are_as_full_as_the_limits_allow(lengths: list[int]) -> None:
    """A batch ends only when it is full or the next item would not fit (no needless calls)."""
    chunks = list(batched_by_size(lengths, lambda length: length))
    for chunk, following in zip(chunks, chunks[1:], strict=False):
        assert len(chunk) == limits.MAX_BATCH_MESSAGES or sum(chunk) + following[0] > LIMIT


@given(st.lists(sizes, max_size=30), st.integers(LIMIT + 1, 4 * LIMIT), st.data())
def test_an_item_over_the_byte_limit_gets_a_batch_of_its_own(
    lengths: list[int], huge: int, data: st.DataObject
) -> None:
    at = data.draw(st.integers(0, len(lengths)))
    items = [*lengths[:at], huge, *lengths[at:]]
    tagged = list(enumerate(items))
    chunks = list(batched_by_size(tagged, lambda item: item[1]))
    assert [item for chunk in chunks for item in chunk] == tagged
    assert [(at, huge)] in chunks


def test_the_byte_limit_is_inclusive_and_counts_are_capped() -> None:
    half = LIMIT // 2
    assert list(batched_by_size([half, LIMIT - half, 1], lambda n: n)) == [
        [half, LIMIT - half],
        [1],
    ]
    assert [len(c) for c in batched_by_size([0] * 25, lambda n: n)] == [10, 10, 5]
    assert list(batched_by_size([LIMIT + 1, LIMIT + 1], lambda n: n)) == [
        [LIMIT + 1],
        [LIMIT + 1],
    ]
    assert list(batched_by_size([], lambda n: n)) == []


def test_custom_limits() -> None:
    assert list(batched_by_size([1, 1, 1, 5, 1], lambda n: n, max_items=2, max_bytes=4)) == [
        [1, 1],
        [1],
        [5],
        [1],
    ]
    with pytest.raises(ValueError):
        list(batched_by_size([1], lambda n: n, max_items=0))
