"""FaultProxy (tests/faults.py) between real boto3 clients and the moto server: requests pass
through untouched, and each fault reaches the client as the botocore error AWS would cause."""

from __future__ import annotations

import functools
import http.client
import io
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ReadTimeoutError,
)
from botocore.retries.standard import RetryContext, ThrottledRetryableChecker

from runner.core import aws
from runner.local import embedded
from runner.local.process import wait_for
from tests.faults import FaultProxy

pytestmark = pytest.mark.integration

SEED = 20260101


def proxied(service: str, proxy: FaultProxy, *, read_timeout: float = 2) -> Any:
    """A boto3 client through ``proxy`` that makes exactly one attempt per call: botocore's
    ``max_attempts`` counts retries (1 would mean two attempts), ``total_max_attempts`` does not."""
    config = Config(
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=2,
        read_timeout=read_timeout,
    )
    return aws.client(
        service, endpoint_url=proxy.url, session=embedded.local_session("us-east-1"), config=config
    )


def succeeds(call: Callable[[], object]) -> Callable[[], bool]:
    def attempt() -> bool:
        try:
            call()
        except (ClientError, BotoCoreError):
            return False
        return True

    return attempt


def outcome(call: Callable[[], object]) -> BaseException | None:
    """The exception ``call`` raised, or None."""
    try:
        call()
    except (ClientError, BotoCoreError) as error:
        return error
    return None


