"""Enqueueing with boto3 only: what Lambdas, web apps and scripts import (no Celery, no kombu).

- sender.py: ``enqueue``/``enqueue_many``: messages stock Celery workers understand;
- job_request.py: a job as an API caller or a schedule states it, validated, then enqueued.
"""

from __future__ import annotations

import importlib
from typing import Any

#: ``from runner.producer import enqueue`` (the import Galley documented before runner/ had
#: tiers) keeps working, loading the sender on first use.
_EXPORTS = {
    "Call": "runner.producer.sender",
    "EnqueueResult": "runner.producer.sender",
    "enqueue": "runner.producer.sender",
    "enqueue_many": "runner.producer.sender",
    "CallError": "runner.errors",
    "EnqueueError": "runner.errors",
    "InvalidTaskInput": "runner.errors",
    "MessageTooLargeError": "runner.errors",
    "ProducerError": "runner.errors",
    "QueueNotFoundError": "runner.errors",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'runner.producer' has no attribute {name!r}")
