"""runner.local.snapshot: moto's messages and objects saved and put back, the file read as outside
input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.errors import LocalDataError
from runner.local import snapshot

BUCKET = "galley-local-results-abcd1234"
QUEUE = "galley-local-jobs"
REASON = {"galley-reason": {"DataType": "String", "StringValue": "unknown task"}}
BLOB = {"blob": {"DataType": "Binary", "BinaryValue": b"\x00\xff"}}

# Each example overwrites the one file it reads: the shared tmp_path is on purpose.
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _fresh_moto() -> tuple[Any, Any, str]:
    """Clients on an empty moto with the stack's queue and bucket (as a new deployment has)."""
    from moto.core.models import BackendDict

    BackendDict.reset()
    sqs, s3 = boto3.client("sqs"), boto3.client("s3")
    url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    s3.create_bucket(Bucket=BUCKET)
    return sqs, s3, url


def test_every_message_and_object_comes_back_as_it_was(moto_in_process: None) -> None:
    # GIVEN a queue with a dead letter's reason, a binary attribute, a job in flight and a
    # delayed one, and a bucket with a result
    sqs, s3, url = _fresh_moto()
    sent = sqs.send_message(QueueUrl=url, MessageBody="flight", MessageAttributes=BLOB)
    (held,) = sqs.receive_message(QueueUrl=url, VisibilityTimeout=600)["Messages"]
    sqs.send_message(QueueUrl=url, MessageBody="dead", MessageAttributes=REASON)
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=600)
    s3.put_object(
        Bucket=BUCKET,
        Key="results/r1",
        Body=b"\x00{}",
        ContentType="application/json",
        Metadata={"who": "test"},
    )
    before = s3.head_object(Bucket=BUCKET, Key="results/r1")
    # WHEN it is captured and put into a new moto with the same queue and bucket
    saved = snapshot.Snapshot.model_validate_json(snapshot.capture().model_dump_json())
    sqs, s3, url = _fresh_moto()
    report, rest = snapshot.restore(saved)
    # THEN everything is back, the job in flight visible again
    assert rest is None and report.messages == {QUEUE: 3} and report.objects == {BUCKET: 1}
    got = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
    )["Messages"]
    by_body = {m["Body"]: m for m in got}
    assert set(by_body) == {"flight", "dead"}  # "later" is still delayed
    assert by_body["flight"]["MessageId"] == sent["MessageId"] == held["MessageId"]
    assert by_body["flight"]["MessageAttributes"] == BLOB
    assert by_body["flight"]["Attributes"]["ApproximateReceiveCount"] == "2"
    assert by_body["dead"]["MessageAttributes"] == REASON
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessagesDelayed"] == "1"
    after = s3.get_object(Bucket=BUCKET, Key="results/r1")
    assert after["Body"].read() == b"\x00{}"
    for field in ("ETag", "ContentType", "Metadata", "LastModified"):
        assert after[field] == before[field], field


def test_what_is_already_there_is_not_overwritten(moto_in_process: None) -> None:
    # GIVEN a saved result and message, and a new moto where both exist already (a worker
    # attached from another shell wrote the result again before the restore)
    sqs, s3, url = _fresh_moto()
    sqs.send_message(QueueUrl=url, MessageBody="once")
    s3.put_object(Bucket=BUCKET, Key="results/r1", Body=b"old")
    saved = snapshot.capture()
    report, _ = snapshot.restore(saved)  # into the same moto: all there already
    assert report.skipped == 2 and not report.messages and not report.objects
    s3.put_object(Bucket=BUCKET, Key="results/r1", Body=b"new")
    snapshot.restore(saved)
    assert s3.get_object(Bucket=BUCKET, Key="results/r1")["Body"].read() == b"new"
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "1"


def test_a_queue_or_bucket_the_new_stack_lacks_is_kept_aside(
    moto_in_process: None, tmp_path: Path
) -> None:
    # GIVEN saved data of a queue the template has since renamed
    sqs, _, url = _fresh_moto()
    old = sqs.create_queue(QueueName="renamed-away")["QueueUrl"]
    sqs.send_message(QueueUrl=old, MessageBody="orphan")
    sqs.send_message(QueueUrl=url, MessageBody="kept")
    data = snapshot.DataFile(tmp_path / "local-data.json")
    data.armed = True
    data.save()
    # WHEN it is restored into a stack without that queue
    _fresh_moto()
    report = snapshot.DataFile(tmp_path / "local-data.json").restore()
    # THEN what fits is restored, and the rest is in a file of its own, named
    assert report.messages == {QUEUE: 1}
    assert report.unrestored == ["queue renamed-away (1 messages)"]
    assert report.unrestored_file is not None
    aside = snapshot.load(Path(report.unrestored_file))
    assert aside is not None and [q.name for q in aside.queues] == ["renamed-away"]


def test_saving_waits_until_the_last_data_is_back(moto_in_process: None, tmp_path: Path) -> None:
    # GIVEN a data file from the last run, and a moto that has not restored it (a deployment
    # that failed)
    _fresh_moto()
    path = tmp_path / "local-data.json"
    snapshot.write(path, snapshot.capture())
    before = path.read_bytes()
    data = snapshot.DataFile(path)
    # WHEN that moto stops, THEN the file is left as it was
    assert data.save() is None
    assert path.read_bytes() == before
    # AND once restored, saving writes it
    data.restore()
    assert data.save() is not None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)


def _load_is_a_snapshot_or_one_line(path: Path, raw: bytes) -> None:
    path.write_bytes(raw)
    try:
        loaded = snapshot.load(path)
    except LocalDataError as error:
        assert "\n" not in str(error) and str(path) in str(error)
    else:
        assert isinstance(loaded, snapshot.Snapshot)


@FUZZ
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_file_is_a_snapshot_or_one_clear_line(tmp_path: Path, raw: bytes) -> None:
    _load_is_a_snapshot_or_one_line(tmp_path / "data.json", raw)


@FUZZ
@given(
    message=st.fixed_dictionaries(
        {"id": st.text(max_size=5), "body": st.text(max_size=5)},
        optional={
            "attributes": st.dictionaries(
                st.text(max_size=5),
                st.fixed_dictionaries(
                    {"data_type": st.text(max_size=8)},
                    optional={"binary_value": st.text(max_size=8)},
                ),
            ),
            "receive_count": st.integers(),
            "delayed_until": st.floats(),
            "sent_timestamp": json_values,
        },
    ),
    obj=st.fixed_dictionaries(
        {"key": st.text(max_size=5), "body": st.text(max_size=12)},
        optional={"metadata": json_values, "last_modified": st.text(max_size=30)},
    ),
)
def test_a_damaged_snapshot_is_a_snapshot_or_one_clear_line(
    tmp_path: Path, message: dict[str, Any], obj: dict[str, Any]
) -> None:
    document = {
        "format": "galley-local-data",
        "version": 1,
        "saved_at": "2026-11-30T12:00:00Z",
        "queues": [{"account": "1", "region": "r", "name": "q", "messages": [message]}],
        "buckets": [{"name": "bkt", "objects": [obj]}],
    }
    _load_is_a_snapshot_or_one_line(tmp_path / "data.json", json.dumps(document).encode())
