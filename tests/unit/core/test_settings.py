from __future__ import annotations

import pytest

from runner.core import settings
from runner.core.settings import ProducerSettings, WorkerSettings, load
from runner.errors import SettingsError

QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/galley-jobs"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in settings.ALL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_missing_variables_are_named() -> None:
    # GIVEN an empty environment
    # WHEN worker settings are loaded
    with pytest.raises(SettingsError) as error:
        load(WorkerSettings)
    # THEN both required variables are named, with what they are for
    message = str(error.value)
    assert "GALLEY_QUEUE_URL: required but not set" in message
    assert "GALLEY_RESULTS_BUCKET: required but not set" in message


def test_malformed_values_name_variable_and_value(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN malformed values for several variables
    monkeypatch.setenv("GALLEY_QUEUE_URL", "galley-jobs")
    monkeypatch.setenv("GALLEY_RESULTS_BUCKET", "Results_Bucket")
    monkeypatch.setenv("GALLEY_VISIBILITY_TIMEOUT", "ten")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "localhost:5000")
    # WHEN
    with pytest.raises(SettingsError) as error:
        load(WorkerSettings)
    # THEN every one is reported, by its variable name, with the bad value
    message = str(error.value)
    assert "GALLEY_QUEUE_URL: 'galley-jobs' is not an SQS queue URL" in message
    assert "GALLEY_RESULTS_BUCKET: 'Results_Bucket' is not a valid S3 bucket name" in message
    assert "GALLEY_VISIBILITY_TIMEOUT:" in message and "'ten'" in message
    assert "AWS_ENDPOINT_URL: 'localhost:5000' is not an http(s) URL" in message


@pytest.mark.parametrize("value", ["0", "43201", "-5"])
def test_visibility_timeout_must_be_within_sqs_limits(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("GALLEY_VISIBILITY_TIMEOUT", value)
    with pytest.raises(SettingsError, match="GALLEY_VISIBILITY_TIMEOUT"):
        load(WorkerSettings, queue_url=QUEUE, results_bucket="results")


def test_time_limit_past_visibility_needs_the_heartbeat() -> None:
    # WITHOUT the heartbeat, a task outliving the visibility timeout would run twice: refused
    with pytest.raises(SettingsError) as error:
        load(
            WorkerSettings,
            queue_url=QUEUE,
            results_bucket="results",
            visibility_timeout=60,
            task_time_limit=60,
            visibility_heartbeat=False,
        )
    assert "GALLEY_TASK_TIME_LIMIT=60 must be lower than GALLEY_VISIBILITY_TIMEOUT=60" in str(
        error.value
    )
    assert "GALLEY_VISIBILITY_HEARTBEAT is off" in str(error.value)
    # WITH it (the default), the message stays invisible while the task runs
    loaded = load(
        WorkerSettings,
        queue_url=QUEUE,
        results_bucket="results",
        visibility_timeout=60,
        task_time_limit=600,
    )
    assert loaded.effective_time_limit == 600


def test_environment_is_read_and_defaults_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the canonical variables, and AWS_REGION as Lambda sets it
    monkeypatch.setenv("GALLEY_QUEUE_URL", QUEUE + "/")
    monkeypatch.setenv("GALLEY_RESULTS_BUCKET", "galley-results")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    # WHEN
    loaded = load(WorkerSettings)
    # THEN
    assert loaded.queue_url == QUEUE
    assert loaded.queue_name == "galley-jobs"
    assert loaded.region == "eu-west-1"
    assert loaded.results_prefix == "results/"
    assert loaded.endpoint_url is None
    assert loaded.effective_time_limit == loaded.visibility_timeout * 9 // 10


def test_explicit_arguments_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALLEY_QUEUE_URL", "http://127.0.0.1:1/123456789012/from-env")
    loaded = load(ProducerSettings, queue_url=QUEUE, region="ap-south-1")
    assert loaded.queue_name == "galley-jobs"
    assert loaded.region == "ap-south-1"


def test_results_prefix_is_normalised() -> None:
    loaded = load(WorkerSettings, queue_url=QUEUE, results_bucket="b12", results_prefix="jobs")
    assert loaded.results_prefix == "jobs/"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://sqs.us-east-1.amazonaws.com/1/q",
        "https://sqs.us-east-1.amazonaws.com/q",
        "https://sqs.us-east-1.amazonaws.com/1/bad name",
    ],
)
def test_queue_url_shapes_refused(url: str) -> None:
    with pytest.raises(SettingsError, match="GALLEY_QUEUE_URL"):
        load(ProducerSettings, queue_url=url)


def test_every_variable_constant_is_listed() -> None:
    # Names shared with the template and README come from one list; keep it complete.
    constants = {
        value
        for name, value in vars(settings).items()
        if name.isupper() and isinstance(value, str) and value.isupper() and "_" in value
    }
    assert constants == set(settings.ALL_VARIABLES)


FIFO_QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/galley-jobs.fifo"


