"""The embedded local stack: a moto server on 127.0.0.1, the stack's queues and bucket, a worker.

Nothing here listens beyond 127.0.0.1. Credentials are moto's dummy ones; they never reach AWS.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shlex
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import boto3

from runner.core import queues, settings
from runner.errors import PortInUseError, ProcessError
from runner.local import sam
from runner.local.process import Child, StopRequested, python_module, wait_for
from runner.local.scheduler import LocalScheduler

HOST = "127.0.0.1"
#: Where `galley local up` records the running stack for `galley local env`.
DEFAULT_STATE_FILE = Path(".galley") / "local.json"
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
    moto_pid: int | None = None
    worker_pid: int | None = None
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
        """``export NAME=value`` lines for ``eval "$(galley local env)"``."""
        return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in self.env().items())

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> LocalResources:
        return cls(**json.loads(path.read_text()))


def local_session(region: str = "us-east-1") -> boto3.Session:
    """A boto3 session with moto's dummy credentials, whatever the environment holds."""
    return boto3.Session(
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=region,
    )


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def check_port_free(port: int) -> None:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PortInUseError(
                    f"port {port} on {HOST} is already in use; stop whatever listens there "
                    "or choose another port (--port)"
                ) from None
            raise


def _responds(url: str) -> bool:
    """True if an HTTP server answers at ``url`` (any status: moto answers errors too)."""
    try:
        with urllib.request.urlopen(f"{url}/moto-api/", timeout=5):  # noqa: S310
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


class MotoServer:
    """moto's HTTP server in a child process on 127.0.0.1."""

    def __init__(
        self,
        port: int | None = None,
        *,
        log: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.port = port
        self.log = log
        self.extra_env = dict(env or {})
        self.child: Child | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 60.0) -> MotoServer:
        if self.port is None:
            self.port = free_port()
        else:
            check_port_free(self.port)
        env = {**os.environ, **DUMMY_CREDENTIALS, **self.extra_env}
        argv = python_module("runner.local.motoserver", "-H", HOST, "-p", str(self.port))
        self.child = Child(argv, env=env, log=self.log)
        try:
            wait_for(self._ready, timeout=timeout, what=f"moto server on {self.url}")
        except (TimeoutError, ProcessError):
            tail = self.child.log_tail()
            self.stop()
            raise ProcessError(f"moto server did not start on {self.url}\n{tail}") from None
        return self

    def _ready(self) -> bool:
        assert self.child is not None
        if not self.child.alive():
            raise ProcessError(f"moto server exited with code {self.child.proc.returncode}")
        return _responds(self.url)

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(grace=5)
            self.child = None

    def __enter__(self) -> MotoServer:
        return self.start() if self.child is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def worker_argv(
    *,
    concurrency: int = 2,
    loglevel: str = "INFO",
    pool: str = "prefork",
    queue: str = queues.JOBS,
) -> list[str]:
    """``celery -A runner.app worker`` as Galley runs it locally, on the queue with role
    ``queue`` (runner.core.queues; ``-Q`` only when it is not the default)."""
    return python_module(
        "celery",
        "-A",
        "runner.app",
        "worker",
        "--loglevel",
        loglevel,
        "--pool",
        pool,
        "--concurrency",
        str(concurrency),
        *(["-Q", queue] if queue != queues.JOBS else []),
    )


def start_worker(
    resources: LocalResources,
    *,
    log: Path | None = None,
    concurrency: int = 2,
    queue: str = queues.JOBS,
    **env: str,
) -> Child:
    """A real ``celery worker`` process attached to ``resources``, consuming the queue with
    role ``queue``.

    Locally its long polls last 5 s (unless ``env`` says otherwise): a stopping worker waits for
    its poll in flight, so Ctrl-C takes seconds, and moto's requests cost nothing. A worker on
    another queue than ``jobs`` takes its visibility timeout from its queue: the attached
    environment's GALLEY_VISIBILITY_TIMEOUT is the jobs queue's."""
    merged = {**os.environ, **resources.env(), settings.RECEIVE_WAIT_SECONDS: "5"}
    if queue != queues.JOBS:
        merged.pop(settings.VISIBILITY_TIMEOUT, None)
    return Child(worker_argv(concurrency=concurrency, queue=queue), env={**merged, **env}, log=log)


