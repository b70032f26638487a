"""The chaos suite: N jobs under kill -9, a frozen moto, SIGTERM, failing S3 PUTs, bursts of
network faults between the workers and moto, and garbage fed with the jobs.

``make chaos`` runs N = 10,000 (``GALLEY_CHAOS_N``); ``make test`` runs the same scenario with a
small N. The accounting comes from S3 markers and queue contents (tests/chaos/harness.py).
``GALLEY_CHAOS_SEED`` picks other bursts and garbage; the network fault bursts hit SQS and S3
(``GALLEY_CHAOS_S3_FAULTS=0`` keeps them to SQS).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos import harness

N = int(os.environ.get("GALLEY_CHAOS_N", "300"))
SERVICES = ("sqs",) if os.environ.get("GALLEY_CHAOS_S3_FAULTS") == "0" else ("sqs", "s3")
#: Seeds the network fault bursts and the garbage (the same seed, the same garbage).
SEED = int(os.environ.get("GALLEY_CHAOS_SEED", str(harness.ChaosConfig.seed)))
CONFIG = harness.ChaosConfig(n=N, network_services=SERVICES, seed=SEED)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(CONFIG.deadline_seconds + 180)]


def test_no_job_is_lost_under_faults(tmp_path: Path) -> None:
    # GIVEN N jobs and a long task through 2 prefork workers on a moto server of its own, reached
    # through a fault-injecting proxy, with garbage fed among the jobs
    # WHEN workers are killed (kill -9, 3x) and SIGTERM'd, moto is frozen past the visibility
    # timeout, marker PUTs fail at random, and network faults come and go in bursts
    report = harness.run(CONFIG, tmp_path)
    print(report.table())
    # THEN every fault was injected, the queue drained, and no job is lost
    assert [f.what.split()[0] for f in report.faults if not f.what.startswith(" ")] == [
        "network",
        "kill",
        "SIGSTOP",
        "SIGCONT",
        "long",
        "SIGTERM",
        "kill",
        "kill",
        "network",
    ], report.table()
    assert "NOT running" not in report.table()  # the SIGTERM hit the long task's worker
    assert report.injected_errors > 0, report.table()
    assert report.drained, report.table()
    assert report.lost == [], report.table()
    assert report.completed == report.enqueued, report.table()
    # AND no good job was dead-lettered: not for a retry that could not be published through a
    # burst of SQS faults, nor for a result write that met a burst of S3 faults (both were, once)
    assert report.in_dlq == [], report.table()
    assert report.retry_publish_failed == [], report.table()
    # AND nothing ran that was never sent
    assert report.unknown_markers == 0, report.table()
    # AND the long task (3x the visibility timeout) ran once, through SIGTERM of its worker
    assert (report.long_runs, report.long_finished) == (1, 1), report.table()
    assert report.sigterm_exits == [0], report.table()
    assert report.died == [], report.table()
    # AND every job that ran twice did so for a known at-least-once cause (kill -9 between its
    # effect and its ack, a frozen moto, a retry published twice): none for no reason
    assert report.unexplained == [], report.table()
    # AND the network faults hit the workers' calls, of every kind
    assert set(report.network_injected) == set(CONFIG.network_kinds), report.table()
    # AND every garbage body sent ended in the DLQ with a reason, or was a runnable job and ran
    garbage = report.garbage
    assert garbage.sent > 0 and garbage.unaccounted == [], report.table()
    assert garbage.in_dlq + garbage.ran + garbage.expired == garbage.sent, report.table()
    assert garbage.without_reason == 0, report.table()
