"""The embedded local stack: a moto server on 127.0.0.1, the stack's queues and bucket, a worker.

Nothing here listens beyond 127.0.0.1. Credentials are moto's dummy ones; they never reach AWS.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import boto3

from runner.core import aws, queues, settings
from runner.errors import LocalDataError, PortInUseError, ProcessError
from runner.local import sam, snapshot, state
from runner.local.process import Child, python_module, wait_for
from runner.local.resources import DUMMY_CREDENTIALS, LocalResources

HOST = state.HOST
DEFAULT_STATE_FILE = state.DEFAULT_STATE_FILE
#: Text in the command line of each kind of process `local up` starts, so that `local down` signals
#: a recorded pid only while it is still that process.
COMMAND_MARKERS: dict[state.Kind, str] = {
    "moto": "runner.local.motoserver",
    "worker": "runner.app worker",
}


def local_session(region: str = "us-east-1") -> boto3.Session:
    """A boto3 session with moto's dummy credentials, whatever the environment holds."""
    return aws.new_session(
        region,
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def check_port_free(port: int) -> None:
    """PortInUseError if something listens on ``port``. Connections a stopped server closed
    (TIME_WAIT, a minute) do not count: moto's server binds through them (SO_REUSEADDR), and the
    stack restarts on its own port right after it stopped."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PortInUseError(
                    f"port {port} on {HOST} is already in use; stop whatever listens there "
                    "or choose another port (--port)"
                ) from None
            raise


def responds(url: str) -> bool:
    """True if an HTTP server answers at ``url`` (any status: moto answers errors too)."""
    try:
        with urllib.request.urlopen(f"{url}/moto-api/", timeout=5):  # noqa: S310
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


#: How long moto may take to stop: with ``data``, it writes the stack's messages and objects.
MOTO_STOP_GRACE_SECONDS = 60.0


class MotoServer:
    """moto's HTTP server in a child process on 127.0.0.1; with ``data``, the stack's messages
    and objects are kept in that file across restarts (:mod:`runner.local.snapshot`)."""

    def __init__(
        self,
        port: int | None = None,
        *,
        log: Path | None = None,
        env: Mapping[str, str] | None = None,
        data: Path | None = None,
    ) -> None:
        self.port = port
        self.log = log
        self.extra_env = dict(env or {})
        self.data = data
        self.child: Child | None = None
        #: The server's exit code once stopped (0: it stopped cleanly, its data saved).
        self.exit_code: int | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 60.0) -> MotoServer:
        if self.port is None:
            self.port = free_port()
        else:
            check_port_free(self.port)
        env = {**os.environ, **DUMMY_CREDENTIALS, **self.extra_env}
        argv = python_module(COMMAND_MARKERS["moto"], "-H", HOST, "-p", str(self.port))
        if self.data is not None:
            argv += ["--data", str(self.data)]
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
            raise ProcessError(f"moto server exited with code {self.child.exit_code}")
        return responds(self.url)

    def restore(self) -> snapshot.RestoreReport:
        """Put the data file's messages and objects back (call once the stack is deployed).
        :class:`LocalDataError` if the file cannot be read; nothing is restored then."""
        url = f"{self.url}{snapshot.RESTORE_PATH}"  # http://127.0.0.1 only
        request = urllib.request.Request(url, data=b"", method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=300) as response:  # noqa: S310
                return snapshot.RestoreReport.model_validate_json(response.read())
        except urllib.error.HTTPError as error:
            body = error.read().decode(errors="replace")
            try:
                message = str(json.loads(body)["error"])
            except (ValueError, KeyError, TypeError):
                message = f"moto answered {error.code}: {body[:200]}"
            raise LocalDataError(message) from None

    def stop(self) -> None:
        if self.child is not None:
            self.exit_code = self.child.stop(grace=MOTO_STOP_GRACE_SECONDS if self.data else 5)
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
    extra_env: Mapping[str, str] | None = None,
    **env: str,
) -> Child:
    """A real ``celery worker`` process attached to ``resources``, consuming the queue with
    role ``queue``.

    Locally its long polls last 5 s (unless ``env`` or the caller's own
    GALLEY_RECEIVE_WAIT_SECONDS says otherwise): a stopping worker waits for its poll in flight,
    so Ctrl-C takes seconds, and moto's requests cost nothing. A worker on
    another queue than ``jobs`` takes its visibility timeout from its queue: the attached
    environment's GALLEY_VISIBILITY_TIMEOUT is the jobs queue's. ``extra_env`` and ``env`` are
    laid over the stack's environment."""
    merged = {settings.RECEIVE_WAIT_SECONDS: "5", **os.environ, **resources.env()}
    if queue != queues.JOBS:
        merged.pop(settings.VISIBILITY_TIMEOUT, None)
    return Child(
        worker_argv(concurrency=concurrency, queue=queue),
        env={**merged, **(extra_env or {}), **env},
        log=log,
    )


def read_state(path: Path = DEFAULT_STATE_FILE) -> LocalResources:
    """How to attach to the local stack running with state file ``path``; ProcessError or
    StateError (one line) if none runs."""
    current = state.read(path)
    if current is None or not state.held_elsewhere(path):
        where = f"{path} not found" if current is None else f"no `galley local up` holds {path}"
        raise ProcessError(f"no local stack is running ({where}); start one with `galley local up`")
    if current.status != "running" or current.resources is None:
        raise ProcessError(
            f"the local stack is not ready ({current.status}); try again in a moment"
        )
    if not responds(current.endpoint_url):
        raise ProcessError(
            f"the local stack recorded in {path} does not answer at {current.endpoint_url}; "
            "see the terminal of its `galley local up`"
        )
    return current.resources


@dataclass(frozen=True)
class LocalStack:
    """A running local stack: how to attach to it, and what the template deployed."""

    resources: LocalResources
    deployed: sam.DeployedStack
    moto: MotoServer
    moto_pid: int
    #: What came back from the data file, if the stack keeps its data.
    restored: snapshot.RestoreReport | None = None


@contextlib.contextmanager
def running_stack(
    *,
    port: int | None = None,
    template: Path = sam.DEFAULT_TEMPLATE,
    parameters: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
    region: str = "us-east-1",
    bucket_name: str | None = None,
    data: Path | None = None,
    on_moto_started: Callable[[int], None] = lambda _: None,
) -> Iterator[LocalStack]:
    """moto with template.yaml deployed into it, for the duration of the block (the results
    bucket named ``bucket_name``, if given; with ``data``, the messages and objects saved there
    put back after the deployment, and saved there again as moto stops). ``on_moto_started``
    gets moto's pid as soon as it runs, before the deployment."""
    log = (log_dir / "moto.log") if log_dir else None
    with MotoServer(port, log=log, data=data) as moto:
        assert moto.child is not None
        on_moto_started(moto.child.pid)
        params = {**sam.LOCAL_PARAMETERS, **(parameters or {})}
        deployed = sam.deploy(
            moto.url,
            template_path=template,
            parameters=params,
            region=region,
            session=local_session(region),
            bucket_name=bucket_name,
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
        )
        restored = moto.restore() if data is not None else None
        yield LocalStack(resources, deployed, moto, moto.child.pid, restored)


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
