"""Start-up checks (runner/ops/checks.py) and `galley doctor` against a real moto server."""

from __future__ import annotations

import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from runner.core import aws, settings
from runner.core.settings import WorkerSettings, load
from runner.local import embedded
from runner.ops import checks
from runner.ops.checks import Problem, QueueFacts, Resolved
from tests import support

MakeStack = Callable[..., embedded.LocalResources]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from each test's arguments only, never from the shell running pytest."""
    for name in settings.ALL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def settings_for(stack: embedded.LocalResources, **overrides: Any) -> WorkerSettings:
    """Worker settings for ``stack``; GALLEY_DLQ_URL and GALLEY_VISIBILITY_TIMEOUT stay unset
    unless given, as a deployment that relies on the queue's own attributes would have them."""
    values = {
        "endpoint_url": stack.endpoint_url,
        "region": stack.region,
        "queue_url": stack.queue_url,
        "results_bucket": stack.bucket,
        **overrides,
    }
    return load(WorkerSettings, **values)


def run(stack: embedded.LocalResources, **overrides: Any) -> checks.Report:
    config = settings_for(stack, **overrides)
    sqs, s3 = checks.clients(config, session=embedded.local_session(stack.region))
    return checks.run_checks(config, sqs, s3)


def statuses(report: checks.Report) -> dict[str, str]:
    return {check.variable: check.status for check in report.checks}


def queue_without_redrive(stack: embedded.LocalResources, visibility: int = 30) -> str:
    sqs, _ = support.clients(stack)
    name = f"plain-{uuid.uuid4().hex[:10]}"
    attributes = {"VisibilityTimeout": str(visibility)}
    return str(sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])


# --- runner.ops.checks ---


def test_good_stack_passes_and_resolves_from_the_queue(make_stack: MakeStack) -> None:
    # GIVEN a queue (visibility 45 s) redriving to a DLQ, a bucket, and settings that name
    # neither the visibility timeout nor the DLQ
    stack = make_stack(visibility_timeout=45, max_receive_count=4)
    config = settings_for(stack)
    sqs, s3 = checks.clients(config, session=embedded.local_session(stack.region))
    # WHEN the worker's checks run
    problems, resolved = checks.worker_problems(config, sqs, s3)
    # THEN nothing is wrong, and the queue's visibility and its RedrivePolicy's DLQ are resolved
    assert problems == []
    assert resolved == Resolved(visibility_timeout=45, dlq_url=stack.dlq_url)
    assert config.visibility_timeout == 900  # the default, which the queue's value replaces
    # AND the queue's facts read as they were created
    assert checks.inspect_queue(sqs, stack.queue_url, settings.QUEUE_URL) == QueueFacts(
        url=stack.queue_url,
        visibility_timeout=45,
        dead_letter_url=stack.dlq_url,
        max_receive_count=4,
    )


def test_every_check_of_a_good_stack_is_listed_as_ok(make_stack: MakeStack) -> None:
    # GIVEN a good stack with every variable set, the long-jobs queue included
    stack = make_stack()
    long_stack = make_stack()
    # WHEN
    report = run(
        stack,
        dlq_url=stack.dlq_url,
        visibility_timeout=stack.visibility_timeout,
        long_queue_url=long_stack.queue_url,
    )
    # THEN each variable has its passing check, in order
    assert [(c.variable, c.status) for c in report.checks] == [
        (settings.QUEUE_URL, "ok"),
        (settings.VISIBILITY_TIMEOUT, "ok"),
        (settings.DLQ_URL, "ok"),
        (settings.LONG_QUEUE_URL, "ok"),
        (settings.RESULTS_BUCKET, "ok"),
    ]
    assert report.resolved == Resolved(stack.visibility_timeout, stack.dlq_url)