@pytest.mark.parametrize(
    "variable", ["GALLEY_QUEUE_URL", "GALLEY_LONG_QUEUE_URL", "GALLEY_DLQ_URL"]
)
def test_fifo_queue_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    # GIVEN a worker environment where one queue variable names a FIFO queue
    monkeypatch.setenv("GALLEY_QUEUE_URL", QUEUE)
    monkeypatch.setenv("GALLEY_RESULTS_BUCKET", "galley-results")
    monkeypatch.setenv(variable, FIFO_QUEUE)
    # WHEN
    with pytest.raises(SettingsError) as error:
        load(WorkerSettings)
    # THEN the one line names the variable, the URL and why
    assert str(error.value).splitlines()[1:] == [
        f"  {variable}: {FIFO_QUEUE!r} is a FIFO queue; Galley supports standard queues only "
        "(FIFO needs message groups for every send; a separate feature)"
    ]


def test_fifo_dead_letter_queue_is_refused_for_galley_dlq(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALLEY_DLQ_URL", FIFO_QUEUE)
    with pytest.raises(SettingsError, match=r"GALLEY_DLQ_URL: .* is a FIFO queue"):
        load(settings.DlqSettings)


def test_galley_dlq_reads_both_dead_letter_queues(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the stack's two dead-letter queues in the environment
    jobs_dlq, long_dlq = QUEUE + "-dlq", QUEUE.replace("galley-jobs", "galley-long-jobs-dlq")
    monkeypatch.setenv("GALLEY_DLQ_URL", jobs_dlq)
    monkeypatch.setenv("GALLEY_LONG_DLQ_URL", long_dlq + "/")
    # WHEN `galley dlq` loads its settings
    loaded = load(settings.DlqSettings)
    # THEN it has both
    assert (loaded.dlq_url, loaded.long_dlq_url) == (jobs_dlq, long_dlq)


@pytest.mark.parametrize(
    ("value", "why"),
    [("galley-long-jobs-dlq", "is not an SQS queue URL"), (FIFO_QUEUE, "is a FIFO queue")],
)
def test_a_bad_long_dlq_url_is_named(monkeypatch: pytest.MonkeyPatch, value: str, why: str) -> None:
    monkeypatch.setenv("GALLEY_DLQ_URL", QUEUE + "-dlq")
    monkeypatch.setenv("GALLEY_LONG_DLQ_URL", value)
    with pytest.raises(SettingsError, match=f"GALLEY_LONG_DLQ_URL: '{value}' {why}"):
        load(settings.DlqSettings)


def test_standard_queue_names_near_fifo_are_accepted() -> None:
    # GIVEN names that only look like FIFO ones
    near = QUEUE.rsplit("/", 1)[0] + "/jobs-fifo"
    # WHEN / THEN they load, in every queue variable
    loaded = load(
        WorkerSettings, queue_url=near, long_queue_url=near, dlq_url=near, results_bucket="b12"
    )
    assert (loaded.queue_url, loaded.long_queue_url, loaded.dlq_url) == (near, near, near)


def test_boto3_only_producer_still_takes_a_fifo_queue() -> None:
    # runner.producer.sender sends FIFO messages as kombu does (group and deduplication ids; see
    # tests/integration/test_producer.py); only the processes that consume are refused.
    assert load(ProducerSettings, queue_url=FIFO_QUEUE).queue_url == FIFO_QUEUE


def test_metrics_are_off_unless_asked() -> None:
    loaded = load(WorkerSettings, queue_url=QUEUE, results_bucket="results")
    assert (loaded.metrics, loaded.stack_name) == ("off", "galley")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("GALLEY_METRICS", "cloudwatch", "GALLEY_METRICS: Input should be 'emf' or 'off'"),
        ("GALLEY_STACK_NAME", "stäck", "GALLEY_STACK_NAME: 'stäck' is not a stack name"),
        ("GALLEY_STACK_NAME", "a" * 129, "is not a stack name"),
    ],
)
def test_a_bad_metrics_setting_is_refused_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    # GIVEN a bad value for a metrics variable
    monkeypatch.setenv(name, value)
    # WHEN a worker or the Lambda consumer reads its settings
    with pytest.raises(SettingsError) as error:
        load(settings.ConsumerSettings, queue_url=QUEUE, results_bucket="results")
    # THEN one line names the variable and what is wrong
    assert expected in str(error.value)


def test_metrics_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALLEY_METRICS", "emf")
    monkeypatch.setenv("GALLEY_STACK_NAME", "prod-jobs")
    loaded = load(WorkerSettings, queue_url=QUEUE, results_bucket="results")
    assert (loaded.metrics, loaded.stack_name) == ("emf", "prod-jobs")


@pytest.mark.parametrize("value", ["1e-9", "0.001", "0.01"])
def test_a_registry_interval_too_short_to_be_one_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    # GIVEN a registry interval that would rewrite the entry without pause (a typo for 0, or
    # milliseconds): a PUT storm to S3 from every worker, billed, and a thread spinning
    monkeypatch.setenv("GALLEY_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/q")
    monkeypatch.setenv("GALLEY_RESULTS_BUCKET", "results-bucket")
    monkeypatch.setenv("GALLEY_REGISTRY_INTERVAL", value)
    # WHEN the worker's settings are read, THEN it is refused, naming the variable
    with pytest.raises(SettingsError, match="GALLEY_REGISTRY_INTERVAL"):
        load(WorkerSettings)
