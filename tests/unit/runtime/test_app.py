from __future__ import annotations

from typing import Any

import pytest

from runner.core import queues
from runner.core.settings import WorkerSettings
from runner.errors import SettingsError
from runner.runtime.app import GalleyCelery, celery_config, create_app, task_modules

SETTINGS = WorkerSettings(
    queue_url="https://sqs.eu-west-1.amazonaws.com/123456789012/galley-jobs",
    results_bucket="galley-results",
    region="eu-west-1",
    visibility_timeout=600,
)


LONG_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/galley-long-jobs"
WITH_LONG = SETTINGS.model_copy(
    update={
        "long_queue_url": LONG_URL,
        "dlq_url": SETTINGS.queue_url + "-dlq",
        "long_dlq_url": LONG_URL + "-dlq",
    }
)


def test_broker_uses_only_the_predefined_queue() -> None:
    config = celery_config(SETTINGS)
    options = config["broker_transport_options"]
    assert config["broker_url"] == "galley-sqs://"  # kombu's SQS, see runner/worker/transport
    assert options["predefined_queues"] == {"jobs": {"url": SETTINGS.queue_url}}
    assert config["task_default_queue"] == "jobs"
    assert [q.name for q in config["task_queues"]] == ["jobs"]
    assert all(q.no_declare for q in config["task_queues"])
    assert config["task_create_missing_queues"] is False
    assert config["worker_enable_remote_control"] is False


def test_every_queue_of_the_stack_is_known_by_its_role() -> None:
    # GIVEN the long-jobs queue is configured too
    config = celery_config(WITH_LONG)
    # THEN Celery knows both queues by role, whatever the stack calls them
    assert config["broker_transport_options"]["predefined_queues"] == {
        "jobs": {"url": WITH_LONG.queue_url},
        "long": {"url": LONG_URL},
    }
    assert [q.name for q in config["task_queues"]] == ["jobs", "long"]
    assert config["task_default_queue"] == "jobs"


def test_task_routes_and_queue_option_reach_the_long_queue() -> None:
    app = create_app(WITH_LONG)
    app.conf.task_routes = {"tasks.reports.*": {"queue": "long"}}
    router = app.amqp.router
    assert router.route({}, "tasks.reports.summarize_csv")["queue"].name == "long"
    assert router.route({}, "tasks.imports.import_records")["queue"].name == "jobs"
    assert router.route({"queue": "long"}, "tasks.imports.import_records")["queue"].name == "long"


def test_a_worker_settles_with_the_dead_letter_queue_of_the_queue_it_consumes() -> None:
    jobs = celery_config(WITH_LONG)["broker_transport_options"]["galley"]
    long = celery_config(WITH_LONG, consume="long")["broker_transport_options"]["galley"]
    assert jobs["dead_letter_url"] == WITH_LONG.dlq_url
    assert long["dead_letter_url"] == WITH_LONG.long_dlq_url


def test_long_polling_and_visibility_match_the_queue() -> None:
    options = celery_config(SETTINGS)["broker_transport_options"]
    assert options["wait_time_seconds"] == 20
    assert options["polling_interval"] == 0
    assert options["visibility_timeout"] == 600
    assert options["region"] == "eu-west-1"
    assert celery_config(SETTINGS)["task_time_limit"] == 540


def test_json_only_both_ways() -> None:
    config = celery_config(SETTINGS)
    assert config["accept_content"] == ["json"]
    assert config["result_accept_content"] == ["json"]
    assert config["task_serializer"] == config["result_serializer"] == "json"


def test_reliability_defaults() -> None:
    config = celery_config(SETTINGS)
    assert config["task_acks_late"] is True
    assert config["task_reject_on_worker_lost"] is True


def test_the_jobs_queue_is_received_in_batches_and_long_jobs_one_a_process() -> None:
    # Issue 12: with one message a process a worker could never ask SQS for a batch of ten
    assert celery_config(SETTINGS)["worker_prefetch_multiplier"] == 8
    assert celery_config(SETTINGS, queues.LONG)["worker_prefetch_multiplier"] == 1


def test_results_go_to_s3_under_the_prefix() -> None:
    config = celery_config(SETTINGS)
    assert config["result_backend"] == "runner.runtime.backend:S3Backend"  # retries passing faults
    assert config["s3_bucket"] == "galley-results"
    assert config["s3_base_path"] == "results/"
    assert "s3_endpoint_url" not in config  # AWS_ENDPOINT_URL reaches boto3 by itself