def test_a_worker_on_the_long_queue_checks_and_resolves_that_queue(make_stack: MakeStack) -> None:
    # GIVEN the jobs queue (visibility 45 s) and the long-jobs queue (300 s), each with its DLQ
    jobs = make_stack(visibility_timeout=45)
    long = make_stack(visibility_timeout=300)
    config = settings_for(jobs, long_queue_url=long.queue_url)
    sqs, s3 = checks.clients(config, session=embedded.local_session(jobs.region))
    # WHEN a worker for the long queue runs its checks
    report = checks.run_checks(config, sqs, s3, consume="long")
    # THEN the long queue is its queue: its visibility and its DLQ are resolved
    assert report.problems == []
    assert report.resolved == Resolved(visibility_timeout=300, dlq_url=long.dlq_url)
    assert [(c.variable, c.status) for c in report.checks] == [
        (settings.LONG_QUEUE_URL, "ok"),
        (settings.VISIBILITY_TIMEOUT, "ok"),
        (settings.LONG_DLQ_URL, "ok"),
        (settings.QUEUE_URL, "ok"),
        (settings.RESULTS_BUCKET, "ok"),
    ]


def test_a_long_worker_with_the_jobs_queues_visibility_is_refused(make_stack: MakeStack) -> None:
    # GIVEN GALLEY_VISIBILITY_TIMEOUT is the jobs queue's 120 s, the long queue's is 300 s
    jobs = make_stack(visibility_timeout=120)
    long = make_stack(visibility_timeout=300)
    config = settings_for(jobs, long_queue_url=long.queue_url, visibility_timeout=120)
    sqs, s3 = checks.clients(config, session=embedded.local_session(jobs.region))
    # WHEN a worker for the long queue runs its checks
    report = checks.run_checks(config, sqs, s3, consume="long")
    # THEN it is refused, naming both values and the queue
    assert [str(p) for p in report.problems] == [
        "GALLEY_VISIBILITY_TIMEOUT: 120 differs from the long queue's VisibilityTimeout 300; "
        "set it to 300 or unset it (the queue's value is then used)"
    ]


def test_a_long_worker_without_the_long_queue_is_refused(make_stack: MakeStack) -> None:
    jobs = make_stack()
    config = settings_for(jobs)
    sqs, s3 = checks.clients(config, session=embedded.local_session(jobs.region))
    report = checks.run_checks(config, sqs, s3, consume="long")
    assert [str(p) for p in report.problems] == [
        "GALLEY_LONG_QUEUE_URL: not set, so no worker can consume the long queue"
    ]


def test_wrong_queue_url_is_named(make_stack: MakeStack) -> None:
    # GIVEN a queue URL on the right endpoint that names no queue
    stack = make_stack()
    wrong = stack.queue_url + "-typo"
    # WHEN
    report = run(stack, queue_url=wrong)
    # THEN one problem: the queue does not exist; what depends on it is skipped, the bucket is ok
    assert [str(p) for p in report.problems] == [
        f"GALLEY_QUEUE_URL: queue {wrong} does not exist (check its account, region, name)"
    ]
    assert statuses(report) == {
        settings.QUEUE_URL: "fail",
        settings.VISIBILITY_TIMEOUT: "skipped",
        settings.DLQ_URL: "skipped",
        settings.RESULTS_BUCKET: "ok",
    }
    # AND inspect_queue on its own gives the same problem
    sqs, _ = support.clients(stack)
    assert checks.inspect_queue(sqs, wrong, settings.QUEUE_URL) == report.problems[0]


def test_queue_without_redrive_policy_needs_a_dlq(make_stack: MakeStack) -> None:
    # GIVEN a queue with no RedrivePolicy
    stack = make_stack()
    plain = queue_without_redrive(stack)
    # WHEN GALLEY_DLQ_URL is not set either
    report = run(stack, queue_url=plain)
    # THEN the one problem says how to get a dead-letter queue
    assert report.problems == [
        Problem(
            "GALLEY_DLQ_URL",
            "no dead-letter queue: set GALLEY_DLQ_URL or give the queue a RedrivePolicy; "
            "without one a failing job is retried forever",
        )
    ]
    assert report.resolved.dlq_url is None
    # WHEN GALLEY_DLQ_URL names an existing queue
    fixed = run(stack, queue_url=plain, dlq_url=stack.dlq_url)
    # THEN it passes, and that queue is the one to use
    assert fixed.problems == []
    assert fixed.resolved.dlq_url == stack.dlq_url


