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
import importlib.abc
import sys
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
    if name == "aws":  # `from runner import aws`, as task modules wrote it before the tiers
        return importlib.import_module("runner.core.aws")
    raise AttributeError(f"module 'runner' has no attribute {name!r}")


#: Where each module of the flat layout went when runner/ was cut into tiers
#: (docs/architecture.md): importing an old path fails naming the new one. (runner.cli,
#: runner.local, runner.settlement and runner.wire are packages now: see their __init__.)
_MOVED = {
    "runner.app": "runner.runtime.app (or: from runner import app)",
    "runner.aws": "runner.core.aws (or: from runner import aws)",
    "runner.backend": "runner.runtime.backend",
    "runner.checks": "runner.ops.checks",
    "runner.cli_dlq": "runner.cli.dlq",
    "runner.consumer": "runner.lambdas.records",
    "runner.contracts": "runner.core.contracts",
    "runner.deadletter": "runner.core.deadletter",
    "runner.delays": "runner.core.delays and runner.runtime.publish",
    "runner.demo": "runner.local.demo",
    "runner.dlq": "runner.ops.dlq",
    "runner.idempotency": "runner.runtime.idempotency",
    "runner.jobs": "runner.runtime.jobs",
    "runner.kombu_json": "runner.wire.kombu_json",
    "runner.limits": "runner.core.limits",
    "runner.links": "runner.settlement.links",
    "runner.payloads": "runner.wire.payloads",
    "runner.process": "runner.local.process",
    "runner.requests": "runner.producer.job_request",
    "runner.results": "runner.runtime.results",
    "runner.saferepr": "runner.wire.saferepr",
    "runner.scheduler": "runner.local.scheduler",
    "runner.schedules": "runner.local.cadence",
    "runner.settings": "runner.core.settings",
    "runner.sqs_sweep": "runner.ops.sqs_sweep",
    "runner.stack": "runner.local.sam",
}


class _MovedModules(importlib.abc.MetaPathFinder):
    """Consulted after every real finder: only a module that no longer exists reaches it."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        moved = _MOVED.get(fullname)
        if moved is not None:
            raise ModuleNotFoundError(f"{fullname} moved to {moved}", name=fullname)


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
