"""`galley revoke` on any arguments: revoked, or one line (exit 2 for bad input), never a
traceback."""

from __future__ import annotations

import os
from unittest import mock

import boto3
from botocore.exceptions import EndpointConnectionError
from celery.exceptions import BackendGetMetaError
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.cli.main import main

BUCKET = "revoke-fuzz"
ENV = {
    "GALLEY_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/q",
    "GALLEY_RESULTS_BUCKET": BUCKET,
}
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
ARGS = st.lists(
    st.one_of(
        st.sampled_from(
            ["--terminate", "--signal", "SIGKILL", "KILL", "9", "--help", "-x", "--", "--json"]
        ),
        st.uuids().map(str),
        TEXT,
    ),
    max_size=5,
)


def run(args: list[str]) -> object:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GALLEY_")}
    with mock.patch.dict(os.environ, {**clean, **ENV}, clear=True):
        return CliRunner().invoke(main, ["revoke", *args])


def test_revoke_says_what_it_did(moto_in_process: None) -> None:
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    result = run(["job-1", "job-2"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("revoked job-1: no result yet")
    again = run(["job-1"])
    assert again.exit_code == 0 and "already revoked" in again.output


def test_a_bad_id_is_one_line_and_exit_2(moto_in_process: None) -> None:
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    result = run(["job-1", "a b"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        "Error: not a task id: 'a b' holds ' ' (spaces and control or unassigned characters "
        "are not in task ids)"
    ]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(args=ARGS, bucket=st.booleans())
def test_revoke_never_prints_a_traceback(
    moto_in_process: None, args: list[str], bucket: bool
) -> None:
    # GIVEN AWS mocked in this process, the results bucket there or not
    s3 = boto3.client("s3", region_name="us-east-1")
    if bucket:
        s3.create_bucket(Bucket=BUCKET)
    # WHEN `galley revoke` runs with any arguments
    result = run(args)
    # THEN revoked, a usage error or one-line error: never an exception out of the command
    assert result.exit_code in (0, 1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    if bucket:
        s3.delete_objects(
            Bucket=BUCKET,
            Delete={
                "Objects": [
                    {"Key": o["Key"]} for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
                ]
                or [{"Key": "none"}]
            },
        )
        s3.delete_bucket(Bucket=BUCKET)


def test_s3_out_of_reach_is_one_line_naming_why(moto_in_process: None) -> None:
    # GIVEN a results bucket the backend cannot reach: Celery's backend gives up after its
    # retries with BackendGetMetaError("failed to get meta"), the cause chained to it
    cause = EndpointConnectionError(endpoint_url="http://127.0.0.1:1/bbb")
    gave_up = BackendGetMetaError("failed to get meta", task_id="job-1", state="PENDING")
    gave_up.__cause__ = cause
    # WHEN `galley revoke` runs
    with mock.patch("runner.runtime.revoking.revoke", side_effect=gave_up):
        result = run(["job-1"])
    # THEN one line naming what could not be reached, exit 1: no traceback
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: the results backend: failed to get meta (EndpointConnectionError: Could not "
        'connect to the endpoint URL: "http://127.0.0.1:1/bbb")'
    ]
