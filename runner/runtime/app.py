"""The Celery app: SQS broker through predefined queues, S3 results, JSON only, late acks.

``celery -A runner.app worker`` loads :data:`app`. Its configuration is built from
:class:`runner.core.settings.WorkerSettings` the first time the app is configured, so importing a
task module costs nothing and a missing variable fails with its name, not deep inside kombu.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import pkgutil
import uuid
from collections.abc import Callable
from typing import Any

import click
from celery import Celery, Task
from celery.exceptions import Ignore
from kombu import Queue
from pydantic import BaseModel

from runner.core import aws, contracts, queues
from runner.core.settings import TASK_MODULES, WorkerSettings, load
from runner.errors import InProgressElsewhere, PayloadError, RoutingError, SettingsError
from runner.runtime import backend, idempotency, publish, remote, schedules, tasklogs
from runner.settlement import links
from runner.wire import codec, kombu_json, payloads
from runner.wire.saferepr import saferepr
from runner.worker import metrics, registry, revocations, startup, transport
from runner.worker.protection import ScaleInProtection
from runner.worker.revocations import RevocationWatch

log = logging.getLogger(__name__)

transport.register()
startup.install()
revocations.install()
registry.install()
metrics.install()
remote.install_cli_guards()

#: Packages whose modules hold the user's tasks; every module in them is loaded at start.
TASK_PACKAGES = ("tasks",)


def task_modules(packages: tuple[str, ...] = TASK_PACKAGES) -> list[str]:
    """Every module of the task packages, so a new file in ``tasks/`` needs no registration."""
    names: list[str] = []
    for package in packages:
        module = importlib.import_module(package)
        names.append(package)
        for info in pkgutil.iter_modules(module.__path__, prefix=f"{package}."):
            names.append(info.name)
    return names


def celery_config(settings: WorkerSettings, consume: str = queues.JOBS) -> dict[str, Any]:
    """The Celery settings for ``settings``, in a process that consumes the queue with role
    ``consume`` (runner.core.queues): pure, so it is unit-tested without AWS.

    Celery knows every queue of the stack by role (``jobs``, ``long``), so ``task_routes`` and
    ``queue=`` reach them all; ``settings.visibility_timeout`` and the dead-letter queue are the
    consumed queue's (the worker's start-up checks resolve them, runner/worker/startup.py)."""
    stack_queues = queues.urls(settings)
    dead_letter_url = settings.long_dlq_url if consume == queues.LONG else settings.dlq_url
    return {
        # --- broker: SQS, only the queues we were given; never ListQueues/CreateQueue ---
        # kombu's SQS channel for sending; Galley's receive path (runner/worker/transport.py)
        "broker_url": f"{transport.SCHEME}://",
        "broker_transport_options": {
            "region": settings.region,
            "predefined_queues": {role: {"url": url} for role, url in stack_queues.items()},
            "visibility_timeout": settings.visibility_timeout,
            "wait_time_seconds": settings.receive_wait_seconds,
            "polling_interval": 0,
            # kombu's boto3 client (sending): timeouts, so a dead network cannot hang a send
            "client-config": {
                "connect_timeout": 5,
                "read_timeout": 20,
                "retries": {"mode": "standard", "max_attempts": 5},
            },
            "galley": {
                "region": settings.region,
                "visibility_timeout": settings.visibility_timeout,
                "heartbeat": settings.visibility_heartbeat,
                "dead_letter_url": dead_letter_url,
                "results_bucket": settings.results_bucket,
            },
        },
        "broker_connection_retry_on_startup": True,
        "task_default_queue": queues.JOBS,
        "task_queues": [Queue(role, no_declare=True) for role in stack_queues],
        "task_create_missing_queues": False,
        # SQS has no fanout: remote control, events, gossip and mingle would need extra queues.
        "worker_enable_remote_control": False,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        # --- results: S3; the endpoint comes from AWS_ENDPOINT_URL through boto3 ---
        # Celery's S3 backend, retrying passing S3 faults (runner/runtime/backend.py)
        "result_backend": "runner.runtime.backend:S3Backend",
        **backend.RETRY_SETTINGS,
        "s3_bucket": settings.results_bucket,
        "s3_base_path": settings.results_prefix,
        "s3_region": settings.region,
        # Objects expire by the bucket's lifecycle rule; no celery.backend_cleanup task.
        "result_expires": None,
        "result_extended": True,
        # Celery's default: no STARTED write (a PUT) before each job; a task that wants its
        # callers to see it running declares @app.task(track_started=True)
        "task_track_started": False,
        # --- JSON only, both ways ---
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # --- reliability: a killed worker's task comes back instead of vanishing ---
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # A jobs-queue worker holds up to eight messages a process (Celery's default is four),
        # so that it receives ten at a time from a backlog (runner/worker/receiver.py); long
        # jobs are taken one a process, so none waits behind another while other workers are
        # idle.
        "worker_prefetch_multiplier": 1 if consume == queues.LONG else 8,
        # every message Celery refuses is dead-lettered with the reason, none acked away
        "worker_consumer": "runner.worker.refusals:Consumer",
        "task_time_limit": settings.effective_time_limit,
        "include": task_modules() + settings.extra_task_modules,
        # --- periodic jobs: tasks/schedules.py; on AWS, EventBridge Scheduler fires them ---
        "beat_schedule": schedules.for_app(settings),
    }


class AppSettingsError(SettingsError, click.ClickException):
    """Settings error raised while the app configures itself.

    The ``celery`` command reads the app's configuration while parsing its options; as a
    ClickException it prints ``Error: <which variable is wrong>`` and exits 1, no traceback.
    """

    def __init__(self, message: str) -> None:
        SettingsError.__init__(self, message)
        click.ClickException.__init__(self, message)


class GalleyTask(Task):
    """Celery's Task, plus what Galley adds before the body runs: arguments sent through S3 are
    read back (runner.wire.payloads), checked against ``input_model`` (runner.core.contracts),
    and a task with an idempotency key runs its body once per key (runner.runtime.idempotency)."""

    input_model: type[BaseModel] | None = None
    #: ``fn(*args, **kwargs) -> str``; a ``galley_idempotency_key`` header at enqueue wins.
    idempotency_key: Callable[..., str] | None = None
    #: How long a run holds its key (default: the hard time limit + 60 s).
    idempotency_lease: float | None = None
    #: How soon a duplicate that finds the key held looks again (default 10 s).
    idempotency_retry_seconds: float | None = None
    #: Early messages are sent on with an SQS delay, never held (runner/worker/hops.py).
    Strategy = "runner.worker.hops:strategy"
    #: Failed jobs are dead-lettered with the reason (runner/worker/request.py).
    Request = "runner.worker.request:Request"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if revocations.revoked_in_child(self.request.id):
            # revoked after the worker handed it to this pool process (runner/worker/revocations)
            log.info("task %s[%s] revoked before it started: not run", self.name, self.request.id)
            self.backend.mark_as_revoked(self.request.id, "revoked", request=self.request)
            raise Ignore()
        header = getattr(self.request, payloads.HEADER, None)
        if header is not None and not args and not kwargs:  # arguments sent through S3
            bucket = self.app.galley_settings.results_bucket
            pointer = payloads.trusted_pointer({payloads.HEADER: header}, bucket, self.request.id)
            assert pointer is not None
            try:
                args_list, kwargs = payloads.load(self.app.galley_s3, pointer)
            except PayloadError:
                # Deleted after an earlier delivery of this job succeeded: a duplicate.
                meta = self.backend.get_task_meta(self.request.id)
                if meta.get("status") == "SUCCESS":
                    return meta.get("result")
                raise
            args = tuple(args_list)
            self.request.args, self.request.kwargs = args_list, kwargs
        if self.input_model is not None:
            contracts.check(self.name, args, kwargs, self.input_model)
        try:
            return idempotency.run_once(
                self, args, kwargs, lambda: super(GalleyTask, self).__call__(*args, **kwargs)
            )
        except InProgressElsewhere as waiting:
            # Another run holds the key: look again later (this counts as a retry, and there is
            # always one to spare: max_retries is raised by one each time).
            raise self.retry(
                countdown=waiting.retry_after, max_retries=self.request.retries + 1
            ) from None

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        """Celery has dispatched this run's callbacks and chain: a keyed run notes it in its key's
        record, so duplicates do not dispatch theirs (runner.runtime.idempotency). A subclass
        overriding this must call ``super().on_success(...)``."""
        idempotency.callbacks_dispatched(self)


class GalleyCelery(Celery):
    """Celery that reads Galley's settings when it is first configured."""

    def __init__(self, *args: Any, settings: WorkerSettings | None = None, **kwargs: Any) -> None:
        self._galley_settings = settings
        kwargs.setdefault("task_cls", GalleyTask)
        # SQS has no broadcast: remote control and events answer with what to use instead
        kwargs.setdefault("control", "runner.runtime.remote:Control")
        kwargs.setdefault("events", "runner.runtime.remote:Events")
        super().__init__(*args, **kwargs)
        self.steps["consumer"].add(ScaleInProtection)
        self.steps["consumer"].add(RevocationWatch)
        self.steps["worker"].add(registry.Registry)
        self.steps["worker"].add(metrics.Metrics)
        tasklogs.install(lambda: self.galley_settings)

    @property
    def Worker(self) -> Any:  # noqa: N802 (Celery's name)
        """``celery worker``'s program: JSON logs cover its banner and shutdown line too."""
        return self.subclass_with_self(tasklogs.Worker)

    @property
    def galley_settings(self) -> WorkerSettings:
        if self._galley_settings is None:
            try:
                self._galley_settings = load(WorkerSettings)
            except SettingsError as error:
                raise AppSettingsError(str(error)) from None
        return self._galley_settings

    @property
    def galley_s3(self) -> Any:
        """This process's S3 client for argument payloads (``aws.USES["payloads"]``: short
        timeouts, the worker's main thread uses it); one per process (pool children fork)."""
        return aws.cached("s3", use="payloads", region=self.galley_settings.region)

    def send_task(
        self, name: str, args: Any = None, kwargs: Any = None, *rest: Any, **options: Any
    ) -> Any:
        """Celery's send_task; arguments too large for SQS go through S3 (runner.wire.payloads),
        and a send that would reach no queue is refused (RoutingError), not dropped."""
        problem = links.route_problem(self, options.get("route_name") or name, options)
        if problem is not None:
            raise RoutingError(problem)
        if args or kwargs:
            settings = self.galley_settings
            if _message_bytes(name, args, kwargs, settings) > settings.payload_threshold_bytes:
                options["task_id"] = task_id = options.get("task_id") or str(uuid.uuid4())
                pointer = payloads.store(
                    self.galley_s3, settings.results_bucket, task_id, args or (), kwargs
                )
                options["headers"] = {**(options.get("headers") or {}), payloads.HEADER: pointer}
                options.setdefault("argsrepr", saferepr(args or (), codec.REPR_MAXSIZE))
                options.setdefault("kwargsrepr", saferepr(kwargs or {}, codec.REPR_MAXSIZE))
                args, kwargs = (), {}
        return super().send_task(name, args, kwargs, *rest, **options)

    def on_configure(self) -> None:
        settings = self.galley_settings
        _check_task_modules(settings.extra_task_modules)
        publish.install(max_hop=settings.max_hop_seconds)
        self.conf.update(celery_config(settings))

    def galley_reconfigure(self, settings: WorkerSettings, consume: str = queues.JOBS) -> None:
        """Use ``settings`` from now on, consuming only the queue with role ``consume`` (the
        worker's start-up checks complete the settings for that queue)."""
        self._galley_settings = settings
        publish.install(max_hop=settings.max_hop_seconds)
        self.conf.update(celery_config(settings, consume))
        self.amqp.queues.select([consume])


def _check_task_modules(names: list[str]) -> None:
    """Every GALLEY_TASK_MODULES entry can be found, or one line says which cannot (Celery would
    stop with a page of traceback that names no variable)."""
    for name in names:
        try:
            found = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            found = None
        if found is None:
            raise AppSettingsError(
                f"{TASK_MODULES}: module {name!r} not found (is it installed, or on the path?)"
            )


def _message_bytes(name: str, args: Any, kwargs: Any, settings: WorkerSettings) -> int:
    """The size of the SQS message for a call: a cheap estimate, exact near the threshold."""
    raw = len(kombu_json.dumps([list(args or ()), dict(kwargs or {})]))
    if raw * 16 // 9 < settings.payload_threshold_bytes * 3 // 4:  # two base64 layers: x16/9
        return raw * 16 // 9
    return len(codec.encode(name, args or (), kwargs or {}, queue=settings.queue_name))


def create_app(settings: WorkerSettings | None = None) -> GalleyCelery:
    """A Galley Celery app; ``settings`` default to the environment."""
    publish.install()  # countdown/eta ride on SQS DelaySeconds, not in a worker's memory
    return GalleyCelery("galley", settings=settings)


app = create_app()
