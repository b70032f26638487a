"""The worker's metrics writer: a stdout that cannot be written is logged once, never raised."""

from __future__ import annotations

import io
import logging

import pytest

from runner.core import metrics as spec
from runner.worker import metrics


class BrokenStdout(io.StringIO):
    broken = True

    def write(self, text: str) -> int:
        if self.broken:
            raise BrokenPipeError("stdout closed")
        return super().write(text)


def test_a_stdout_that_fails_is_logged_once_and_the_lines_after_it_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a writer whose stdout fails
    recorder = spec.Recorder("s")
    stream = BrokenStdout()
    writer = metrics.Writer(recorder, 60.0, stream)
    # WHEN two intervals are written while it fails, and one once it works
    with caplog.at_level(logging.WARNING, logger=metrics.__name__):
        for _ in range(2):
            recorder.count("jobs", "t", spec.SUCCEEDED)
            writer.write()
        stream.broken = False
        recorder.count("jobs", "t", spec.FAILED)
        writer.write()
    # THEN nothing was raised, the failure was said once, and the last interval was written
    assert [r.getMessage() for r in caplog.records] == [
        "metrics: 1 line(s) not written to stdout: stdout closed"
    ]
    assert '"Failed":1' in stream.getvalue()


def test_a_dead_letter_that_is_not_a_task_message_counts_under_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = spec.Recorder("s")
    monkeypatch.setattr(metrics, "_recorder", recorder)
    monkeypatch.setattr(metrics, "_roles", {"u-long": "long"})
    metrics.dead_lettered("u-long", "not base64, not JSON")
    metrics.dead_lettered("u-elsewhere", "{}")
    keys = {(line.split('"Queue":"')[1].split('"')[0]) for line in recorder.lines()}
    assert keys == {"long", spec.UNKNOWN_QUEUE}