def read_state(path: Path = DEFAULT_STATE_FILE) -> LocalResources:
    """The running local stack recorded at ``path``, checked to be alive."""
    if not path.exists():
        raise ProcessError(
            f"no local stack is running ({path} not found); start one with `galley local up`"
        )
    try:
        resources = LocalResources.load(path)
    except (ValueError, TypeError) as error:  # not JSON, or not the fields galley wrote
        raise ProcessError(
            f"{path} is not a local stack's state ({error}); remove it and run `galley local up`"
        ) from None
    if not _responds(resources.endpoint_url):
        raise ProcessError(
            f"the local stack recorded in {path} does not answer at {resources.endpoint_url}; "
            "start one with `galley local up`"
        )
    return resources


@dataclass(frozen=True)
class LocalStack:
    """A running local stack: how to attach to it, and what the template deployed."""

    resources: LocalResources
    deployed: sam.DeployedStack


@contextlib.contextmanager
def running_stack(
    *,
    port: int | None = None,
    template: Path = sam.DEFAULT_TEMPLATE,
    parameters: Mapping[str, str] | None = None,
    state_file: Path | None = DEFAULT_STATE_FILE,
    log_dir: Path | None = None,
    region: str = "us-east-1",
) -> Iterator[LocalStack]:
    """moto with template.yaml deployed into it, for the duration of the block.

    The state file that `galley local env` reads exists exactly while the block runs.
    """
    log = (log_dir / "moto.log") if log_dir else None
    with MotoServer(port, log=log) as moto:
        assert moto.child is not None
        params = {**sam.LOCAL_PARAMETERS, **(parameters or {})}
        deployed = sam.deploy(
            moto.url,
            template_path=template,
            parameters=params,
            region=region,
            session=local_session(region),
        )
        out = deployed.outputs
        resources = LocalResources(
            endpoint_url=moto.url,
            region=region,
            queue_url=out[sam.OUTPUT_QUEUE_URL],
            dlq_url=out[sam.OUTPUT_DLQ_URL],
            long_queue_url=out[sam.OUTPUT_LONG_QUEUE_URL],
            long_dlq_url=out[sam.OUTPUT_LONG_DLQ_URL],
            bucket=out[sam.OUTPUT_BUCKET],
            visibility_timeout=int(params["VisibilityTimeout"]),
            moto_pid=moto.child.pid,
        )
        if state_file:
            resources.save(state_file)
        try:
            yield LocalStack(resources, deployed)
        finally:
            if state_file:
                state_file.unlink(missing_ok=True)


def schedule_firer(resources: LocalResources) -> Callable[[sam.ScheduleSpec], object]:
    """What EventBridge Scheduler does in AWS: hand the schedule's input to the schedule Lambda's
    code, here called in-process against the local stack."""
    from runner.core.settings import ProducerSettings
    from runner.producer import job_request

    producer_settings = ProducerSettings(
        queue_url=resources.queue_url,
        long_queue_url=resources.long_queue_url,
        region=resources.region,
        endpoint_url=resources.endpoint_url,
    )
    session = local_session(resources.region)

    def fire(spec: sam.ScheduleSpec) -> object:
        request = job_request.JobRequest.model_validate(spec.input)
        return job_request.submit(request, settings=producer_settings, session=session)

    return fire


def serve(
    stop: StopRequested,
    *,
    port: int | None = None,
    with_worker: bool = True,
    concurrency: int = 2,
    template: Path = sam.DEFAULT_TEMPLATE,
    state_file: Path = DEFAULT_STATE_FILE,
    on_ready: Callable[[LocalStack, LocalScheduler], None] = lambda *_: None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Run the local stack until ``stop`` is set: the worker logs to this terminal and the
    template's schedules fire on their cadence.

    Returns 0 on a requested stop, 1 if the worker died by itself.
    """
    log_dir = state_file.parent
    log_dir.mkdir(parents=True, exist_ok=True)
    with running_stack(
        port=port, template=template, state_file=state_file, log_dir=log_dir
    ) as local_stack:
        resources = local_stack.resources
        scheduler = LocalScheduler(
            local_stack.deployed.schedules, schedule_firer(resources), start=clock()
        )
        worker = start_worker(resources, concurrency=concurrency) if with_worker else None
        if worker is not None:
            resources = replace(resources, worker_pid=worker.pid)
            resources.save(state_file)
        try:
            on_ready(replace(local_stack, resources=resources), scheduler)
            while not stop:
                if worker is not None and not worker.alive():
                    return 1
                scheduler.tick(clock())
                stop.sleep(0.5)
            return 0
        finally:
            if worker is not None:
                worker.stop(grace=30)
