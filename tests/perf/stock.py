"""Stock Celery's result storage, for side-by-side benchmarks: what Galley's result backend
replaced (stock Celery's S3 backend: HEAD + GET before each write, chords through
celery.chord_unlock; and task_track_started)."""

from __future__ import annotations

from typing import Any

STOCK_BACKEND = "celery.backends.s3:S3Backend"


def use_stock_results(celery: Any) -> None:
    """Stock Celery's S3 backend and STARTED for ``celery`` from now on (configured first, so
    Galley's configuration does not overwrite this; a backend already built is dropped)."""
    assert celery.conf.result_backend
    celery.conf.result_backend = STOCK_BACKEND
    celery.conf.task_track_started = True
    celery._backend_cache = None
    vars(celery._local).pop("backend", None)
