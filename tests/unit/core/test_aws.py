"""runner.core.aws: each use's timeouts and retries, and one cached client per process."""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Iterator
from typing import Any
from unittest import mock

import boto3
import botocore
import pytest
from botocore.config import Config
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from runner.core import aws, limits

REGION = "eu-west-1"


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No client is cached before or after a test; no endpoint comes from the environment."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_SQS", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    aws.clear()
    yield
    aws.clear()


#: use -> (connect timeout, read timeout, total attempts, retry mode or None when not set).
EXPECTED: dict[aws.Use, tuple[float, float, int, str | None]] = {
    "default": (60, 60, 6, "standard"),  # botocore's timeouts; 5 retries
    "payloads": (5, 30, 4, "standard"),
    "receive": (5, limits.MAX_WAIT_TIME_SECONDS + 10, 2, "standard"),
    "settle": (5, 10, 3, "standard"),
    "heartbeat": (5, 10, 3, None),
    "registry": (3, 5, 3, "standard"),
    "checks": (5, 10, 3, "standard"),
    "consumer": (2, 5, 3, "standard"),
    "revocations": (3, 5, 3, "standard"),
}


def test_every_use_is_documented_here() -> None:
    assert set(EXPECTED) == set(aws.USES)


@pytest.mark.parametrize("use", sorted(EXPECTED))
def test_each_use_has_its_timeouts_and_retries(use: aws.Use) -> None:
    connect, read, attempts, mode = EXPECTED[use]
    for built in (aws.client("sqs", use=use, region=REGION), aws.cached("s3", use=use)):
        config = built.meta.config
        assert (config.connect_timeout, config.read_timeout) == (connect, read)
        assert config.retries["total_max_attempts"] == attempts
        if mode is not None:
            assert config.retries["mode"] == mode


def test_the_receive_read_timeout_outlasts_the_longest_long_poll() -> None:
    assert aws.RECEIVE_READ_TIMEOUT > limits.MAX_WAIT_TIME_SECONDS
    built = aws.client("sqs", use="receive", region=REGION)
    assert built.meta.config.read_timeout == aws.RECEIVE_READ_TIMEOUT


@pytest.mark.parametrize(
    ("use", "before"),
    [
        # What each caller passed as ``config=`` before the uses existed.
        ("default", None),
        (
            "payloads",
            Config(
                connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 3}
            ),
        ),
        (
            "receive",
            Config(
                connect_timeout=5,
                read_timeout=30,
                retries={"mode": "standard", "max_attempts": 1},
            ),
        ),
        (
            "settle",
            Config(
                connect_timeout=5, read_timeout=10, retries={"mode": "standard", "max_attempts": 2}
            ),
        ),
        ("heartbeat", Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2})),
    ],
)
def test_a_use_builds_what_its_caller_built_before(use: aws.Use, before: Config | None) -> None:
    old = aws.client("sqs", region=REGION, config=before).meta.config
    new = aws.client("sqs", use=use, region=REGION).meta.config
    for name in ("connect_timeout", "read_timeout", "retries", "max_pool_connections"):
        assert getattr(new, name) == getattr(old, name), name


def test_an_explicit_config_is_laid_over_the_use() -> None:
    built = aws.client("sqs", use="settle", region=REGION, config=Config(read_timeout=3))
    assert (built.meta.config.connect_timeout, built.meta.config.read_timeout) == (5, 3)
    assert built.meta.config.retries["total_max_attempts"] == 3


def test_explicit_region_and_endpoint_win() -> None:
    built = aws.client("sqs", region="ap-south-1", endpoint_url="http://127.0.0.1:1")
    assert built.meta.region_name == "ap-south-1"
    assert built.meta.endpoint_url == "http://127.0.0.1:1"


def test_client_builds_a_new_client_each_call() -> None:
    assert aws.client("sqs", region=REGION) is not aws.client("sqs", region=REGION)


