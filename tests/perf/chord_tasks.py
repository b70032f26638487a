"""A chord's header and body tasks that do nothing, for counting what a chord costs."""

from __future__ import annotations

from runner.runtime.app import app


@app.task(name="perf.one")
def one() -> int:
    return 1


@app.task(name="perf.total")
def total(numbers: list[int]) -> int:
    return sum(numbers)