def test_every_module_in_tasks_is_loaded() -> None:
    modules = task_modules()
    assert {"tasks.reports", "tasks.imports", "tasks.uploads"} <= set(modules)
    assert celery_config(SETTINGS)["include"] == modules


def test_app_applies_settings_when_configured() -> None:
    app = create_app(SETTINGS)
    assert isinstance(app, GalleyCelery)
    assert app.conf.task_default_queue == "jobs"
    assert app.conf.broker_transport_options["visibility_timeout"] == 600


def test_app_without_settings_fails_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GALLEY_QUEUE_URL", raising=False)
    monkeypatch.delenv("GALLEY_RESULTS_BUCKET", raising=False)
    app = create_app()
    with pytest.raises(SettingsError, match="GALLEY_QUEUE_URL"):
        _ = app.conf.task_default_queue


def test_galley_transport_is_kombus_sqs_transport() -> None:
    from kombu import Connection
    from kombu.transport.SQS import Transport as SQSTransport

    from runner.worker.transport import Transport

    transport_cls = Connection(celery_config(SETTINGS)["broker_url"]).transport_cls
    assert transport_cls == "galley-sqs"
    assert issubclass(Transport, SQSTransport)
    assert Transport.driver_type == "sqs"


def test_the_transport_is_told_the_heartbeat_and_dead_letter_settings() -> None:
    from runner.worker.custody import Options

    options = Options.from_transport_options(celery_config(SETTINGS)["broker_transport_options"])
    assert options.visibility_timeout == SETTINGS.visibility_timeout
    assert options.heartbeat is True
    assert options.dead_letter_url == SETTINGS.dlq_url


def test_refusals_dead_letter_instead_of_acking() -> None:
    assert celery_config(SETTINGS)["worker_consumer"] == "runner.worker.refusals:Consumer"


def test_scale_in_protection_step_is_installed_and_off_by_default() -> None:
    from runner.worker.protection import ScaleInProtection

    assert ScaleInProtection in create_app(SETTINGS).steps["consumer"]
    assert SETTINGS.scale_in_protection is False


def test_a_send_through_a_named_exchange_is_refused_not_dropped() -> None:
    # GIVEN a route through a named exchange (on SQS no queue is bound to one: kombu would drop
    # the message without a word, and the job would stay PENDING forever)
    from runner.errors import RoutingError

    app = create_app(WITH_LONG)
    app.conf.task_routes = {"tasks.routed": {"exchange": "long", "routing_key": "long"}}
    # WHEN it is sent, by route or by option, THEN it is refused before anything is sent
    for name, options in [
        ("tasks.routed", {}),
        ("tasks.other", {"exchange": "jobs", "routing_key": "jobs"}),
    ]:
        with pytest.raises(RoutingError, match="is routed through exchange"):
            app.send_task(name, args=[1], **options)
    with pytest.raises(RoutingError, match="routed to a queue this app does not have"):
        app.send_task("tasks.other", queue="galley-prod-long-jobs")


def test_started_is_stored_only_for_tasks_that_ask_for_it(s3: Any) -> None:
    from celery.app.trace import trace_task

    from tests.unit.runtime.s3_results import BUCKET, record_calls

    # GIVEN Galley's app, a plain task and one declared with track_started=True
    app = create_app(SETTINGS.model_copy(update={"results_bucket": BUCKET, "region": "us-east-1"}))

    @app.task(name="unit.plain", shared=False)
    def plain() -> int:
        return 1

    @app.task(name="unit.tracked", shared=False, track_started=True)
    def tracked() -> int:
        return 2

    calls = record_calls(app)
    # WHEN each runs through Celery's tracer, as a worker runs it
    for task, task_id in ((plain, "t-plain"), (tracked, "t-tracked")):
        trace_task(task, task_id, (), {}, {"id": task_id}, app=app, eager=False)
        seen, calls[:] = list(calls), []
        # THEN a plain job costs one PutObject (its SUCCESS); a tracked one stores STARTED first
        if task is plain:
            assert seen == ["PutObject"]
        else:
            assert seen == ["GetObject", "PutObject", "PutObject"]
    assert celery_config(SETTINGS)["task_track_started"] is False  # Celery's default