def test_cached_gives_one_client_per_process_and_key() -> None:
    first = aws.cached("sqs", use="settle", region=REGION)
    assert aws.cached("sqs", use="settle", region=REGION) is first
    assert aws.cached("sqs", use="heartbeat", region=REGION) is not first
    assert aws.cached("sqs", use="settle", region="us-east-1") is not first
    assert aws.cached("s3", use="settle", region=REGION) is not first
    other = aws.cached("sqs", use="settle", region=REGION, endpoint_url="http://127.0.0.1:1")
    assert other is not first
    assert other.meta.endpoint_url == "http://127.0.0.1:1"


def test_a_changed_environment_gets_a_new_client(monkeypatch: pytest.MonkeyPatch) -> None:
    first = aws.cached("sqs", region=REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:2")
    moved = aws.cached("sqs", region=REGION)
    assert moved is not first
    assert moved.meta.endpoint_url == "http://127.0.0.1:2"
    assert aws.cached("sqs", region=REGION) is moved


def test_another_pid_gets_its_own_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process whose pid changed without the fork hook (simulated) builds its own, and drops
    the clients of the pid before."""
    parent = aws.cached("sqs", region=REGION)
    pid = os.getpid()
    monkeypatch.setattr(aws.os, "getpid", lambda: pid + 1)
    child = aws.cached("sqs", region=REGION)
    assert child is not parent
    assert aws.cached("sqs", region=REGION) is child
    assert all(key[0] == pid + 1 for key in aws._clients)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() in a threaded process (3.12+)
def test_a_forked_child_never_reuses_its_parents_client() -> None:
    parent = aws.cached("sqs", region=REGION)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running pytest's teardown
        verdict = b"?"
        try:
            empty = not aws._clients  # emptied by the fork hook
            mine = aws.cached("sqs", region=REGION)
            again = aws.cached("sqs", region=REGION)
            verdict = b"1" if empty and mine is not parent and again is mine else b"0"
        finally:
            os.write(write, verdict)
            os._exit(0)
    os.close(write)
    try:
        answer = os.read(read, 1)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert answer == b"1"
    assert aws.cached("sqs", region=REGION) is parent  # the parent keeps its own


def test_clear_forgets_every_client() -> None:
    first: Any = aws.cached("sqs", region=REGION)
    aws.clear()
    assert aws.cached("sqs", region=REGION) is not first


def test_new_clients_read_a_service_model_from_disk_once_per_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN botocore's JSON file reads counted (a worker builds about seven clients at start;
    # reading and parsing the models again for each one cost it over a second)
    from botocore.loaders import JSONFileLoader

    read: list[str] = []
    load_file = JSONFileLoader.load_file

    def counted(self: JSONFileLoader, file_path: str) -> Any:
        read.append(os.path.basename(file_path))
        return load_file(self, file_path)

    monkeypatch.setattr(JSONFileLoader, "load_file", counted)
    # WHEN clients are built one after another, each in a session of its own
    built = [aws.client("sqs", region=REGION) for _ in range(3)]
    built += [
        aws.client("sqs", region=REGION, session=aws.new_session(region=REGION)) for _ in range(2)
    ]
    # THEN SQS's service model was read at most once, and the loader's search path did not grow
    assert read.count("service-2") <= 1, read
    paths = built[0]._loader.search_paths
    assert len(paths) == len(set(paths)), paths


class _Sent(Exception):
    """Raised in place of sending: the request stops at the wire."""


def _sent_headers(client: Any, body: Any) -> dict[str, str]:
    """The headers a PutObject of ``body`` would go out with (nothing is sent)."""
    sent: dict[str, str] = {}

    def stop(request: Any, **_: Any) -> None:
        sent.update(
            {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        )
        raise _Sent

    client.meta.events.register("before-send.s3.PutObject", stop)
    with pytest.raises(_Sent):
        client.put_object(Bucket="results", Key="k", Body=body)
    return sent


@pytest.mark.parametrize("body", [b"", b'{"status": "SUCCESS"}', b"x" * (1024 * 1024 - 1)])
def test_a_small_s3_put_goes_out_without_waiting_for_100_continue(body: bytes) -> None:
    # botocore sends every PutObject with Expect: 100-continue: the body waits one more round
    # trip for S3's go-ahead, for a job's result of a few hundred bytes (other SDKs skip it
    # under 1 MiB)
    s3 = aws.client("s3", region=REGION, endpoint_url="http://127.0.0.1:9")
    assert "Expect" not in _sent_headers(s3, body)


def test_a_large_s3_put_still_asks_for_100_continue() -> None:
    import io

    s3 = aws.client("s3", region=REGION, endpoint_url="http://127.0.0.1:9")
    assert _sent_headers(s3, io.BytesIO(b"x" * aws.EXPECT_CONTINUE_MIN_BYTES))["Expect"] == (
        "100-continue"
    )


def _sent_user_agents(client: Any, times: int) -> list[str]:
    agents: list[str] = []

    def stop(request: Any, **_: Any) -> None:
        agent = request.headers["User-Agent"]
        agents.append(agent.decode() if isinstance(agent, bytes) else agent)
        raise _Sent

    client.meta.events.register("before-send", stop)
    for _ in range(times):
        with pytest.raises(_Sent):
            client.put_object(Bucket="results", Key="k", Body=b"{}")
    return agents


def test_clients_send_galleys_user_agent_built_once() -> None:
    # botocore builds its User-Agent twice for every request (about 0.25 ms of CPU of a 2.5 ms
    # PutObject here); a client that names its agent in its Config sends that string as it is
    s3 = aws.client("s3", region=REGION, endpoint_url="http://127.0.0.1:9")
    first, second = _sent_user_agents(s3, 2)
    assert first == second == f"{aws.USER_AGENT} Botocore/{botocore.__version__}"
    python = platform.python_version()
    assert aws.USER_AGENT.split() == ["galley", f"Boto3/{boto3.__version__}", f"Python/{python}"]


def test_an_explicit_user_agent_wins() -> None:
    s3 = aws.client(
        "s3", region=REGION, endpoint_url="http://127.0.0.1:9", config=Config(user_agent="mine/1")
    )
    assert _sent_user_agents(s3, 1)[0].startswith("mine/1 ")


@pytest.mark.parametrize(
    ("env", "config", "tail"),
    [
        ({"AWS_SDK_UA_APP_ID": "billing-jobs"}, None, " app/billing-jobs"),
        ({}, Config(user_agent_appid="from config"), " app/from-config"),
        ({}, None, ""),
    ],
)
def test_an_application_id_still_reaches_the_user_agent(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], config: Config | None, tail: str
) -> None:
    # botocore adds app/<id> (AWS_SDK_UA_APP_ID, sdk_ua_app_id, Config.user_agent_appid) only to
    # the User-Agent it builds; Galley names its own, so it adds the id itself
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s3 = aws.client("s3", region=REGION, endpoint_url="http://127.0.0.1:9", config=config)
    assert _sent_user_agents(s3, 1) == [f"{aws.USER_AGENT}{tail} Botocore/{botocore.__version__}"]


#: What an environment variable can hold (no NUL, no lone surrogate).
_ENV_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configured=st.none() | st.text(), environment=st.none() | _ENV_TEXT)
@example(configured="jobs,eu", environment=None)  # a comma is one of botocore's characters
@example(configured="x" * 60, environment=None)  # botocore warns past 50 and sends it whole
@example(configured="", environment="billing")  # an empty id in the Config is botocore's answer
def test_an_application_id_reaches_the_user_agent_as_stock_botocore_sends_it(
    configured: str | None, environment: str | None
) -> None:
    # GIVEN an application id in the client's Config, in AWS_SDK_UA_APP_ID, in both or in neither
    config = Config(user_agent_appid=configured)
    env = {} if environment is None else {"AWS_SDK_UA_APP_ID": environment}
    with mock.patch.dict(os.environ, env):
        if environment is None:
            os.environ.pop("AWS_SDK_UA_APP_ID", None)
        # WHEN Galley's client and a client left to botocore (no User-Agent named) send a request
        (galley,) = _sent_user_agents(aws.client("s3", region=REGION, config=config), 1)
        stock_config = config.merge(Config(user_agent=None))
        (stock,) = _sent_user_agents(aws.client("s3", region=REGION, config=stock_config), 1)
    # THEN Galley's names the same app/<id> as botocore's, whatever its length or characters
    app = re.findall(r" (app/\S+)", stock)
    assert galley == " ".join([aws.USER_AGENT, *app, f"Botocore/{botocore.__version__}"])
