"""ECS task scale-in protection while the worker is busy (Fargate).

When the backlog alarm scales the service in, ECS may stop any task — including one running a
long job. While this worker has jobs, it asks the ECS agent to protect its task
(``PUT $ECS_AGENT_URI/task-protection/v1/state``), renewing the protection while busy and
dropping it when idle, so scale-in picks idle tasks. On when ``GALLEY_SCALE_IN_PROTECTION`` is
true and ECS provides ``ECS_AGENT_URI``; the task role needs ``ecs:UpdateTaskProtection``.
https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-scale-in-protection-endpoint.html
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from celery import bootsteps
from celery.worker import state

log = logging.getLogger(__name__)

AGENT_URI = "ECS_AGENT_URI"
#: How long one protection lasts; renewed at half of it while busy.
PROTECTION_MINUTES = 60


class AgentClient:
    """The ECS agent's task protection endpoint."""

    def __init__(self, agent_uri: str, timeout: float = 5.0) -> None:
        self.url = agent_uri.rstrip("/") + "/task-protection/v1/state"
        self.timeout = timeout

    def set(self, protected: bool, minutes: int = PROTECTION_MINUTES) -> dict[str, Any]:
        body: dict[str, Any] = {"ProtectionEnabled": protected}
        if protected:
            body["ExpiresInMinutes"] = minutes
        request = urllib.request.Request(  # noqa: S310 - the ECS agent's URI, from ECS
            self.url,
            data=json.dumps(body).encode(),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
            result: dict[str, Any] = json.loads(response.read() or b"{}")
        if result.get("failure"):
            raise RuntimeError(f"task protection refused: {result['failure']}")
        return result


class Protector:
    """Turns busy/idle observations into protection changes (and renewals)."""

    def __init__(
        self,
        agent: AgentClient,
        clock: Callable[[], float] = time.monotonic,
        minutes: int = PROTECTION_MINUTES,
    ) -> None:
        self.agent, self.clock, self.minutes = agent, clock, minutes
        self.protected = False
        self.since = 0.0

    def observe(self, busy: bool) -> None:
        renew_due = self.protected and self.clock() - self.since >= self.minutes * 30
        if busy and (not self.protected or renew_due):
            self._set(True)
        elif not busy and self.protected:
            self._set(False)

    def _set(self, protected: bool) -> None:
        try:
            self.agent.set(protected, self.minutes)
        except Exception as error:  # try again on the next observation
            log.warning("scale-in protection %s failed: %s", "on" if protected else "off", error)
            return
        self.protected, self.since = protected, self.clock()
        log.info("scale-in protection %s", "on" if protected else "off")


def _busy() -> bool:
    try:
        return bool(state.reserved_requests) or bool(state.active_requests)
    except RuntimeError:  # changed while read: ask again next time
        return True


class ScaleInProtection(bootsteps.StartStopStep):
    """Worker consumer step: observes busy/idle every few seconds."""

    requires = ("celery.worker.consumer.tasks:Tasks",)
    interval = 2.0

    def __init__(self, c: Any, **kwargs: Any) -> None:
        agent_uri = os.environ.get(AGENT_URI)
        self.enabled = bool(c.app.galley_settings.scale_in_protection and agent_uri)
        self.agent_uri = agent_uri or ""
        self.stopped = threading.Event()
        super().__init__(c, **kwargs)

    def start(self, c: Any) -> None:
        protector = Protector(AgentClient(self.agent_uri))

        def loop() -> None:
            while not self.stopped.wait(self.interval):
                protector.observe(_busy())
            protector.observe(False)

        threading.Thread(target=loop, name="galley-scale-in-protection", daemon=True).start()

    def stop(self, c: Any) -> None:
        self.stopped.set()

    shutdown = stop
