"""The dashboard's routes in-process (runner.ops.dashboard.api), against AWS mocked by moto."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from runner.core.deadletter import dead_letter
from runner.ops import status
from runner.ops.dashboard import guard as guard_
from runner.ops.dashboard import server
from runner.ops.dashboard.api import Dashboard, Request, Response
from runner.wire import codec

PORT = 8642
HOST = f"127.0.0.1:{PORT}"
ORIGIN = f"http://{HOST}"
DONE_ID = "5f0c2d1e-8a41-4c55-9f7e-0d9a3c1b2e77"


def clients(service: str) -> Any:
    return boto3.client(service, region_name="us-east-1")


@pytest.fixture
def target(moto_in_process: None) -> status.Target:
    sqs, s3 = clients("sqs"), clients("s3")
    dlq = sqs.create_queue(QueueName="jobs-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]
    policy = json.dumps({"deadLetterTargetArn": arn["QueueArn"], "maxReceiveCount": 3})
    jobs = sqs.create_queue(QueueName="jobs", Attributes={"RedrivePolicy": policy})["QueueUrl"]
    s3.create_bucket(Bucket="results")
    return status.Target(
        source="environment",
        queues={"jobs": jobs, "long": None},
        dead_letter_queues={"jobs": dlq, "long": None},
        bucket="results",
    )


@pytest.fixture
def dashboard(target: status.Target) -> Dashboard:
    return Dashboard(target, clients, guard_.Guard("127.0.0.1", PORT))


def get(dashboard: Dashboard, target: str, **headers: str) -> Response:
    return dashboard.handle(Request("GET", target, {"host": HOST, **headers}))


def post(dashboard: Dashboard, body: Any, **headers: str) -> Response:
    sent = {"host": HOST, "origin": ORIGIN, guard_.CSRF_HEADER: dashboard.guard.csrf, **headers}
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return dashboard.handle(Request("POST", "/api/dlq", sent, raw))


def store_result(meta: dict[str, Any], job_id: str = DONE_ID) -> None:
    key = f"results/celery-task-meta-{job_id}"
    clients("s3").put_object(Bucket="results", Key=key, Body=json.dumps(meta).encode())


def test_the_page_embeds_its_csrf_token_and_loads_only_its_own_files(dashboard: Dashboard) -> None:
    # WHEN the page is asked for
    page = get(dashboard, "/")
    # THEN it holds this process's CSRF token, and its script and style come from this server
    assert page.status == 200 and page.content_type.startswith("text/html")
    html = page.body.decode()
    assert f'content="{dashboard.guard.csrf}"' in html
    assert 'src="/static/app.js"' in html and 'href="/static/app.css"' in html
    assert "http://" not in html and "https://" not in html  # no CDN: works offline
    assert get(dashboard, "/static/app.js").status == 200
    assert get(dashboard, "/static/app.css").status == 200


def test_overview_shows_the_queues_and_keeps_their_depth_history(
    dashboard: Dashboard, target: status.Target
) -> None:
    # GIVEN two jobs waiting
    for n in range(2):
        clients("sqs").send_message(QueueUrl=target.queues["jobs"], MessageBody=f"job {n}")
    # WHEN the page refreshes twice
    get(dashboard, "/api/overview")
    answer = get(dashboard, "/api/overview")
    # THEN it shows the counts, a problem for the queue not set, and the depth over time
    assert answer.status == 200
    data = answer.json()
    queues = {q["name"]: q for q in data["queues"]}
    assert queues["jobs"]["visible"] == 2
    assert queues["long"]["problem"] == "not set (GALLEY_LONG_QUEUE_URL)"
    assert [point[1] for point in data["history"]["queues"]["jobs"]][-1:] == [2]
    assert data["workers"] == [] and data["jobs"] == []


def test_an_unknown_job_is_no_such_job_and_a_finished_one_is_shown(dashboard: Dashboard) -> None:
    # GIVEN a job that failed, as Celery's extended result stores it
    store_result(
        {
            "status": "FAILURE",
            "result": {"exc_type": "KeyError", "exc_message": ["amount"], "exc_module": "builtins"},
            "traceback": 'Traceback (most recent call last):\n  ...\nKeyError: "amount"\n',
            "task_id": DONE_ID,
            "name": "tasks.reports.summarize_csv",
            "args": ["bucket", "in.csv"],
            "kwargs": {},
            "worker": "celery@vm",
            "queue": "jobs",
            "date_done": "2026-11-30T16:31:21.000000+00:00",
        }
    )
    # WHEN the page looks up an id no job has
    missing = get(dashboard, "/api/job?id=3f1c0d9e-0000-0000-0000-000000000000")
    # THEN it is "no such job", not an error of the server
    assert missing.status == 404
    assert missing.json()["error"].startswith("no such job: 3f1c0d9e-")
    # WHEN it looks up the failed job
    found = get(dashboard, f"/api/job?id={DONE_ID}")
    # THEN state, task, args repr, error and traceback
    assert found.status == 200
    job = found.json()["job"]
    assert job["state"] == "FAILURE" and job["task"] == "tasks.reports.summarize_csv"
    assert job["args"] == "['bucket', 'in.csv']"
    assert job["error"] == "KeyError: amount"
    assert "Traceback" in job["traceback"]


def test_a_running_job_shows_its_progress(dashboard: Dashboard) -> None:
    store_result({"status": "PROGRESS", "result": {"done": 3, "total": 4}, "name": "t"})
    job = get(dashboard, f"/api/job?id={DONE_ID}").json()["job"]
    assert job["progress"] == {"done": 3.0, "total": 4.0, "fraction": 0.75}


def test_dead_letters_are_listed_and_redriven_with_the_pages_token(
    dashboard: Dashboard, target: status.Target
) -> None:
    # GIVEN a dead letter with its reason
    sqs = clients("sqs")
    body = codec.encode(
        "tasks.reports.summarize_csv", ["b", "k.csv"], queue="jobs", task_id=DONE_ID
    )
    dead_letter(
        sqs,
        target.dead_letter_queues["jobs"],
        body,
        reason="boom",
        source_queue=target.queues["jobs"],
    )
    # WHEN the page lists the dead-letter queues
    listing = get(dashboard, "/api/dlq", **{guard_.CSRF_HEADER: dashboard.guard.csrf}).json()
    # THEN the letter is there with its reason; the long DLQ says it is not set
    (jobs_dlq, long_dlq) = listing["queues"]
    assert [(x["task_id"], x["reason"]) for x in jobs_dlq["letters"]] == [(DONE_ID, "boom")]
    assert long_dlq["problem"] == "not set (GALLEY_LONG_DLQ_URL)"
    # WHEN it redrives the letter
    done = post(dashboard, {"action": "redrive", "queue": "jobs", "ids": [DONE_ID]})
    # THEN it is back on the jobs queue
    assert done.status == 200, done.body
    assert done.json()["message"] == "1 moved, 0 not moved from the jobs DLQ"
    attrs = sqs.get_queue_attributes(
        QueueUrl=target.queues["jobs"], AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "1"


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({guard_.CSRF_HEADER: "forged"}, "missing or wrong CSRF token"),
        ({"origin": "https://evil.example"}, "Origin 'https://evil.example' is not"),
        ({"origin": ""}, "is not 'http://127.0.0.1:8642'"),
        ({"host": "evil.example:8642"}, "Host 'evil.example:8642' is not this dashboard's"),
    ],
)
def test_cross_site_posts_are_refused_with_a_403_saying_why(
    dashboard: Dashboard, target: status.Target, headers: dict[str, str], error: str
) -> None:
    sqs = clients("sqs")
    sqs.send_message(QueueUrl=target.dead_letter_queues["jobs"], MessageBody="x")
    # WHEN a purge comes without the page's token, from another origin, or by another name
    refused = post(dashboard, {"action": "purge", "queue": "jobs"}, **headers)
    # THEN 403, one JSON line, and nothing purged
    assert refused.status == 403
    assert error in refused.json()["error"]
    assert dead_letter_count(target) == 1


def test_a_post_without_origin_is_refused(dashboard: Dashboard) -> None:
    request = Request(
        "POST",
        "/api/dlq",
        {"host": HOST, guard_.CSRF_HEADER: dashboard.guard.csrf},
        b'{"action": "purge", "queue": "jobs"}',
    )
    refused = dashboard.handle(request)
    assert refused.status == 403
    assert refused.json()["error"].startswith("cross-site check: a POST needs the header Origin")


def test_purge_empties_the_dead_letter_queue(dashboard: Dashboard, target: status.Target) -> None:
    clients("sqs").send_message(QueueUrl=target.dead_letter_queues["jobs"], MessageBody="x")
    done = post(dashboard, {"action": "purge", "queue": "jobs"})
    assert done.status == 200 and done.json()["purged"] == 1
    assert dead_letter_count(target) == 0


def dead_letter_count(target: status.Target) -> int:
    attrs = clients("sqs").get_queue_attributes(
        QueueUrl=target.dead_letter_queues["jobs"], AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def test_with_a_token_every_request_needs_it_and_the_page_swaps_it_for_a_cookie(
    target: status.Target,
) -> None:
    token = "s3cret-token-for-tests"
    dashboard = Dashboard(target, clients, guard_.Guard("0.0.0.0", PORT, token))  # noqa: S104
    # WHEN a request comes without the token
    refused = get(dashboard, "/api/overview")
    # THEN 401 saying how to give it
    assert refused.status == 401 and "needs its token" in refused.json()["error"]
    # WHEN the page is opened with ?token=
    opened = get(dashboard, f"/?token={token}")
    # THEN it is sent to / with the token in a cookie
    assert opened.status == 303 and opened.headers["Location"] == "/"
    cookie = opened.headers["Set-Cookie"].split(";")[0]
    assert "HttpOnly" in opened.headers["Set-Cookie"]
    assert get(dashboard, "/api/overview", cookie=cookie).status == 200
    assert get(dashboard, "/api/overview", authorization=f"Bearer {token}").status == 200
    assert get(dashboard, "/api/overview", cookie="galley_dashboard_token=nope").status == 401


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.5", "::", "example.com"])  # noqa: S104
def test_binding_beyond_loopback_without_a_token_is_refused_in_one_line(
    target: status.Target, host: str
) -> None:
    with pytest.raises(ValueError, match=r"is not a loopback address: .* give a token") as refused:
        server.start(target, clients, host=host, port=0)
    assert "\n" not in str(refused.value)


def test_the_stack_out_of_reach_is_an_error_line_and_the_server_answers_on(
    target: status.Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN clients of an endpoint where nothing listens
    from botocore.config import Config

    def down(service: str) -> Any:
        config = Config(connect_timeout=1, retries={"max_attempts": 1})
        return boto3.client(
            service, region_name="us-east-1", endpoint_url="http://127.0.0.1:9", config=config
        )

    dashboard = Dashboard(target, down, guard_.Guard("127.0.0.1", PORT))
    # WHEN the page refreshes, lists dead letters and looks a job up
    page = {guard_.CSRF_HEADER: dashboard.guard.csrf}
    paths = ("/api/overview", "/api/dlq", f"/api/job?id={DONE_ID}")
    answers = [get(dashboard, path, **page) for path in paths]
    # THEN each is JSON with a line saying what cannot be reached, and no 500
    overview, letters, job = answers
    assert overview.status == 503 and "Could not connect" in overview.json()["error"]
    assert "Could not connect" in letters.json()["queues"][0]["problem"]
    assert job.status == 502 and "Could not connect" in job.json()["error"]


def test_a_refresh_behind_one_waiting_for_aws_is_a_503_not_one_more_thread_waiting(
    target: status.Target,
) -> None:
    # GIVEN AWS that hangs on the first refresh's queue depths
    entered, release = threading.Event(), threading.Event()

    def hang(**_: Any) -> None:  # (a hook that returns a value would stand for the answer)
        entered.set()
        release.wait(10)

    def hanging(service: str) -> Any:
        client = clients(service)
        client.meta.events.register("before-call.sqs.GetQueueAttributes", hang)
        return client

    dashboard = Dashboard(target, hanging, guard_.Guard("127.0.0.1", PORT))
    dashboard.turn_wait = 0.2
    first: list[Response] = []
    waiting = threading.Thread(target=lambda: first.append(get(dashboard, "/api/overview")))
    waiting.start()
    try:
        assert entered.wait(10)
        # WHEN the page asks again (and again) meanwhile
        again = get(dashboard, "/api/overview")
        # THEN it is told at once that the refresh before it is still waiting
        assert again.status == 503, again.body
        assert "still waiting for AWS" in again.json()["error"]
    finally:
        release.set()
        waiting.join(10)
    assert first[0].status == 200


@pytest.fixture
def running(target: status.Target) -> Iterator[server.Running]:
    """The dashboard served on a free loopback port (a short client timeout, for the tests)."""
    started = server.start(target, clients, port=0)
    started.server.client_timeout = 0.5
    try:
        yield started
    finally:
        started.stop()


def over_socket(running: server.Running, request: bytes) -> bytes:
    """Everything the server answers ``request`` until it hangs up."""
    with socket.create_connection(("127.0.0.1", running.guard.port), timeout=5) as client:
        client.sendall(request)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
        return answer


def test_a_client_that_sends_half_a_request_is_hung_up_on(running: server.Running) -> None:
    # WHEN a client sends half a request line and waits (slowloris: a thread each)
    # THEN the server hangs up on it instead of holding a thread for ever
    assert over_socket(running, b"GET / HTTP/1.1\r\n") == b""


@pytest.mark.parametrize("method", ["OPTIONS", "PATCH", "TRACE"])
def test_any_method_is_a_json_answer(running: server.Running, method: str) -> None:
    host = f"Host: 127.0.0.1:{running.guard.port}"
    answer = over_socket(running, f"{method} / HTTP/1.1\r\n{host}\r\n\r\n".encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405 "), head
    assert json.loads(body)["error"] == f"method {method} is not allowed here"


def test_a_chunked_body_is_refused_not_read_as_the_next_request(running: server.Running) -> None:
    # GIVEN a POST whose body is chunked (no Content-Length)
    host = f"127.0.0.1:{running.guard.port}"
    body = json.dumps({"action": "purge", "queue": "jobs"}).encode()
    request = (
        (
            f"POST /api/dlq HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n"
            f"{guard_.CSRF_HEADER}: {running.guard.csrf}\r\nTransfer-Encoding: chunked\r\n\r\n"
            f"{len(body):x}\r\n"
        ).encode()
        + body
        + b"\r\n0\r\n\r\n"
    )
    # WHEN it is sent
    answer = over_socket(running, request)
    # THEN one answer says so: 411, and the chunks are not taken for another request
    assert answer.startswith(b"HTTP/1.1 411 "), answer[:200]
    assert answer.count(b"HTTP/1.1 ") == 1, answer


def test_listing_dead_letters_needs_the_pages_token(
    dashboard: Dashboard, target: status.Target
) -> None:
    # GIVEN a dead letter
    sqs = clients("sqs")
    dead_letter(sqs, target.dead_letter_queues["jobs"], "{}", reason="r", source_queue="jobs")
    # WHEN another site's page makes the browser GET the listing (a receive of every message)
    answer = get(dashboard, "/api/dlq")
    # THEN it is refused: no message was received
    assert answer.status == 403 and "X-Galley-CSRF" in answer.json()["error"]
    attrs = sqs.get_queue_attributes(
        QueueUrl=target.dead_letter_queues["jobs"], AttributeNames=["All"]
    )["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "1"
    # AND the page, which sends its token, lists it
    listed = get(dashboard, "/api/dlq", **{guard_.CSRF_HEADER: dashboard.guard.csrf})
    assert [len(q["letters"]) for q in listed.json()["queues"]] == [1, 0]


def test_a_progress_beyond_a_float_is_no_progress(dashboard: Dashboard) -> None:
    store_result({"status": "PROGRESS", "result": {"done": 10**400, "total": 4}, "name": "t"})
    answer = get(dashboard, f"/api/job?id={DONE_ID}")
    assert answer.status == 200 and answer.json()["job"]["progress"] is None


# --- fuzzing: whatever a request holds, a JSON answer, never a 500 ---

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
BODIES = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "action": st.one_of(st.sampled_from(["redrive", "purge"]), JSON_VALUES),
            "queue": st.one_of(st.sampled_from(["jobs", "long"]), JSON_VALUES),
            "ids": st.one_of(st.lists(TEXT, max_size=3), JSON_VALUES),
        },
    ),
    JSON_VALUES,
)
PATHS = st.one_of(
    st.builds(lambda s: f"/api/job?id={s}", TEXT),
    st.builds(lambda s: "/" + s, TEXT),
    st.sampled_from(
        ["/api/job", "/api/job?id=", "/api/job?id=%00", "/api/job?id=%ff%fe", "/api/dlq"]
    ),
)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def answered(response: Response) -> dict[str, Any]:
    assert response.status != 500, response.body
    if response.content_type == "application/json":
        data = response.json()
        assert isinstance(data, dict)
        if response.status >= 400:
            assert isinstance(data["error"], str) and data["error"] and "\n" not in data["error"]
        return data
    return {}


@FUZZ
@given(body=BODIES)
@example(body={"action": "redrive", "queue": "jobs", "ids": ["a b"]})
@example(body={"action": "purge", "queue": "jobs", "ids": []})
@example(body={"action": "redrive", "queue": "long"})
def test_any_action_body_is_a_clear_json_answer(dashboard: Dashboard, body: Any) -> None:
    answered(post(dashboard, body))


@FUZZ
@given(raw=st.binary(max_size=200))
def test_any_bytes_posted_are_a_clear_json_answer(dashboard: Dashboard, raw: bytes) -> None:
    answered(post(dashboard, raw))


@FUZZ
@given(path=PATHS, method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE"]))
def test_any_path_and_job_id_is_a_clear_json_answer(
    dashboard: Dashboard, path: str, method: str
) -> None:
    headers = {"host": HOST, "origin": ORIGIN, guard_.CSRF_HEADER: dashboard.guard.csrf}
    answer = dashboard.handle(Request(method, path, headers, b"{}"))
    data = answered(answer)
    if path.startswith("/api/job?id=") and answer.status == 404:
        assert data["error"].startswith("no such job")


def test_fixtures_are_what_the_fuzzers_need(dashboard: Dashboard) -> None:
    # a sanity check that the fuzzers reach the handlers, not a refusal at the door
    assert post(dashboard, {"action": "nope", "queue": "jobs"}).json()["error"] == (
        'action: expected redrive or purge, got "nope"'
    )
