"""runner.producer.sender on a moto server: boto3 only, and a stock `celery worker` runs what it
sends."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from celery.result import AsyncResult

from runner.core import aws, limits
from runner.core.settings import ProducerSettings
from runner.errors import (
    CallError,
    EnqueueError,
    InvalidTaskInput,
    MessageTooLargeError,
    QueueNotFoundError,
    SettingsError,
)
from runner.local import embedded
from runner.local.process import Child, wait_for
from runner.producer import sender
from runner.wire import codec
from tests import support

pytestmark = pytest.mark.integration

TASK = "tasks.imports.import_records"
REPO = Path(__file__).resolve().parents[2]


def counted_client() -> tuple[Any, Counter[str]]:
    """A real SQS client (attached through the environment) that counts its API calls."""
    client = aws.client("sqs")
    calls: Counter[str] = Counter()

    def count(event_name: str, **_: Any) -> None:
        calls[event_name.rsplit(".", 1)[-1]] += 1

    client.meta.events.register("provide-client-params.sqs.*", count)
    return client, calls


def receive_all(sqs: Any, url: str, expected: int) -> list[codec.TaskMessage]:
    """Receive (and so hide) ``expected`` messages, decoded."""
    got: dict[str, codec.TaskMessage] = {}

    def enough() -> bool:
        response = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for raw in response.get("Messages", []):
            message = codec.decode(raw["Body"])
            got[message.id] = message
        return len(got) >= expected

    wait_for(enough, timeout=30, what=f"{expected} messages on {url}")
    return list(got.values())


# --- a stock Celery worker runs what the producer sends ---


def test_enqueued_task_runs_on_a_stock_worker(
    attach: embedded.LocalResources, app: Any, worker: Callable[..., Child]
) -> None:
    # GIVEN a real `celery worker` on the queue
    worker(attach)
    records = [{"name": "Ada", "email": "ada@example.com"}, {"name": "Bob", "email": "broken"}]
    # WHEN the boto3-only producer enqueues a task (queue from GALLEY_QUEUE_URL)
    task_id = sender.enqueue(TASK, [records, attach.bucket, "imports/run"])
    # THEN the worker ran it and its result is readable with AsyncResult
    result = AsyncResult(task_id, app=app)
    value = result.get(timeout=60)
    assert value == {
        "total": 2,
        "accepted": 1,
        "rejected": [{"index": 1, "reason": "email missing or malformed"}],
        "keys": ["imports/run/part-0000.jsonl"],
    }
    assert result.state == "SUCCESS"
    # AND the worker read the headers as Celery's own (result_extended stores them)
    assert result.name == TASK
    assert result.args == [records, attach.bucket, "imports/run"]
    assert result.queue == "jobs"  # the queue by its role (runner.core.queues)


def test_enqueue_many_25_calls_go_in_3_batches_and_all_succeed(
    attach: embedded.LocalResources, app: Any, worker: Callable[..., Child]
) -> None:
    # GIVEN a worker and a counted SQS client
    worker(attach)
    client, calls = counted_client()
    entries: list[int] = []
    client.meta.events.register(
        "provide-client-params.sqs.SendMessageBatch",
        lambda params, **_: entries.append(len(params["Entries"])),
    )
    # WHEN 25 calls are enqueued at once
    batch = [sender.Call(TASK, [[], attach.bucket, f"prefix/{i}"]) for i in range(25)]
    results = sender.enqueue_many(batch, client=client)
    # THEN exactly three SendMessageBatch requests of 10, 10 and 5 were made, nothing else
    assert calls == Counter({"SendMessageBatch": 3})
    assert entries == [10, 10, 5]
    # AND each call has its own task id and SQS message id, in call order
    assert all(result.ok for result in results)
    assert len({result.task_id for result in results}) == 25
    assert len({result.message_id for result in results}) == 25
    # AND every task ran to SUCCESS with its own arguments
    for i, result in enumerate(results):
        value = AsyncResult(result.task_id, app=app).get(timeout=60)
        assert value == {"total": 0, "accepted": 0, "rejected": [], "keys": []}
        async_result = AsyncResult(result.task_id, app=app)
        assert async_result.state == "SUCCESS"
        assert async_result.args == [[], attach.bucket, f"prefix/{i}"]


# --- delays ---


def test_countdown_within_900s_is_an_sqs_delay_plus_eta(attach: embedded.LocalResources) -> None:
    sqs, _ = support.clients(attach)
    before = datetime.now(UTC)
    # WHEN a task is enqueued with a 3 s countdown
    task_id = sender.enqueue(TASK, [[], attach.bucket, "p"], countdown=3)
    # THEN SQS holds it delayed: not receivable now
    attrs = sqs.get_queue_attributes(QueueUrl=attach.queue_url, AttributeNames=["All"])
    assert attrs["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "0"
    assert "Messages" not in sqs.receive_message(QueueUrl=attach.queue_url, WaitTimeSeconds=0)
    # AND it arrives no earlier than its eta header, which is Celery's now + countdown
    [message] = receive_all(sqs, attach.queue_url, 1)
    arrived = datetime.now(UTC)
    assert message.id == task_id
    assert message.delay_seconds == 3
    assert message.eta is not None
    # (SQS timestamps are whole milliseconds, hence the 1 ms)
    assert before + timedelta(seconds=3) <= message.eta <= arrived + timedelta(milliseconds=1)


def test_countdown_of_exactly_900s_is_accepted(attach: embedded.LocalResources) -> None:
    sqs, _ = support.clients(attach)
    sender.enqueue(TASK, [[], attach.bucket, "p"], countdown=limits.MAX_DELAY_SECONDS)
    attrs = sqs.get_queue_attributes(QueueUrl=attach.queue_url, AttributeNames=["All"])
    assert attrs["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"


def test_countdown_over_900s_starts_with_the_longest_hop(attach: embedded.LocalResources) -> None:
    # GIVEN a 2000 s countdown: more than SQS can delay a message
    sqs = aws.client("sqs")
    task_id = sender.enqueue(TASK, [[], attach.bucket, "p"], countdown=2000)
    # THEN the message is on the queue, delayed by SQS's maximum; its eta says the rest
    attrs = sqs.get_queue_attributes(QueueUrl=attach.queue_url, AttributeNames=["All"])
    assert attrs["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"
    request = sender.message_request(sender.Call(TASK, [1], countdown=2000), attach.queue_url)[1]
    assert request["DelaySeconds"] == limits.MAX_DELAY_SECONDS
    assert task_id
    with pytest.raises(CallError, match="countdown must be >= 0"):
        sender.enqueue(TASK, [], countdown=-1)


# --- errors that must be loud ---


def test_unknown_queue_is_a_clear_error(attach: embedded.LocalResources) -> None:
    missing = attach.queue_url + "-missing"
    client, calls = counted_client()
    # WHEN one task goes to a queue that does not exist
    with pytest.raises(QueueNotFoundError, match=f"queue {re.escape(missing)} does not"):
        sender.enqueue(TASK, [1], queue_url=missing, client=client)
    # AND a batch of 12 does
    with pytest.raises(QueueNotFoundError, match="12 of 12 task calls were not sent"):
        sender.enqueue_many([sender.Call(TASK, [i]) for i in range(12)], queue_url=missing)
    # THEN the batch was not tried again after the first request failed
    client_batch, batch_calls = counted_client()
    with pytest.raises(QueueNotFoundError) as caught:
        sender.enqueue_many(
            [sender.Call(TASK, [i]) for i in range(12)], queue_url=missing, client=client_batch
        )
    assert batch_calls == Counter({"SendMessageBatch": 1})
    assert calls == Counter({"SendMessage": 1})
    assert len(caught.value.results) == 12
    assert all(not r.ok and "does not exist" in (r.error or "") for r in caught.value.results)


def test_missing_queue_setting_names_the_variable(
    stack: embedded.LocalResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GALLEY_QUEUE_URL", raising=False)
    with pytest.raises(SettingsError, match="GALLEY_QUEUE_URL: required but not set"):
        sender.enqueue(TASK, [1])
    with pytest.raises(SettingsError, match="GALLEY_QUEUE_URL"):
        sender.enqueue(TASK, [1], queue_url="not a url")


def test_settings_and_queue_url_choose_the_queue(attach: embedded.LocalResources) -> None:
    # GIVEN a second queue, and settings that name it (the environment names attach's)
    sqs, _ = support.clients(attach)
    other = sqs.create_queue(QueueName=f"other-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    settings = ProducerSettings(queue_url=other, region=attach.region)
    # WHEN tasks are sent with those settings, with and without an explicit queue_url
    sender.enqueue(TASK, [1], settings=settings)
    sender.enqueue(TASK, [2], settings=settings)
    sender.enqueue(TASK, [3], settings=settings, queue_url=attach.queue_url)
    # THEN settings beat the environment, and queue_url beats settings
    assert support.queue_depth(attach, other) == 2
    assert support.queue_depth(attach, attach.queue_url) == 1
    [message] = receive_all(sqs, attach.queue_url, 1)
    assert message.args == [3]
    assert message.routing_key == attach.queue_url.rsplit("/", 1)[1]


def _body_size(length: int) -> int:
    """Bytes of the MessageBody for one ``length``-character argument (unchecked), sent to the
    stack's jobs queue (routing key ``jobs``)."""
    return len(codec.encode(TASK, ["x" * length], queue="jobs", task_id=str(uuid.uuid4())))