def test_dlq_url_naming_a_missing_queue_is_refused(make_stack: MakeStack) -> None:
    # GIVEN GALLEY_DLQ_URL naming no queue (the jobs queue has a RedrivePolicy: it does not help)
    stack = make_stack()
    missing = stack.dlq_url + "-gone"
    # WHEN
    report = run(stack, dlq_url=missing)
    # THEN
    assert [str(p) for p in report.problems] == [
        f"GALLEY_DLQ_URL: queue {missing} does not exist (check its account, region, name)"
    ]


def test_redrive_target_that_was_deleted_is_reported(make_stack: MakeStack) -> None:
    # GIVEN a queue whose RedrivePolicy's dead-letter queue has been deleted since
    stack = make_stack()
    sqs, _ = support.clients(stack)
    sqs.delete_queue(QueueUrl=stack.dlq_url)
    # WHEN
    report = run(stack)
    # THEN the DLQ check names the missing queue and says what to do
    [problem] = report.problems
    assert problem.variable == "GALLEY_DLQ_URL"
    assert f"queue {stack.dlq_url} does not exist" in problem.message
    assert "RedrivePolicy" in problem.message
    assert report.resolved.dlq_url is None


def test_missing_bucket_is_named(make_stack: MakeStack) -> None:
    # GIVEN a bucket name that is valid but was never created
    stack = make_stack()
    bucket = f"nobucket-{uuid.uuid4().hex[:10]}"
    # WHEN
    report = run(stack, results_bucket=bucket)
    # THEN
    assert [str(p) for p in report.problems] == [
        f"GALLEY_RESULTS_BUCKET: bucket {bucket} does not exist"
    ]


def test_missing_long_queue_is_named(make_stack: MakeStack) -> None:
    stack = make_stack()
    missing = stack.queue_url + "-long"
    report = run(stack, long_queue_url=missing)
    assert [str(p) for p in report.problems] == [
        f"GALLEY_LONG_QUEUE_URL: queue {missing} does not exist (check its account, region, name)"
    ]


def test_explicit_visibility_must_match_the_queue(make_stack: MakeStack) -> None:
    # GIVEN a queue with a 120 s visibility timeout
    stack = make_stack(visibility_timeout=120)
    # WHEN GALLEY_VISIBILITY_TIMEOUT is set to something else
    report = run(stack, visibility_timeout=60)
    # THEN the problem gives both values
    assert [str(p) for p in report.problems] == [
        "GALLEY_VISIBILITY_TIMEOUT: 60 differs from the jobs queue's VisibilityTimeout 120; "
        "set it to 120 or unset it (the queue's value is then used)"
    ]
    # WHEN it is set to the queue's value
    agreed = run(stack, visibility_timeout=120)
    # THEN it passes
    assert agreed.problems == []
    assert agreed.resolved.visibility_timeout == 120


