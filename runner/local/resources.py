"""What a process needs to attach to a local stack: its endpoint, queues, bucket and settings."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from runner.core import settings

#: moto accepts any credentials; these make boto3 sign requests without a real account.
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@dataclass(frozen=True)
class LocalResources:
    """What a process needs to attach to a running local stack."""

    endpoint_url: str
    region: str
    queue_url: str
    dlq_url: str
    bucket: str
    visibility_timeout: int
    long_queue_url: str | None = None
    long_dlq_url: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """The environment variables that attach a process to this stack."""
        return {
            settings.AWS_ENDPOINT_URL: self.endpoint_url,
            settings.AWS_DEFAULT_REGION: self.region,
            settings.AWS_REGION: self.region,
            **DUMMY_CREDENTIALS,
            settings.QUEUE_URL: self.queue_url,
            settings.DLQ_URL: self.dlq_url,
            settings.RESULTS_BUCKET: self.bucket,
            settings.VISIBILITY_TIMEOUT: str(self.visibility_timeout),
            **({settings.LONG_QUEUE_URL: self.long_queue_url} if self.long_queue_url else {}),
            **({settings.LONG_DLQ_URL: self.long_dlq_url} if self.long_dlq_url else {}),
            **self.extra,
        }

    def exports(self) -> str:
        """``export NAME=value`` lines for ``eval "$(galley local env)"``: no visibility
        timeout, so a worker started in the shell takes its own queue's (``-Q long`` too)."""
        attach = self.env()
        attach.pop(settings.VISIBILITY_TIMEOUT, None)
        return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in attach.items())

    def queues(self) -> dict[str, str]:
        """Every queue of the stack by role: jobs, dead letters, long jobs and theirs."""
        found = {"jobs": self.queue_url, "jobs dlq": self.dlq_url}
        if self.long_queue_url:
            found["long jobs"] = self.long_queue_url
        if self.long_dlq_url:
            found["long jobs dlq"] = self.long_dlq_url
        return found
