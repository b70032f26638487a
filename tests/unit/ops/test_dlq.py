"""runner.ops.dlq without AWS: how a reason is shortened for the `galley dlq list` table, and
which dead-letter queue `--queue` names."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from runner.core import settings
from runner.errors import GalleyError
from runner.local import sam
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


JOBS_DLQ = "https://sqs.eu-west-1.amazonaws.com/123456789012/galley-jobs-dlq"
LONG_DLQ = "https://sqs.eu-west-1.amazonaws.com/123456789012/galley-long-jobs-dlq"
OTHER = "http://127.0.0.1:5000/123456789012/elsewhere"


def _config(**urls: str) -> settings.DlqSettings:
    return settings.DlqSettings.model_validate(urls)


@pytest.mark.parametrize(
    ("queue", "url"),
    [
        (None, JOBS_DLQ),
        ("jobs", JOBS_DLQ),
        ("long", LONG_DLQ),
        (OTHER, OTHER),
        (OTHER + "/", OTHER),
    ],
)
def test_queue_names_a_dlq_by_role_or_url(queue: str | None, url: str) -> None:
    config = _config(dlq_url=JOBS_DLQ, long_dlq_url=LONG_DLQ)
    assert dlq.queue_url(config, queue) == url


@pytest.mark.parametrize(
    ("queue", "set_", "error"),
    [
        (
            "long",
            {"dlq_url": JOBS_DLQ},
            "GALLEY_LONG_DLQ_URL: required for --queue long but not set (the long-jobs "
            "dead-letter queue's URL: the stack's output LongJobsDeadLetterQueueUrl)",
        ),
        (
            None,
            {"long_dlq_url": LONG_DLQ},
            "GALLEY_DLQ_URL: required for --queue jobs (the default) but not set (the jobs "
            "dead-letter queue's URL: the stack's output JobsDeadLetterQueueUrl)",
        ),
        ("longs", {}, "--queue 'longs' is neither jobs, long nor a queue URL"),
        # found by the review: an empty --queue (an unset shell variable) meant the jobs DLQ
        ("", {"GALLEY_DLQ_URL": JOBS_DLQ}, "--queue '' is neither jobs, long nor a queue URL"),
        (
            "https://sqs.eu-west-1.amazonaws.com/q",
            {},
            "--queue: 'https://sqs.eu-west-1.amazonaws.com/q' is not an SQS queue URL "
            "(expected scheme://host/<account-id>/<queue-name>)",
        ),
    ],
)
def test_a_queue_that_cannot_be_used_is_one_line_naming_what_to_set(
    queue: str | None, set_: dict[str, str], error: str
) -> None:
    with pytest.raises(GalleyError) as raised:
        dlq.queue_url(_config(**set_), queue)
    assert str(raised.value) == error


def test_roles_name_the_stack_outputs_and_the_settings() -> None:
    # The template's output names live in runner.local.sam, which ops cannot import: keep in step.
    assert [role.output for role in dlq.ROLES.values()] == [
        sam.OUTPUT_DLQ_URL,
        sam.OUTPUT_LONG_DLQ_URL,
    ]
    for role in dlq.ROLES.values():
        assert settings.DlqSettings.model_fields[role.setting].validation_alias == role.variable
