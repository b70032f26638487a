"""Each queue's depth over the last minutes, for the page's chart.

Kept by the server, not the page, so a page opened (or reloaded) late still draws the minutes
before it. A sample is taken with each refresh the page asks for, from the counts that refresh
read anyway (no request of its own); with several pages open, samples closer than
:data:`MIN_SPACING` are merged.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from runner.ops import status

#: How far back the chart goes, in seconds.
WINDOW = 600.0
#: Samples closer together than this (several pages refreshing) keep only the later one.
MIN_SPACING = 0.5


class History:
    def __init__(self, window: float = WINDOW) -> None:
        self.window = window
        self._points: dict[str, deque[tuple[float, int, int, int]]] = {}
        self._lock = threading.Lock()

    def add(self, at: float, queues: list[status.QueueStatus]) -> None:
        """The counts of ``queues`` at ``at`` (epoch seconds); a queue that could not be read
        gets no point (a gap, not a zero)."""
        with self._lock:
            for queue in queues:
                if queue.problem is not None or queue.visible is None:
                    continue
                points = self._points.setdefault(queue.name, deque())
                while points and points[-1][0] > at - MIN_SPACING:
                    points.pop()
                points.append((at, queue.visible, queue.in_flight or 0, queue.delayed or 0))
                while points and points[0][0] < at - self.window:
                    points.popleft()

    def as_dict(self) -> dict[str, Any]:
        """Per queue name: ``[[epoch seconds, visible, in flight, delayed], ...]``, oldest first."""
        with self._lock:
            return {
                "window": self.window,
                "queues": {
                    name: [list(p) for p in points] for name, points in self._points.items()
                },
            }
