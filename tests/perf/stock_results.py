"""Loaded first through GALLEY_TASK_MODULES, this makes a Galley worker store results as it did
before runner.runtime.chords and the one-request backend: stock Celery's S3 backend (HEAD + GET
before each write, chords through celery.chord_unlock) and task_track_started. For side-by-side
benchmarks only."""

from __future__ import annotations

from typing import Any

from runner.runtime.app import app

STOCK_BACKEND = "celery.backends.s3:S3Backend"


def use_stock_results(celery: Any) -> None:
    """Stock Celery's S3 backend and STARTED for ``celery`` from now on (configured first, so
    Galley's configuration does not overwrite this; a backend already built is dropped)."""
    assert celery.conf.result_backend
    celery.conf.result_backend = STOCK_BACKEND
    celery.conf.task_track_started = True
    celery._backend_cache = None
    vars(celery._local).pop("backend", None)


use_stock_results(app)
