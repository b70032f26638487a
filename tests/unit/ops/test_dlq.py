"""runner.ops.dlq without AWS: how a reason is shortened for the `galley dlq list` table."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from runner.ops import dlq

_WORD_CHAR = re.compile(r"\w")

#: Reasons as the worker writes them (words, punctuation, ARNs, newlines from tracebacks), and
#: any text at all.
_WORDS = st.lists(
    st.text(min_size=1, alphabet=st.characters(blacklist_categories=["Zs", "Zl", "Zp", "Cc"])),
    max_size=30,
)
_SPACES = st.text(alphabet=" \t\n\r\x0b\x0c\x1c\x85\u2028\u3000", min_size=1, max_size=3)
REASONS = st.one_of(
    st.text(),
    st.tuples(_WORDS, _SPACES).map(lambda parts: parts[1].join(parts[0])),
)


def _ends_a_word(line: str, end: int) -> bool:
    """True if ``line[:end]`` stops at a word boundary: before a space, or at the end of a run
    of word characters (inside a token wider than the whole column, such as an ARN)."""
    if end == 0 or end == len(line) or line[end] == " ":
        return True
    return bool(_WORD_CHAR.fullmatch(line[end - 1])) and not _WORD_CHAR.fullmatch(line[end])


@given(reason=REASONS, width=st.integers(min_value=1, max_value=120))
@example(
    reason="ClientError: An error occurred (AccessDenied) when calling the SendMessage "
    "operation: not authorized",
    width=70,
)
def test_a_shortened_reason_is_one_line_within_the_width_cut_at_a_word_boundary(
    reason: str, width: int
) -> None:
    # WHEN a reason is shortened for a column of ``width`` characters
    short = dlq.shorten_reason(reason, width)
    # THEN it is one line, and no wider than the column
    assert short.splitlines() in ([], [short])
    assert len(short) <= width
    # AND it is the whole reason (on one line), or a prefix of it cut at a word boundary and
    # marked with an ellipsis
    line = " ".join(reason.split())
    if short != line:
        kept = short.removesuffix(dlq.ELLIPSIS)
        assert short == kept + dlq.ELLIPSIS
        assert line.startswith(kept)
        assert _ends_a_word(line, len(kept)), (line, kept)


@pytest.mark.parametrize(
    ("reason", "width", "short"),
    [
        (
            "ClientError: An error occurred (AccessDenied) when calling the SendMessage operation",
            40,
            "ClientError: An error occurred…",
        ),
        ("task FAILURE: ValueError: x", 70, "task FAILURE: ValueError: x"),
        ("first line\n  second\tline", 70, "first line second line"),
        ("arn:aws:iam::123456789012:role/worker is not allowed", 20, "arn:aws:iam…"),
        ("a" * 30, 10, "…"),
    ],
)
def test_shortened_reasons(reason: str, width: int, short: str) -> None:
    assert dlq.shorten_reason(reason, width) == short
