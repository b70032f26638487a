"""runner.core.producer_config reads what ProducerSettings reads, or lets the model decide.

The quick reader exists so that a plain enqueue loads no pydantic; it must never read a value the
model would read differently, nor accept one the model refuses. So each environment below is read
both ways and the results compared: the same fields, or the same SettingsError.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from runner.core import producer_config
from runner.core.producer_config import ProducerConfig
from runner.core.settings import ALL_VARIABLES, ProducerSettings, load
from runner.errors import SettingsError

QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/galley-jobs"
LONG = "https://sqs.eu-west-1.amazonaws.com/123456789012/galley-long-jobs"
DEPLOYED = {
    "GALLEY_QUEUE_URL": QUEUE,
    "GALLEY_LONG_QUEUE_URL": LONG,
    "GALLEY_RESULTS_BUCKET": "galley-results",
    "AWS_REGION": "eu-west-1",
}

#: Environments the quick reader reads itself.
PLAIN = [
    DEPLOYED,
    {"GALLEY_QUEUE_URL": QUEUE + "/"},
    {"GALLEY_QUEUE_URL": QUEUE + ".fifo", "AWS_DEFAULT_REGION": "us-west-2"},
    {**DEPLOYED, "AWS_DEFAULT_REGION": "us-west-2", "AWS_ENDPOINT_URL": "http://127.0.0.1:5000"},
    {**DEPLOYED, "AWS_REGION": "", "AWS_DEFAULT_REGION": "us-west-2"},
    {**DEPLOYED, "GALLEY_PAYLOAD_THRESHOLD_BYTES": "1024", "GALLEY_LONG_QUEUE_URL": ""},
    {**DEPLOYED, "GALLEY_PAYLOAD_THRESHOLD_BYTES": "1048576", "GALLEY_RESULTS_BUCKET": ""},
    {**DEPLOYED, "GALLEY_VISIBILITY_TIMEOUT": "ten"},  # not a producer's: ignored by both
]
#: Environments it hands to the model: refused, or read in a way only the model decides.
HANDED_OVER = [
    {},
    {"GALLEY_QUEUE_URL": "galley-jobs"},
    {"GALLEY_QUEUE_URL": QUEUE, "GALLEY_LONG_QUEUE_URL": "long"},
    {"GALLEY_QUEUE_URL": QUEUE, "GALLEY_RESULTS_BUCKET": "Results_Bucket"},
    {"GALLEY_QUEUE_URL": QUEUE, "AWS_ENDPOINT_URL": "localhost:5000"},
    {"GALLEY_QUEUE_URL": QUEUE, "GALLEY_PAYLOAD_THRESHOLD_BYTES": "1023"},
    {"GALLEY_QUEUE_URL": QUEUE, "GALLEY_PAYLOAD_THRESHOLD_BYTES": "1048577"},
    {"GALLEY_QUEUE_URL": QUEUE, "GALLEY_PAYLOAD_THRESHOLD_BYTES": "a lot"},
    {"GALLEY_QUEUE_URL": QUEUE, "GALLEY_PAYLOAD_THRESHOLD_BYTES": " 4096"},
    {"GALLEY_QUEUE_URL": QUEUE, "GALLEY_PAYLOAD_THRESHOLD_BYTES": "04096"},
    {"GALLEY_QUEUE_URL": QUEUE, "GALLEY_PAYLOAD_THRESHOLD_BYTES": "४०९६"},  # digits, not ASCII
    {"galley_queue_url": QUEUE},
    {"GALLEY_QUEUE_URL": QUEUE, "Galley_Queue_Url": LONG},
    # the model reads a field with an alias by its own name too (GALLEY_ + field)
    {"GALLEY_QUEUE_URL": QUEUE, "GALLEY_REGION": "eu-west-1"},
    {"GALLEY_QUEUE_URL": QUEUE, "GALLEY_ENDPOINT_URL": "localhost:5000"},
    {"GALLEY_QUEUE_URL": QUEUE, "galley_endpoint_url": "http://127.0.0.1:5000"},
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ALL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def _model_reads(queue_url: str | None = None) -> dict[str, object] | str:
    try:
        model = load(ProducerSettings, **({"queue_url": queue_url} if queue_url else {}))
    except SettingsError as error:
        return str(error)
    return {name: getattr(model, name) for name in producer_config.FIELDS}


def _quick_reads(queue_url: str | None = None) -> tuple[type, dict[str, object] | str]:
    try:
        config = producer_config.read(queue_url)
    except SettingsError as error:
        return SettingsError, str(error)
    return type(config), {name: getattr(config, name) for name in producer_config.FIELDS}


@pytest.mark.parametrize("environment", PLAIN)
def test_a_plain_environment_is_read_without_the_model_as_the_model_reads_it(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]
) -> None:
    # GIVEN a producer's environment
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    # WHEN it is read quickly, and by the model
    kind, quick = _quick_reads()
    # THEN the quick reader read it itself, and the same fields as the model
    assert kind is ProducerConfig
    assert quick == _model_reads()


@pytest.mark.parametrize("environment", HANDED_OVER)
def test_anything_else_gets_the_models_answer(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]
) -> None:
    # GIVEN an environment the model refuses or must decide
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    # WHEN it is read quickly
    kind, quick = _quick_reads()
    # THEN the answer is the model's: its settings, or its SettingsError naming the variable
    assert kind is not ProducerConfig
    assert quick == _model_reads()


@pytest.mark.parametrize("queue_url", [LONG, LONG + "/", "long", LONG + ".fifo"])
def test_a_queue_url_argument_is_read_as_the_model_reads_it(
    monkeypatch: pytest.MonkeyPatch, queue_url: str
) -> None:
    monkeypatch.setenv("GALLEY_QUEUE_URL", QUEUE)
    assert _quick_reads(queue_url)[1] == _model_reads(queue_url)


@pytest.mark.parametrize("queue_url", [LONG, "long", "http://host/1/bad name"])
def test_with_queue_checks_the_new_url_as_the_model(queue_url: str) -> None:
    # GIVEN settings read quickly, and the same as the model
    config = ProducerConfig(queue_url=QUEUE, results_bucket="galley-results")
    model = load(ProducerSettings, **dataclasses.asdict(config))
    # WHEN each is pointed at another queue
    outcomes = []
    for settings in (config, model):
        try:
            moved = producer_config.with_queue(settings, queue_url)
            outcomes.append({name: getattr(moved, name) for name in producer_config.FIELDS})
        except SettingsError as error:
            outcomes.append({"error": str(error)})
    # THEN both give the same settings, or the same error naming GALLEY_QUEUE_URL
    assert outcomes[0] == outcomes[1]
    assert "GALLEY_QUEUE_URL" in str(outcomes[0]) or outcomes[0]["queue_url"] == queue_url


#: Names a producer's environment may hold: the producer's, others the model might read, and
#: the same in other cases.
_FUZZED_NAMES = [
    *producer_config._NAMES,
    "GALLEY_REGION",
    "GALLEY_ENDPOINT_URL",
    "REGION",
    "ENDPOINT_URL",
    "galley_queue_url",
    "Galley_Region",
    "aws_region",
]
_FUZZED_VALUES = st.one_of(
    st.sampled_from(
        [
            QUEUE,
            QUEUE + "/",
            LONG + ".fifo",
            "",
            " ",
            "http://h/1/q",
            "http://127.0.0.1:5000",
            "localhost:5000",
            "1024",
            "1048576",
            "1_024",
            "+1024",
            "1024 ",
            "eu-west-1",
            "galley-results",
            "a..b",
            "null",
        ]
    ),  # fmt: skip
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=10),
)


@hypothesis_settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    environment=st.dictionaries(st.sampled_from(_FUZZED_NAMES), _FUZZED_VALUES, max_size=5),
    queue_url=st.one_of(st.none(), _FUZZED_VALUES),
)
def test_any_environment_is_read_as_the_model_reads_it(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], queue_url: str | None
) -> None:
    # GIVEN any environment of the producer's variables and others like them (most with a
    # queue URL the quick reader accepts: where it reads the rest itself)
    with monkeypatch.context() as patch:
        for name in {*_FUZZED_NAMES, *ALL_VARIABLES}:
            patch.delenv(name, raising=False)
        for name, value in {"GALLEY_QUEUE_URL": QUEUE, **environment}.items():
            patch.setenv(name, value)
        # WHEN it is read quickly, and by the model
        # THEN both give the same settings, or the same error
        assert _quick_reads(queue_url)[1] == _model_reads(queue_url)