def in_thread(call: Callable[[], object]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``call`` in a thread; the dict gets its ``error`` and ``seconds`` when it ends."""
    result: dict[str, Any] = {}

    def run() -> None:
        started = time.monotonic()
        result["error"] = outcome(call)
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


@pytest.fixture
def proxy(moto_server: embedded.MotoServer) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server.url, seed=SEED) as running:
        yield running


# --- passthrough ---


def test_sqs_and_s3_calls_pass_through_on_kept_alive_connections(
    proxy: FaultProxy, stack: embedded.LocalResources
) -> None:
    # GIVEN an SQS and an S3 client through the proxy, a 300 KiB object and a 1 MiB file
    sqs, s3 = proxied("sqs", proxy), proxied("s3", proxy)
    payload = os.urandom(300 * 1024)
    large = os.urandom(aws.EXPECT_CONTINUE_MIN_BYTES)
    expects: list[bytes | None] = []
    s3.meta.events.register(
        "before-send.s3.PutObject",
        lambda request, **_: expects.append(request.headers.get("Expect")),
    )
    # WHEN a message goes round and the objects are written (the bytes at once, the file after
    # the 100 Continue the proxy answers for it), read, inspected and deleted
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody="through the proxy")
    messages = sqs.receive_message(QueueUrl=stack.queue_url, WaitTimeSeconds=1)["Messages"]
    sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=messages[0]["ReceiptHandle"])
    s3.put_object(Bucket=stack.bucket, Key="big", Body=payload)
    s3.put_object(Bucket=stack.bucket, Key="big-file", Body=io.BytesIO(large))
    fetched = s3.get_object(Bucket=stack.bucket, Key="big-file")["Body"].read()
    head = s3.head_object(Bucket=stack.bucket, Key="big")
    s3.delete_object(Bucket=stack.bucket, Key="big")
    # THEN every answer is the upstream's, intact
    assert expects == [None, b"100-continue"]
    assert [m["Body"] for m in messages] == ["through the proxy"]
    assert fetched == large
    assert head["ContentLength"] == len(payload)
    remaining = s3.list_objects_v2(Bucket=stack.bucket)["Contents"]
    assert [o["Key"] for o in remaining] == ["big-file"]
    # AND each request was counted by action, none faulted
    assert proxy.counts() == Counter(
        {
            "sqs:SendMessage": 1,
            "sqs:ReceiveMessage": 1,
            "sqs:DeleteMessage": 1,
            "s3:PUT": 2,
            "s3:GET": 2,
            "s3:HEAD": 1,
            "s3:DELETE": 1,
        }
    )
    assert proxy.injected() == Counter()
    # AND the 10 requests kept one connection per client alive (moto itself closes after each)
    assert proxy.accepted == 2


class _FramingUpstream(BaseHTTPRequestHandler):
    """An upstream answering chunked, HEAD with a length but no body, and 204; echoes bodies."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for part in (b"hello ", b"chunked ", b"world"):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        self.wfile.write(b"0\r\n\r\n")

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1234")
        self.end_headers()

    def do_DELETE(self) -> None:
        self.send_response(204)
        self.end_headers()

    def do_PUT(self) -> None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or ""):
            body = b""
            while size := int(self.rfile.readline().strip(), 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT


@pytest.fixture
def framing_upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FramingUpstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_chunked_headless_and_empty_messages_keep_one_connection_in_step(
    framing_upstream: str,
) -> None:
    with FaultProxy(framing_upstream) as proxy:
        # GIVEN one client connection through the proxy
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
        try:
            # WHEN it sends a chunked PUT, then GETs a chunked answer, HEADs and DELETEs
            conn.request("PUT", "/echo", body=iter([b"abc", b"defg"]), encode_chunked=True)
            put = conn.getresponse()
            put_body = put.read()
            conn.request("GET", "/chunked")
            got = conn.getresponse()
            got_body = got.read()
            conn.request("HEAD", "/thing")
            head = conn.getresponse()
            head_body = head.read()
            conn.request("DELETE", "/thing")
            deleted = conn.getresponse()
            deleted_body = deleted.read()
            # AND a query-protocol SQS call, which a fault then answers in SQS's XML shape
            form = {"Content-Type": "application/x-www-form-urlencoded"}
            conn.request("POST", "/", body=b"Action=ListQueues&Version=2012-11-05", headers=form)
            listed = conn.getresponse()
            listed_body = listed.read()
            proxy.inject("http_error", service="sqs", action="ListQueues")
            conn.request("POST", "/", body=b"Action=ListQueues&Version=2012-11-05", headers=form)
            failed = conn.getresponse()
            failed_body = failed.read()
        finally:
            conn.close()
        # THEN every body arrived whole and in step with its request
        assert (put.status, put_body) == (200, b"abcdefg")
        assert (got.status, got_body) == (200, b"hello chunked world")
        assert (head.status, head.getheader("Content-Length"), head_body) == (200, "1234", b"")
        assert (deleted.status, deleted_body) == (204, b"")
        assert (listed.status, listed_body) == (200, b"Action=ListQueues&Version=2012-11-05")
        assert failed.status == 500
        assert b"<Code>InternalError</Code>" in failed_body
        assert b"<Type>Receiver</Type>" in failed_body
        # AND all of it went over the one connection, classified by method or Action
        assert proxy.accepted == 1
        assert proxy.counts() == Counter(
            {"s3:PUT": 1, "s3:GET": 1, "s3:HEAD": 1, "s3:DELETE": 1, "sqs:ListQueues": 1}
        )


# --- each fault, as the client sees it ---

FAULT_CASES = [
    # (kind, options, call, exception, error code, botocore classifies it as throttling)
    ("http_error", {"status": 500}, "sqs", ClientError, "InternalError", False),
    ("http_error", {"status": 503}, "sqs", ClientError, "ServiceUnavailable", False),
    ("throttle", {}, "sqs", ClientError, "RequestThrottled", True),
    ("http_error", {"status": 500}, "s3", ClientError, "InternalError", False),
    ("http_error", {"status": 503}, "s3", ClientError, "SlowDown", True),
    ("throttle", {}, "s3", ClientError, "SlowDown", True),
    # A HEAD answer has no body: botocore can only report the status.
    ("throttle", {}, "s3-head", ClientError, "503", False),
    ("reset", {}, "sqs", ConnectionClosedError, None, False),
    ("reset", {}, "s3", ConnectionClosedError, None, False),
    ("blackhole", {}, "sqs", ReadTimeoutError, None, False),
    ("blackhole", {}, "s3", ReadTimeoutError, None, False),
]


@pytest.mark.parametrize(
    ("kind", "options", "target", "exception", "code", "throttling"),
    FAULT_CASES,
    ids=[f"{c[0]}-{c[1].get('status', '')}-{c[2]}".replace("--", "-") for c in FAULT_CASES],
)
def test_fault_reaches_the_client_as_botocore_error_and_heals(
    proxy: FaultProxy,
    stack: embedded.LocalResources,
    kind: str,
    options: dict[str, Any],
    target: str,
    exception: type[Exception],
    code: str | None,
    throttling: bool,
) -> None:
    # GIVEN a client through the proxy with a kept-alive connection (one call done)
    service = target.split("-")[0]
    if service == "sqs":
        client = proxied("sqs", proxy)

        def call() -> object:
            return client.get_queue_attributes(QueueUrl=stack.queue_url)

    else:
        client = proxied("s3", proxy)
        client.put_object(Bucket=stack.bucket, Key="k", Body=b"v")
        method = client.head_object if target == "s3-head" else client.get_object

        def call() -> object:
            return method(Bucket=stack.bucket, Key="k")

    call()
    forwarded = sum(proxy.counts().values())
    # WHEN the fault is on for that service
    proxy.inject(kind, service=service, **options)
    # THEN the call fails as it would against AWS, without reaching the upstream
    with pytest.raises(exception) as raised:
        call()
    assert proxy.injected() == Counter({kind: 1})
    assert sum(proxy.counts().values()) == forwarded
    if code is not None:
        response = raised.value.response  # type: ignore[attr-defined]
        assert response["Error"]["Code"] == code
        context = RetryContext(attempt_number=1, parsed_response=response)
        assert ThrottledRetryableChecker().is_retryable(context) is throttling
    # WHEN the proxy heals
    proxy.heal()
    # THEN the same client works again
    wait_for(succeeds(call), timeout=10, what=f"{target} calls to work after {kind} healed")
    assert proxy.active() == []


def test_blackhole_swallows_the_answer_of_a_request_already_upstream(
    proxy: FaultProxy, stack: embedded.LocalResources
) -> None:
    # GIVEN a 2 s long poll on an empty queue, forwarded to moto, with a 4 s read timeout
    sqs = proxied("sqs", proxy, read_timeout=4)
    thread, result = in_thread(
        lambda: sqs.receive_message(QueueUrl=stack.queue_url, WaitTimeSeconds=2)
    )
    wait_for(
        lambda: proxy.counts()["sqs:ReceiveMessage"] == 1, timeout=5, what="the long poll upstream"
    )
    # WHEN a black hole swallows receives while moto still waits
    proxy.inject("blackhole", service="sqs", action="ReceiveMessage")
    thread.join(timeout=15)
    # THEN moto's (empty) answer never reaches the client: it times out
    assert not thread.is_alive()
    assert isinstance(result["error"], ReadTimeoutError)
    assert result["seconds"] >= 3.5
    assert proxy.injected() == Counter({"blackhole": 1})


def test_heal_closes_black_holed_connections_instead_of_answering_late(
    proxy: FaultProxy, stack: embedded.LocalResources
) -> None:
    # GIVEN a call held in a black hole, its client willing to wait 10 s
    sqs = proxied("sqs", proxy, read_timeout=10)
    proxy.inject("blackhole", service="sqs")
    thread, result = in_thread(lambda: sqs.get_queue_attributes(QueueUrl=stack.queue_url))
    wait_for(lambda: proxy.injected()["blackhole"] == 1, timeout=5, what="the call to be held")
    # WHEN the proxy heals
    proxy.heal()
    thread.join(timeout=15)
    # THEN the held connection is closed unanswered, long before the client's timeout
    assert not thread.is_alive()
    assert isinstance(result["error"], ConnectionClosedError)
    assert result["seconds"] < 5
    assert proxy.counts()["sqs:GetQueueAttributes"] == 0
    # AND the same client works again
    wait_for(
        succeeds(lambda: sqs.get_queue_attributes(QueueUrl=stack.queue_url)),
        timeout=10,
        what="SQS calls after heal",
    )


# --- which requests a fault hits ---


def test_fault_on_one_action_leaves_other_actions_and_s3_alone(
    proxy: FaultProxy, stack: embedded.LocalResources
) -> None:
    # GIVEN clients through the proxy
    sqs, s3 = proxied("sqs", proxy), proxied("s3", proxy)
    # WHEN SQS ReceiveMessage fails for the duration of a block
    with proxy.fault("http_error", status=500, service="sqs", action="ReceiveMessage"):
        sqs.send_message(QueueUrl=stack.queue_url, MessageBody="kept")
        with pytest.raises(ClientError) as raised:
            sqs.receive_message(QueueUrl=stack.queue_url)
        s3.put_object(Bucket=stack.bucket, Key="k", Body=b"v")
        body = s3.get_object(Bucket=stack.bucket, Key="k")["Body"].read()
        # THEN only the receive failed
        assert raised.value.response["Error"]["Code"] == "InternalError"
        assert body == b"v"
        assert proxy.counts() == Counter({"sqs:SendMessage": 1, "s3:PUT": 1, "s3:GET": 1})
        assert proxy.injected() == Counter({"http_error": 1})
    # AND after the block the message is received
    assert proxy.active() == []
    messages = sqs.receive_message(QueueUrl=stack.queue_url, WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in messages] == ["kept"]


def test_probability_gives_the_same_mix_of_failures_for_the_same_seed(
    proxy: FaultProxy, moto_server: embedded.MotoServer, stack: embedded.LocalResources
) -> None:
    # GIVEN two proxies with the same seed, each failing SQS calls with p=0.5
    with FaultProxy(moto_server.url, seed=SEED) as twin:
        runs: list[list[bool]] = []
        for each in (proxy, twin):
            each.inject("http_error", status=500, service="sqs", p=0.5)
            sqs = proxied("sqs", each)
            call = functools.partial(sqs.get_queue_attributes, QueueUrl=stack.queue_url)
            # WHEN 40 calls go through each
            runs.append([outcome(call) is None for _ in range(40)])
        # THEN both successes and failures happen, in the same order through both proxies
        assert runs[0] == runs[1]
        assert 0 < sum(runs[0]) < 40
        # AND every failure was an injected fault, every success a forwarded call
        for each, run in ((proxy, runs[0]), (twin, runs[1])):
            assert each.injected() == Counter({"http_error": run.count(False)})
            assert each.counts() == Counter({"sqs:GetQueueAttributes": run.count(True)})


def test_latency_delays_matching_requests(
    proxy: FaultProxy, stack: embedded.LocalResources
) -> None:
    # GIVEN 0.6 s of latency on SQS
    sqs, s3 = proxied("sqs", proxy), proxied("s3", proxy)
    proxy.inject("latency", service="sqs", seconds=0.6)
    # WHEN an SQS call and an S3 call go through
    started = time.monotonic()
    sqs.get_queue_attributes(QueueUrl=stack.queue_url)
    elapsed = time.monotonic() - started
    s3.list_objects_v2(Bucket=stack.bucket)
    # THEN the SQS call took at least the delay, and only it was delayed
    assert elapsed >= 0.6
    assert proxy.injected() == Counter({"latency": 1})
    assert proxy.counts() == Counter({"sqs:GetQueueAttributes": 1, "s3:GET": 1})


# --- chaos ---


def test_chaos_switches_faults_on_and_off_until_stopped(
    proxy: FaultProxy, stack: embedded.LocalResources
) -> None:
    # GIVEN short random bursts of SQS errors and throttling
    sqs = proxied("sqs", proxy)

    def call() -> object:
        return sqs.get_queue_attributes(QueueUrl=stack.queue_url)

    proxy.start_chaos(
        3, kinds=["http_error", "throttle"], every=(0.05, 0.15), duration=(0.2, 0.4), service="sqs"
    )

    def both_hit() -> bool:
        outcome(call)
        return set(proxy.injected()) == {"http_error", "throttle"}

    # WHEN calls keep going until both kinds of fault have hit one
    wait_for(both_hit, timeout=20, interval=0.02, what="both chaos faults to hit a call")
    events = proxy.stop_chaos()
    # THEN the chaos thread switched both on, switched each off again, and stopped
    assert {e.kind for e in events} == {"http_error", "throttle"}
    assert all(e.seconds is not None for e in events)
    assert not proxy.chaos_running
    assert proxy.active() == []
    # AND calls succeed again
    assert outcome(call) is None


def test_chaos_stops_by_itself_at_its_deadline_and_with_the_proxy(
    moto_server: embedded.MotoServer,
) -> None:
    with FaultProxy(moto_server.url) as proxy:
        # GIVEN chaos bounded to half a second
        proxy.start_chaos(1, kinds=["reset"], every=(0.05, 0.1), duration=(0.05, 0.1), total=0.5)
        # WHEN the time is up
        # THEN it stops and leaves no fault on
        wait_for(lambda: not proxy.chaos_running, timeout=5, what="chaos to reach its deadline")
        assert proxy.active() == []
        assert proxy.chaos_events()
        # GIVEN unbounded chaos
        proxy.start_chaos(2, kinds=["latency"], every=(0.05, 0.1), duration=(5, 10))
        wait_for(lambda: proxy.active() != [], timeout=5, what="a chaos fault")
    # WHEN the proxy stops
    # THEN so does the chaos thread
    assert not proxy.chaos_running
