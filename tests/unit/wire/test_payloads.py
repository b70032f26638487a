from __future__ import annotations

import pytest

from runner.errors import PayloadError
from runner.wire import payloads

POINTER = {"bucket": "results-1", "key": "payloads/t-1/abc"}


def test_own_payload_is_trusted() -> None:
    headers = {payloads.HEADER: POINTER}
    assert payloads.trusted_pointer(headers, "results-1", "t-1") == POINTER
    assert payloads.trusted_pointer({}, "results-1", "t-1") is None


@pytest.mark.parametrize(
    "pointer",
    [
        {"bucket": "someone-elses", "key": "payloads/t-1/abc"},
        {"bucket": "results-1", "key": "idempotency/tasks.charge/123"},
        {"bucket": "results-1", "key": "payloads/t-2/abc"},
        {"bucket": "results-1", "key": "results/celery-task-meta-t-1"},
    ],
)
def test_a_pointer_to_anything_else_is_refused(pointer: dict[str, str]) -> None:
    with pytest.raises(PayloadError, match="is not this job's"):
        payloads.trusted_pointer({payloads.HEADER: pointer}, "results-1", "t-1")