def test_oversize_message_is_refused_before_sending(
    attach: embedded.LocalResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN no bucket for large arguments (with one they go through S3: tests/e2e/test_payloads)
    monkeypatch.delenv("GALLEY_RESULTS_BUCKET")
    # AND the longest argument whose message still fits SQS's 1 MiB
    low, high = 0, limits.MAX_MESSAGE_BYTES
    while low < high:
        middle = (low + high + 1) // 2
        if _body_size(middle) <= limits.MAX_MESSAGE_BYTES:
            low = middle
        else:
            high = middle - 1
    fits = low
    # THEN SQS accepts it (our limit is not stricter than SQS's) ...
    sender.enqueue(TASK, ["x" * fits])
    # ... and one more byte is refused before sending, naming the size and the limit
    size = _body_size(fits + 1)
    assert size > limits.MAX_MESSAGE_BYTES
    with pytest.raises(
        MessageTooLargeError,
        match=f"is {size} bytes, over SQS's limit of 1048576 bytes.*set GALLEY_RESULTS_BUCKET",
    ):
        sender.enqueue(TASK, ["x" * (fits + 1)])
    assert support.queue_depth(attach, attach.queue_url) == 1
    # AND the usable argument size is ~0.55 x the limit (runner/wire/payloads.py says why)
    assert 0.5 < fits / limits.MAX_MESSAGE_BYTES < 0.6


def test_batches_stay_under_the_1_mib_payload_limit(
    attach: embedded.LocalResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GALLEY_RESULTS_BUCKET")  # keep the 200 KB arguments inline
    # GIVEN five messages of which two fit in 1 MiB but three do not
    calls = [sender.Call(TASK, ["y" * 200_000, i]) for i in range(5)]
    size = _body_size(200_000)
    assert 2 * size <= limits.MAX_BATCH_PAYLOAD_BYTES < 3 * size
    client, _ = counted_client()
    entries: list[int] = []
    client.meta.events.register(
        "provide-client-params.sqs.SendMessageBatch",
        lambda params, **_: entries.append(len(params["Entries"])),
    )
    # WHEN they are enqueued together
    results = sender.enqueue_many(calls, client=client)
    # THEN they went in batches of 2, 2 and 1 (moto rejects a batch over 1 MiB) and all arrived
    assert entries == [2, 2, 1]
    assert all(result.ok for result in results)
    assert support.queue_depth(attach, attach.queue_url) == 5


class DroppingClient:
    """A real SQS client whose SendMessageBatch leaves some entries out: ``fail`` ones are
    reported in ``Failed`` as SQS does, ``forget`` ones are in neither list."""

    def __init__(self, client: Any, fail: set[str], forget: frozenset[str] = frozenset()) -> None:
        self.client, self.fail, self.forget = client, fail, forget

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        kept = [e for e in Entries if e["Id"] not in self.fail | self.forget]
        response = dict(self.client.send_message_batch(QueueUrl=QueueUrl, Entries=kept))
        response["Failed"] = list(response.get("Failed", [])) + [
            {"Id": e["Id"], "SenderFault": False, "Code": "InternalError", "Message": "try again"}
            for e in Entries
            if e["Id"] in self.fail
        ]
        return response


def test_failed_entries_are_reported_never_lost(attach: embedded.LocalResources) -> None:
    sqs, _ = support.clients(attach)
    calls = [sender.Call(TASK, [[], attach.bucket, str(i)]) for i in range(25)]
    client = DroppingClient(aws.client("sqs"), fail={"3", "17"}, forget=frozenset({"21"}))
    # WHEN SQS refuses two entries and answers nothing for a third
    with pytest.raises(EnqueueError, match="3 of 25 task calls were not sent") as caught:
        sender.enqueue_many(calls, client=client)
    results = caught.value.results
    # THEN the error carries every call's outcome, in order
    assert [i for i, r in enumerate(results) if not r.ok] == [3, 17, 21]
    assert caught.value.failed == [results[3], results[17], results[21]]
    assert results[3].error == "InternalError: try again (SQS fault)"
    assert results[21].error == "SQS returned no result"
    # AND exactly the others are on the queue
    sent = {r.task_id for r in results if r.ok}
    assert {m.id for m in receive_all(sqs, attach.queue_url, 22)} == sent
    # AND without raising, the same outcome comes back as results
    retry = [replace(calls[i], task_id=results[i].task_id) for i in (3, 17, 21)]
    again = sender.enqueue_many(
        retry, client=DroppingClient(aws.client("sqs"), fail={"1"}), raise_on_error=False
    )
    assert [(r.task_id, r.ok) for r in again] == [
        (results[3].task_id, True),
        (results[17].task_id, False),
        (results[21].task_id, True),
    ]
    assert support.queue_depth(attach, attach.queue_url) == 24


def test_fifo_queue_gets_kombus_group_and_dedup_ids(stack: embedded.LocalResources) -> None:
    sqs, _ = support.clients(stack)
    name = f"jobs-{uuid.uuid4().hex[:8]}.fifo"
    url = sqs.create_queue(QueueName=name, Attributes={"FifoQueue": "true"})["QueueUrl"]
    task_id = sender.enqueue(TASK, [1], queue_url=url, client=sqs)
    response = sqs.receive_message(QueueUrl=url, MessageSystemAttributeNames=["MessageGroupId"])
    [raw] = response["Messages"]
    assert raw["Attributes"]["MessageGroupId"] == "default"
    message = codec.decode(raw["Body"])
    assert (message.id, message.routing_key) == (task_id, name)
    with pytest.raises(CallError, match="FIFO queues take no per-message delay"):
        sender.enqueue(TASK, [1], queue_url=url, client=sqs, countdown=5)


def test_empty_batch_sends_nothing(attach: embedded.LocalResources) -> None:
    client, calls = counted_client()
    assert sender.enqueue_many([], client=client) == []
    assert calls == Counter()


# --- the producer is boto3 only ---


def _python(code: str) -> str:
    """What a fresh interpreter running ``code`` in the repository prints; it must succeed."""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _loaded_after_import(statement: str) -> list[str]:
    code = (
        f"import json, sys; {statement}; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'celery', 'kombu'})))"
    )
    return list(json.loads(_python(code)))


def test_importing_the_producer_loads_neither_celery_nor_kombu() -> None:
    assert _loaded_after_import("import runner.producer.sender") == []
    # the boto3-only Lambdas load neither, package __init__ files included (which the import
    # contract does not see: found by the review of the restructure)
    assert _loaded_after_import("import runner.lambdas.enqueue, runner.lambdas.schedule") == []
    # the public API loads the producer alone until the app is asked for
    assert _loaded_after_import("from runner import Call, GalleyError, enqueue, enqueue_many") == []
    # the check can fail: the Celery app does load both
    assert _loaded_after_import("from runner import app") == ["celery", "kombu"]


# --- typed tasks: checked against tasks/schemas.py before sending ---


def test_typed_task_with_bad_input_is_refused_and_nothing_sent(
    attach: embedded.LocalResources,
) -> None:
    with pytest.raises(InvalidTaskInput, match="key: Field required"):
        sender.enqueue("tasks.reports.summarize_csv", [attach.bucket])
    with pytest.raises(ValueError, match="bucket: String should match pattern"):
        sender.enqueue_many([sender.Call("tasks.reports.summarize_csv", ["Bad Bucket", "k"])])
    assert support.queue_depth(attach, attach.queue_url) == 0
    # a good call goes through
    sender.enqueue("tasks.reports.summarize_csv", [attach.bucket, "in/a.csv"])
    assert support.queue_depth(attach, attach.queue_url) == 1


def test_checking_a_typed_call_loads_neither_celery_nor_kombu() -> None:
    code = (
        "import json, sys; from runner.producer import sender; "
        "sender.message_request(sender.Call('tasks.reports.summarize_csv', ['b12', 'k']), "
        "'https://sqs.us-east-1.amazonaws.com/123456789012/q'); "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} "
        "& {'celery', 'kombu', 'botocore'} | {m for m in sys.modules if m.startswith('tasks')})))"
    )
    # tasks (the package) is loaded for tasks.schemas; the task modules and Celery are not
    assert json.loads(_python(code)) == ["botocore", "tasks", "tasks.schemas"]


def test_an_import_path_of_the_flat_layout_names_its_new_place() -> None:
    """runner/ was cut into tiers: old imports fail saying where the module went, and the ones
    the README documented (runner.producer's enqueue, runner's aws) still work."""
    code = (
        "import runner.producer.sender as sender\n"
        "from runner.producer import Call, enqueue\n"
        "from runner import aws\n"
        "assert enqueue is sender.enqueue and Call is sender.Call and aws.cached\n"
        "try:\n"
        "    from runner.app import app\n"
        "except ModuleNotFoundError as error:\n"
        "    print(error)\n"
    )
    moved = "runner.app moved to runner.runtime.app (or: from runner import app)"
    assert _python(code).strip() == moved
