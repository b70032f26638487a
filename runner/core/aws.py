"""boto3 client factory: the one place Galley builds AWS clients.

With no arguments a client follows boto3's standard chain, so ``AWS_ENDPOINT_URL`` points it at
moto locally and is simply absent in AWS.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

#: Standard retry mode with a few attempts: rides out throttling and brief outages.
DEFAULT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})


def client(
    service: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    session: boto3.Session | None = None,
    config: Config | None = None,
) -> Any:
    """A boto3 client for ``service``; explicit arguments win over the environment."""
    session = session or boto3.Session()
    merged = DEFAULT_CONFIG.merge(config) if config else DEFAULT_CONFIG
    kwargs: dict[str, Any] = {"config": merged}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    if region:
        kwargs["region_name"] = region
    return session.client(service, **kwargs)  # type: ignore[call-overload]
