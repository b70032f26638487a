"""The worker registry's reading side: live entries listed; stale, stopped and garbage ones not."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.ops import registry

BUCKET = "registry-unit"


def entry(**overrides: Any) -> dict[str, Any]:
    now = time.time()
    data: dict[str, Any] = {
        "host": "ip-10-0-1-5",
        "pid": 42,
        "version": "0.1.0",
        "started": now - 60,
        "at": now,
        "interval": 15,
        "concurrency": 4,
        "queue": "jobs",
        "state": "running",
        "running": [{"id": "j-1", "task": "tasks.a", "started": now - 5}],
        "waiting": 1,
        "totals": {"succeeded": 3, "failed": 1, "retried": 0},
        "tasks": {"tasks.a": {"succeeded": 3, "failed": 1, "retried": 0}},
        "results_prefix": "results/",
    }
    return {**data, **overrides}


@pytest.fixture
def s3(moto_in_process: None) -> Any:
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


def put(s3: Any, name: str, body: bytes | dict[str, Any]) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    s3.put_object(Bucket=BUCKET, Key=f"{registry.PREFIX}{name}", Body=raw)


def test_live_entries_are_listed_stale_and_stopped_ones_read_as_gone(s3: Any) -> None:
    # GIVEN a live entry, one 3 intervals late, and one marked stopped
    put(s3, "live.json", entry())
    put(s3, "late.json", entry(pid=43, at=time.time() - 46))
    put(s3, "stopped.json", entry(pid=44, state="stopped", running=[]))
    # WHEN the registry is read
    listing = registry.read(s3, BUCKET)
    # THEN only the live worker is listed, with its running job
    assert [w.pid for w in listing.workers] == [42]
    assert listing.workers[0].running == [
        registry.Running("j-1", "tasks.a", pytest.approx(time.time() - 5, abs=2))
    ]
    assert (listing.gone, listing.notes, listing.problem) == (2, [], None)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"\xff\xfe not json", "not JSON"),
        (b"[1, 2]", "not a JSON object but list"),
        (entry(pid="42"), "pid: expected a count"),
        (entry(state="dancing"), "state: expected one of running, stopping, stopped"),
        (entry(running=[{"id": 1}]), "id: expected text"),
        (entry(totals=None), "totals: expected an object"),
        (entry(interval=0), "interval: expected 0 < seconds"),
        (entry(at=float("nan")), "at: expected a number"),
        # json.loads takes Infinity: `galley status` and `galley top` then crashed with an
        # OverflowError formatting the worker's uptime or its job's age
        (entry(started=float("-inf")), "started: expected a number"),
        (entry(running=[{"id": "j", "task": "t", "started": float("-inf")}]), "started: expected"),
        (entry(at=float("inf")), "at: expected a number"),
        (entry(started=10**400), "started: expected a number"),  # float() overflows
    ],
)
def test_a_garbage_entry_is_skipped_with_a_note(s3: Any, body: Any, why: str) -> None:
    # GIVEN a good entry and a garbage one
    put(s3, "good.json", entry())
    put(s3, "bad.json", body)
    # WHEN the registry is read
    listing = registry.read(s3, BUCKET)
    # THEN the good one is listed and the garbage named in a note, with what is wrong
    assert [w.pid for w in listing.workers] == [42]
    (note,) = listing.notes
    assert note.startswith(f"{registry.PREFIX}bad.json: skipped, not a worker entry: {why}"), note


def test_a_missing_bucket_is_a_problem_not_an_exception(s3: Any) -> None:
    listing = registry.read(s3, "no-such-bucket")
    assert listing.workers == []
    assert listing.problem is not None and "NoSuchBucket" in listing.problem
    assert registry.read(s3, None).problem is not None


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.dictionaries(st.sampled_from(sorted(entry())), JSON, max_size=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=64) | JSON.map(lambda v: json.dumps(v).encode()), fields=FIELDS)
def test_parse_takes_any_bytes_and_says_what_is_wrong(raw: bytes, fields: dict[str, Any]) -> None:
    # GIVEN any bytes, and a good entry with any fields replaced by any JSON values
    for body in (raw, json.dumps(entry(**fields)).encode()):
        # WHEN parsed, THEN an entry or a ValueError with a reason: nothing else
        try:
            parsed = registry.parse(body)
        except ValueError as error:
            assert str(error)
        else:
            assert isinstance(parsed, registry.Entry)
            assert parsed.state in registry.STATES and parsed.pid >= 0


def test_an_object_far_larger_than_an_entry_is_not_downloaded(s3: Any) -> None:
    # GIVEN a good entry and a 3 MiB object under workers/ (an entry is a few KiB)
    put(s3, "good.json", entry())
    put(s3, "huge.json", b" " * (3 << 20))
    # WHEN the registry is read (galley top does, every 2 s)
    listing = registry.read(s3, BUCKET)
    # THEN the huge one is named in a note without being read
    assert [w.pid for w in listing.workers] == [42]
    (note,) = listing.notes
    assert note == f"{registry.PREFIX}huge.json: skipped, 3145728 bytes is not a worker entry"
