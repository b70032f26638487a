"""boto3 client factory: the one place Galley builds AWS clients.

With no arguments a client follows boto3's standard chain, so ``AWS_ENDPOINT_URL`` points it at
moto locally and is simply absent in AWS.

Each caller names its *use*; a use is a botocore :class:`Config` (timeouts and retries) chosen
for where the client runs, see :data:`USES`. ``client()`` builds a new client; ``cached()`` gives
this process's one client for a service, use, region and endpoint. Clients are thread-safe but
not fork-safe (their connection pools would be shared with the parent), so the cache is per
process: keyed by pid, and emptied in a child right after ``os.fork`` (Celery's prefork pool).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from typing import Any, Literal

import boto3
import botocore.session
from botocore.config import Config
from botocore.loaders import Loader, create_loader
from botocore.useragent import sanitize_user_agent_string_component
from botocore.utils import determine_content_length

from runner.core import limits

#: The User-Agent of Galley's clients (botocore appends ``Botocore/<version>``). Named in their
#: Config, it is sent as it is; left to botocore, it is built anew, twice, for every request
#: (about a tenth of the CPU of a small PutObject), with metadata AWS's own SDK metrics use.
USER_AGENT = "galley Boto3/{} Python/{}.{}.{}".format(boto3.__version__, *sys.version_info[:3])

#: Standard retry mode with a few attempts: rides out throttling and brief outages.
DEFAULT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, user_agent=USER_AGENT)

#: The receive loop's read timeout: past the longest long poll, so a silent connection is given
#: up, never waited on.
RECEIVE_READ_TIMEOUT = limits.MAX_WAIT_TIME_SECONDS + 10

Use = Literal[
    "default",
    "payloads",
    "receive",
    "settle",
    "heartbeat",
    "registry",
    "checks",
    "consumer",
    "revocations",
]

#: Per use, what is laid over :data:`DEFAULT_CONFIG` (``Config.merge``: a key given here replaces
#: the default's whole value, ``retries`` included).
USES: Mapping[Use, Config] = {
    # Producers (enqueue, large-argument uploads), the CLI, task code: botocore's timeouts
    # (60 s) and the default's five standard attempts; nothing waits on them but their caller.
    "default": Config(),
    # The worker's S3 calls for argument payloads (store, load, delete): they run on the worker's
    # main thread, so a slow S3 must not stall it for minutes.
    "payloads": Config(
        connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 3}
    ),
    # The receive loop's long poll (runner/worker/receiver.py): see RECEIVE_READ_TIMEOUT. The
    # loop retries with its own backoff, so botocore adds at most one retry of its own
    # (``max_attempts`` counts retries after the first attempt).
    "receive": Config(
        connect_timeout=5,
        read_timeout=RECEIVE_READ_TIMEOUT,
        retries={"mode": "standard", "max_attempts": 1},
    ),
    # Settling (delete, release, dead-letter, delay hops; runner/worker/settler.py): short
    # timeouts, the settler retries on its own.
    "settle": Config(
        connect_timeout=5, read_timeout=10, retries={"mode": "standard", "max_attempts": 2}
    ),
    # The visibility heartbeat (runner/worker/heartbeat.py): a beat that cannot reach SQS gives
    # way to the next one. No retry mode: botocore's (or ``AWS_RETRY_MODE``) applies.
    "heartbeat": Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2}),
    # The worker registry (runner/worker/registry.py): a write that fails gives way to the next
    # interval's, and the last one at shutdown must not hold the worker's exit for long.
    "registry": Config(
        connect_timeout=3, read_timeout=5, retries={"mode": "standard", "max_attempts": 2}
    ),
    # Start-up checks and `galley doctor` (runner/ops/checks.py): they answer within seconds,
    # not after the runtime's five attempts.
    "checks": Config(
        connect_timeout=5, read_timeout=10, retries={"mode": "standard", "max_attempts": 2}
    ),
    # The Lambda consumer's own SQS calls (runner/lambdas/records.py): settling must fit in the
    # reserve the invocation keeps, so short timeouts and few attempts.
    "consumer": Config(
        connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 2}
    ),
    # Reading the revocations (runner/core/revocations.py) on an interval, in a worker's thread
    # or at the start of a Lambda batch: a read that cannot reach S3 gives way to the next one.
    "revocations": Config(
        connect_timeout=3, read_timeout=5, retries={"mode": "standard", "max_attempts": 2}
    ),
}

_CONFIGS: dict[str, Config] = {use: DEFAULT_CONFIG.merge(extra) for use, extra in USES.items()}

#: What boto3 reads from the environment to choose a client's endpoint, region and credentials:
#: part of a cached client's key, so that a changed environment gets a new client.
_ENVIRONMENT = ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_PROFILE")


def with_app_id(config: Config, session: boto3.Session) -> Config:
    """``config``, its User-Agent (Galley's, unless the caller named another) ending in
    ``app/<id>`` when an application id is set (``Config.user_agent_appid``,
    ``AWS_SDK_UA_APP_ID``, ``sdk_ua_app_id``): botocore adds it only to the agent it builds."""
    if getattr(config, "user_agent", None) != USER_AGENT:
        return config
    app_id = getattr(config, "user_agent_appid", None)  # an empty one wins, as in botocore
    core = getattr(session, "_session", None)  # boto3.Session's botocore session
    if app_id is None and core is not None:
        app_id = core.get_config_variable("user_agent_appid")
    if not app_id:
        return config
    # botocore's own characters (a comma too); a long id is sent whole, botocore warns of it
    safe = sanitize_user_agent_string_component(str(app_id), allow_hash=True)
    return config.merge(Config(user_agent=f"{USER_AGENT} app/{safe}"))


def config_for(use: Use = "default", config: Config | None = None) -> Config:
    """The Config a client for ``use`` gets: :data:`DEFAULT_CONFIG`, the use's, then ``config``."""
    merged = _CONFIGS[use]
    return merged.merge(config) if config else merged


#: An S3 body at least this long is sent after S3's ``100 Continue``; a shorter one at once.
EXPECT_CONTINUE_MIN_BYTES = 1024 * 1024


def _send_small_bodies_at_once(params: dict[str, Any], **_: Any) -> None:
    """botocore asks for ``100 Continue`` before every S3 upload's body (``Expect``), whatever
    its size: one more round trip per PutObject, the whole cost again for a job's result of a few
    hundred bytes. Other AWS SDKs (JavaScript v3, Java v2, Kotlin) ask only from 1 MiB up; so do
    we. A body whose length cannot be told keeps the header."""
    headers = params.get("headers") or {}
    if "Expect" in headers:
        size = determine_content_length(params.get("body"))
        if size is not None and size < EXPECT_CONTINUE_MIN_BYTES:
            del headers["Expect"]


def quicken_small_uploads(s3: Any) -> Any:
    """``s3`` (a boto3 S3 client) sends bodies under :data:`EXPECT_CONTINUE_MIN_BYTES` without
    waiting for S3's go-ahead; returns it."""
    s3.meta.events.register_last(
        "before-call.s3", _send_small_bodies_at_once, unique_id="galley-small-uploads"
    )
    return s3


_loader: Loader | None = None
_loader_lock = threading.Lock()


def new_session(region: str | None = None, **credentials: str) -> boto3.Session:
    """A new boto3 session that reads service models through this process's one loader.

    Each plain ``boto3.Session()`` reads and parses the service's JSON models again (~0.2 s of CPU
    per client; a worker builds about seven at start). The loader only caches what it read, and
    models are read-only to botocore, so sessions share it safely; the sessions themselves
    (credentials, region, event hooks) stay separate. ``credentials`` are boto3.Session's
    ``aws_access_key_id``/``aws_secret_access_key``/``aws_session_token``."""
    global _loader
    with _loader_lock:
        if _loader is None:
            _loader = create_loader()
        core = botocore.session.get_session()
        core.register_component("data_loader", _loader)
        made = boto3.Session(botocore_session=core, region_name=region, **credentials)
        # boto3 appends its own data directory to the loader's path for every new session
        _loader.search_paths[:] = list(dict.fromkeys(_loader.search_paths))
    return made


def client(
    service: str,
    *,
    use: Use = "default",
    endpoint_url: str | None = None,
    region: str | None = None,
    session: boto3.Session | None = None,
    config: Config | None = None,
) -> Any:
    """A new boto3 client for ``service``; explicit arguments win over the environment."""
    session = session or new_session()
    kwargs: dict[str, Any] = {"config": with_app_id(config_for(use, config), session)}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    if region:
        kwargs["region_name"] = region
    made = session.client(service, **kwargs)  # type: ignore[call-overload]
    return quicken_small_uploads(made) if service == "s3" else made


_clients: dict[tuple[Any, ...], Any] = {}
_lock = threading.Lock()


def cached(
    service: str,
    *,
    use: Use = "default",
    region: str | None = None,
    endpoint_url: str | None = None,
) -> Any:
    """This process's client for ``service`` and ``use`` (built by :func:`client` on first use).

    Clients are slow to build (a Lambda keeps one across invocations) and thread-safe; a forked
    child never gets its parent's.
    """
    environment = tuple(os.environ.get(name) for name in _environment(service))
    key = (os.getpid(), service, use, region, endpoint_url, environment)
    found = _clients.get(key)
    if found is not None:
        return found
    with _lock:
        found = _clients.get(key)
        if found is None:
            if any(other[0] != key[0] for other in _clients):
                _clients.clear()  # another process's (a fork not seen by the hook below)
            found = _clients[key] = client(
                service, use=use, region=region, endpoint_url=endpoint_url
            )
        return found


def clear() -> None:
    """Forget every cached client (the next :func:`cached` call builds a new one)."""
    with _lock:
        _clients.clear()


def _environment(service: str) -> tuple[str, ...]:
    return (*_ENVIRONMENT, f"AWS_ENDPOINT_URL_{service.upper().replace('-', '_')}")


def _after_fork_in_child() -> None:
    """A child starts with no clients, and free locks (another thread may have held the parent's
    at the fork). It keeps the loader: a cache of parsed models, no connections."""
    global _lock, _loader_lock
    _lock = threading.Lock()
    _loader_lock = threading.Lock()
    _clients.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
