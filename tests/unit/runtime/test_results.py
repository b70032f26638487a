"""runner.runtime.results.wait (``galley result --wait``) on in-process moto: one GetObject per
poll, pauses growing from the interval, every state change reported."""

from __future__ import annotations

import time
from typing import Any

import pytest
from celery import states

from runner.errors import WaitTimeout
from runner.runtime import results
from tests.unit.runtime.s3_results import make_app, record_calls


def test_wait_backs_off_and_reads_once_per_poll(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a job reporting progress after the 2nd poll and finishing after the 5th
    app = make_app()
    calls = record_calls(app)
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(round(seconds, 4))
        if len(naps) == 2:
            app.backend.store_result("job", {"done": 1}, "PROGRESS")
        if len(naps) == 5:
            app.backend.store_result("job", "ok", states.SUCCESS)

    monkeypatch.setattr(time, "sleep", sleep)
    monkeypatch.setattr(time, "monotonic", lambda: sum(naps))
    seen: list[str] = []
    # WHEN `galley result --wait` waits for it
    final = results.wait(
        app, "job", timeout=60, interval=0.5, on_change=lambda s: seen.append(s.state)
    )
    # THEN the pauses grow x1.5 up to 2 s, each poll is one GetObject, each change is seen
    assert final.result == "ok"
    assert naps == [0.5, 0.75, 1.125, 1.6875, 2.0]
    assert calls.count("GetObject") == 6 + 1  # 6 polls, and the progress write's guard
    assert "HeadObject" not in calls
    assert seen == ["PENDING", "PROGRESS", "SUCCESS"]


def test_wait_gives_up_at_its_timeout(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    naps: list[float] = []
    monkeypatch.setattr(time, "sleep", naps.append)
    monkeypatch.setattr(time, "monotonic", lambda: sum(naps))
    with pytest.raises(WaitTimeout, match="still PENDING after 3s"):
        results.wait(make_app(), "never", timeout=3, interval=0.5)
    assert sum(naps) == pytest.approx(3.0)
