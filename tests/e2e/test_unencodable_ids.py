"""A task id that cannot be written as an S3 key (a lone surrogate, legal in JSON text): the job
is dead-lettered with the reason, not retried forever or lost, and the worker lives.

Found by the chaos run at N = 10,000 (issue "Hardening"): such a garbage message was neither in
the dead-letter queue nor run.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from runner.local import embedded
from runner.local.process import Child, wait_for
from runner.wire import codec
from tests import support
from tests.e2e.test_reliability import TASKS

pytestmark = pytest.mark.e2e


def _with_surrogate_id(stack: embedded.LocalResources) -> str:
    """A stamp job whose id holds a lone surrogate, as JSON text (ASCII: SQS carries it)."""
    task_id = "job-\udf3c-" + uuid.uuid4().hex
    message = codec.build(
        "reliability.stamp",
        [stack.bucket, uuid.uuid4().hex],
        queue=stack.queue_url.rsplit("/")[-1],
        task_id=task_id,
    )
    assert message.id == task_id
    return codec.encode_message(message)


def test_a_task_id_s3_cannot_name_is_dead_lettered_with_the_reason(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    # GIVEN a job whose task id is not valid UTF-8 text once decoded (the S3 result key)
    stack = make_stack(visibility_timeout=5)
    running = worker(stack, **TASKS)
    sqs, _ = support.clients(stack)
    body = _with_surrogate_id(stack)
    assert body.isascii()  # SQS carries it: the surrogate travels as a JSON escape
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body)
    # WHEN the worker receives it
    # THEN it leaves the queue for the dead-letter queue, with a reason, and the worker lives
    wait_for(
        lambda: support.queue_depth(stack, stack.dlq_url) == 1,
        timeout=90,
        what="the job in the dead-letter queue",
    )
    assert support.queue_depth(stack, stack.queue_url) == 0
    reasons = support.dead_letter_reasons(stack)
    assert len(reasons) == 1 and reasons[0].strip(), reasons
    assert running.alive()
