"""Galley: Celery on Amazon SQS with S3 results, local on moto, deployed with SAM.

What task modules, producers and scripts import::

    from runner import app                 # the Celery app (``celery -A runner.app worker``)
    from runner import enqueue, Call       # boto3-only producer: no Celery, no kombu

The tiers, from the bottom (docs/architecture.md): ``core`` (settings, limits, AWS clients),
``wire`` (the message codec), ``producer``, ``settlement`` and ``ops``, ``worker``, ``runtime``
(the Celery app), ``lambdas`` and ``local``, ``cli``. ``app`` is loaded on first use, so a
producer that imports this package never loads Celery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.errors import GalleyError
    from runner.producer.sender import Call, EnqueueResult, enqueue, enqueue_many
    from runner.runtime.app import GalleyCelery, GalleyTask

    app: GalleyCelery

__all__ = [
    "Call",
    "EnqueueResult",
    "GalleyError",
    "GalleyTask",
    "app",
    "enqueue",
    "enqueue_many",
]


#: Where each public name lives; it is imported on first use, so ``import runner.core.limits``
#: loads neither boto3 nor Celery, and ``from runner import enqueue`` loads no Celery.
_PUBLIC = {
    "Call": "runner.producer.sender",
    "EnqueueResult": "runner.producer.sender",
    "enqueue": "runner.producer.sender",
    "enqueue_many": "runner.producer.sender",
    "GalleyError": "runner.errors",
    "GalleyTask": "runner.runtime.app",
    "app": "runner.runtime.app",
}


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'runner' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