def test_visibility_from_the_environment_counts_as_explicit(
    make_stack: MakeStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN GALLEY_VISIBILITY_TIMEOUT in the environment (not as an argument) at the default 900
    stack = make_stack(visibility_timeout=120)
    monkeypatch.setenv(settings.VISIBILITY_TIMEOUT, "900")
    # WHEN
    report = run(stack)
    # THEN it is checked against the queue, not silently replaced by the queue's value
    assert [p.variable for p in report.problems] == [settings.VISIBILITY_TIMEOUT]
    assert "900 differs from the jobs queue's VisibilityTimeout 120" in report.problems[0].message


def test_unreachable_endpoint_is_one_problem_naming_aws_endpoint_url(
    make_stack: MakeStack,
) -> None:
    # GIVEN settings pointing at a port on 127.0.0.1 that nothing listens on
    stack = make_stack()
    endpoint = f"http://127.0.0.1:{embedded.free_port()}"
    queue_url = endpoint + "/123456789012/" + settings.queue_name_from_url(stack.queue_url)
    # WHEN the checks run with their own short-timeout clients
    started = time.monotonic()
    report = run(stack, endpoint_url=endpoint, queue_url=queue_url)
    elapsed = time.monotonic() - started
    # THEN there is one problem, naming AWS_ENDPOINT_URL and its value, and it came quickly
    [problem] = report.problems
    assert problem.variable == "AWS_ENDPOINT_URL"
    assert problem.message.startswith(f"cannot reach {endpoint} (")
    assert "\n" not in str(problem)
    assert elapsed < 15
    # AND every later check is skipped, not failed again
    assert [c.status for c in report.checks] == ["fail", "skipped", "skipped", "skipped"]


def test_format_problems_is_one_line_each() -> None:
    problems = [Problem("GALLEY_QUEUE_URL", "queue q does not exist"), Problem("B", "c")]
    assert checks.format_problems(problems) == ("GALLEY_QUEUE_URL: queue q does not exist\nB: c")


# --- permissions and credentials, on a moto server that checks IAM ---


@pytest.fixture(scope="module")
def iam_stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[embedded.LocalResources, boto3.Session]]:
    """A stack on a moto server of its own that enforces IAM, and a session for a user with no
    permissions at all."""
    log = tmp_path_factory.mktemp("moto-iam") / "moto.log"
    with embedded.MotoServer(log=log) as server:
        stack = support.provision(server.url, support.unique_config())
        iam = aws.client("iam", endpoint_url=server.url, session=embedded.local_session())
        iam.create_user(UserName="nobody")
        key = iam.create_access_key(UserName="nobody")["AccessKey"]
        # From here on moto authenticates every request and applies IAM policies.
        request = urllib.request.Request(
            f"{server.url}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request):
            pass
        yield (
            stack,
            boto3.Session(
                aws_access_key_id=key["AccessKeyId"],
                aws_secret_access_key=key["SecretAccessKey"],
                region_name=stack.region,
            ),
        )


def test_access_denied_says_which_permission(
    iam_stack: tuple[embedded.LocalResources, boto3.Session],
) -> None:
    # GIVEN a user allowed nothing
    stack, nobody = iam_stack
    config = settings_for(stack)
    sqs, s3 = checks.clients(config, session=nobody)
    # WHEN
    report = checks.run_checks(config, sqs, s3)
    # THEN the queue and the bucket checks each name the permission they lack
    assert [str(p) for p in report.problems] == [
        f"GALLEY_QUEUE_URL: access denied to queue {stack.queue_url}: the role or user running "
        "Galley needs sqs:GetQueueAttributes on it",
        f"GALLEY_RESULTS_BUCKET: access denied to bucket {stack.bucket}: the role or user running "
        "Galley needs s3:ListBucket on it (and s3:GetObject, s3:PutObject, s3:DeleteObject on its "
        "objects)",
    ]


def test_rejected_credentials_stop_the_checks(
    iam_stack: tuple[embedded.LocalResources, boto3.Session],
) -> None:
    # GIVEN credentials moto's IAM does not know (the dummy ones)
    stack, _ = iam_stack
    config = settings_for(stack)
    sqs, s3 = checks.clients(config, session=embedded.local_session(stack.region))
    # WHEN
    report = checks.run_checks(config, sqs, s3)
    # THEN one problem about the credentials; nothing else is tried
    [problem] = report.problems
    assert problem.variable == "AWS_ACCESS_KEY_ID"
    assert problem.message.startswith("AWS refused the credentials (InvalidClientTokenId)")
    assert [c.status for c in report.checks] == ["fail", "skipped", "skipped", "skipped"]


# --- galley doctor ---


def doctor(
    env: dict[str, str], cwd: Path | None = None, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        support.galley("doctor", *args),
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_doctor_checks_the_long_queue_as_its_worker_would(make_stack: MakeStack) -> None:
    # GIVEN the jobs queue's visibility timeout in the environment, and a long queue of 300 s
    stack = make_stack(visibility_timeout=120)
    long = make_stack(visibility_timeout=300)
    env = {**support.attached_env(stack), "GALLEY_LONG_QUEUE_URL": long.queue_url}
    # WHEN `galley doctor --queue long` runs
    result = doctor(env, None, "--queue", "long")
    # THEN it checks the long queue, and names the visibility timeout that does not fit it
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL GALLEY_VISIBILITY_TIMEOUT: 120 differs from the long queue's" in result.stdout
    assert f"ok   GALLEY_LONG_QUEUE_URL: queue {long.queue_url} exists" in result.stdout


def test_doctor_on_a_good_stack_exits_0(stack: embedded.LocalResources) -> None:
    # WHEN `galley doctor` runs attached to a good stack (stdout is a pipe: plain marks)
    result = doctor(support.attached_env(stack))
    # THEN every check is ok and it exits 0
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines == [
        f"ok   GALLEY_QUEUE_URL: queue {stack.queue_url} exists (VisibilityTimeout 120 s)",
        "ok   GALLEY_VISIBILITY_TIMEOUT: 120 s, as the queue's",
        f"ok   GALLEY_DLQ_URL: dead-letter queue {stack.dlq_url} exists",
        f"ok   GALLEY_RESULTS_BUCKET: bucket {stack.bucket} exists",
        "all checks passed",
    ]


def test_doctor_names_the_variable_and_exits_1(stack: embedded.LocalResources) -> None:
    # GIVEN a bucket that does not exist and a visibility timeout the queue does not have
    env = support.attached_env(
        stack, GALLEY_RESULTS_BUCKET="no-such-bucket-here", GALLEY_VISIBILITY_TIMEOUT="30"
    )
    # WHEN
    result = doctor(env)
    # THEN both are named, one line each, with no traceback, and it exits 1
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL GALLEY_RESULTS_BUCKET: bucket no-such-bucket-here does not exist" in result.stdout
    assert (
        "FAIL GALLEY_VISIBILITY_TIMEOUT: 30 differs from the jobs queue's VisibilityTimeout 120"
        in result.stdout
    )
    assert f"ok   GALLEY_QUEUE_URL: queue {stack.queue_url} exists" in result.stdout
    assert "Error: 2 problem(s)" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_doctor_with_unreachable_endpoint_exits_1(stack: embedded.LocalResources) -> None:
    endpoint = f"http://127.0.0.1:{embedded.free_port()}"
    result = doctor(support.attached_env(stack, AWS_ENDPOINT_URL=endpoint))
    assert result.returncode == 1
    assert result.stdout.startswith(f"FAIL AWS_ENDPOINT_URL: cannot reach {endpoint}")
    assert "Traceback" not in result.stdout + result.stderr


def test_doctor_with_bad_settings_prints_the_usual_error(
    stack: embedded.LocalResources, tmp_path: Path
) -> None:
    # GIVEN a FIFO queue URL and no bucket
    env = support.attached_env(stack, GALLEY_QUEUE_URL=stack.queue_url + ".fifo")
    del env["GALLEY_RESULTS_BUCKET"]
    # WHEN
    result = doctor(env, cwd=tmp_path)
    # THEN the settings error names both variables; no check ran
    assert result.returncode == 1
    assert "GALLEY_QUEUE_URL:" in result.stderr and "is a FIFO queue" in result.stderr
    assert "GALLEY_RESULTS_BUCKET: required but not set" in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
