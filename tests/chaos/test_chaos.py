"""The chaos suite: N jobs under kill -9, a frozen moto, SIGTERM and failing S3 PUTs.

``make chaos`` runs N = 10,000 (``GALLEY_CHAOS_N``); ``make test`` runs the same scenario with a
small N. The accounting comes from S3 markers and queue contents (tests/chaos/harness.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos import harness

N = int(os.environ.get("GALLEY_CHAOS_N", "300"))
CONFIG = harness.ChaosConfig(n=N)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(CONFIG.deadline_seconds + 180)]


def test_no_job_is_lost_under_faults(tmp_path: Path) -> None:
    # GIVEN N jobs and a long task through 2 prefork workers on a moto server of its own
    # WHEN workers are killed (kill -9, 3x) and SIGTERM'd, moto is frozen past the visibility
    # timeout, and marker PUTs fail at random
    report = harness.run(CONFIG, tmp_path)
    print(report.table())
    # THEN every fault was injected, the queue drained, and no job is lost
    assert [f.what.split()[0] for f in report.faults if not f.what.startswith(" ")] == [
        "kill",
        "SIGSTOP",
        "SIGCONT",
        "long",
        "SIGTERM",
        "kill",
        "kill",
    ], report.table()
    assert "NOT running" not in report.table()  # the SIGTERM hit the long task's worker
    assert report.injected_errors > 0, report.table()
    assert report.drained, report.table()
    assert report.lost == [], report.table()
    assert report.completed == report.enqueued, report.table()
    # AND no good job was dead-lettered, and nothing ran that was never sent
    assert report.in_dlq == [], report.table()
    assert report.unknown_markers == 0, report.table()
    # AND the long task (3x the visibility timeout) ran once, through SIGTERM of its worker
    assert (report.long_runs, report.long_finished) == (1, 1), report.table()
    assert report.sigterm_exits == [0], report.table()
    assert report.died == [], report.table()
