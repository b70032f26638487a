"""runner.local.motoserver: moto's conditional writes made atomic, as S3's are."""

from __future__ import annotations

import threading
import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.s3.models import S3Backend

from runner.local import motoserver

BUCKET = "cas"


@pytest.fixture
def s3(moto_in_process: None) -> Any:
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


def test_of_two_writers_holding_the_same_etag_exactly_one_wins(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an object, and a moto whose writes take a while (as a busy server's do)
    etag = s3.put_object(Bucket=BUCKET, Key="counter", Body=b"0")["ETag"]
    slow_put = S3Backend.put_object

    def put_object(self: S3Backend, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.2)
        return slow_put(self, *args, **kwargs)

    monkeypatch.setattr(S3Backend, "put_object", put_object)
    motoserver.serialize_s3_objects()
    # WHEN two writers replace it at once, each on the ETag it read
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def write(body: bytes) -> None:
        barrier.wait()
        try:
            s3.put_object(Bucket=BUCKET, Key="counter", Body=body, IfMatch=etag)
            outcomes.append("written")
        except ClientError as error:
            outcomes.append(error.response["Error"]["Code"])

    writers = [threading.Thread(target=write, args=(body,)) for body in (b"1", b"2")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    # THEN exactly one wins; the other is told its precondition failed
    assert sorted(outcomes) == ["PreconditionFailed", "written"]


def test_serializing_twice_wraps_once() -> None:
    motoserver.serialize_s3_objects()
    wrapped = motoserver.S3Response.key_response
    motoserver.serialize_s3_objects()
    assert motoserver.S3Response.key_response is wrapped
