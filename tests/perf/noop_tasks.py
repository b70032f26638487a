"""A task that does nothing, for counting what the runtime itself costs per job."""

from __future__ import annotations

from runner.runtime.app import app


@app.task(name="perf.noop")
def noop() -> None:
    """Nothing: every request the job costs is the runtime's."""


@app.task(name="perf.noop_ignored", ignore_result=True)
def noop_ignored() -> None:
    """Nothing, fire-and-forget: no S3 request at all."""
