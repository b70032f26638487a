"""runner.core.quickput between a real moto server and FaultProxy (tests/faults.py): a reset, a
black hole, a 5xx or throttling on a quick upload falls back to botocore, which retries it; no
result is lost, no error reaches the caller, and later results are sent quick again."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.config import Config

from runner.core import aws, quickput
from runner.local import embedded
from tests.faults import FaultProxy

pytestmark = pytest.mark.integration

SEED = 20261201
#: Writers at once, and results each writes: one client and one QuickPut shared by all.
THREADS, RESULTS = 4, 6


@pytest.fixture
def proxy(moto_server: embedded.MotoServer) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server.url, seed=SEED) as running:
        yield running


def _s3(endpoint: str) -> Any:
    config = Config(
        retries={"mode": "standard", "max_attempts": 10}, connect_timeout=2, read_timeout=1
    )
    return aws.client(
        "s3", endpoint_url=endpoint, session=embedded.local_session("us-east-1"), config=config
    )


@pytest.mark.parametrize(
    ("kind", "options"),
    [("reset", {}), ("blackhole", {}), ("http_error", {"status": 500}), ("throttle", {})],
)
def test_faults_on_quick_uploads_lose_no_result(
    kind: str,
    options: dict[str, Any],
    proxy: FaultProxy,
    moto_server: embedded.MotoServer,
    stack: embedded.LocalResources,
) -> None:
    # GIVEN a bucket whose first result went through botocore, behind the proxy
    client = _s3(proxy.url)
    signed: list[str] = []
    client.meta.events.register(
        "before-sign.s3.PutObject", lambda request, **_: signed.append(request.url)
    )
    quick = quickput.QuickPut(client)
    quick.put(stack.bucket, "first", b"0")
    # WHEN a fifth of the S3 PUTs meet the fault while several threads write results
    proxy.inject(kind, service="s3", action="PUT", p=0.2, **options)
    errors: list[BaseException] = []

    def write(thread: int) -> None:
        for n in range(RESULTS):
            try:
                quick.put(stack.bucket, f"r-{thread}-{n}", f"v-{thread}-{n}".encode())
            except Exception as error:  # noqa: BLE001 -- asserted empty below
                errors.append(error)

    writers = [threading.Thread(target=write, args=(t,)) for t in range(THREADS)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    proxy.heal()
    # THEN every result is stored, no error reached a writer, and the faults did happen
    assert not any(writer.is_alive() for writer in writers)
    assert errors == []
    assert proxy.injected()[kind] > 0
    direct = _s3(moto_server.url)
    bodies = {
        (t, n): direct.get_object(Bucket=stack.bucket, Key=f"r-{t}-{n}")["Body"].read()
        for t in range(THREADS)
        for n in range(RESULTS)
    }
    assert bodies == {(t, n): f"v-{t}-{n}".encode() for t in range(THREADS) for n in range(RESULTS)}
    # AND the bucket's results are still sent quick: botocore signed only the failed ones again
    assert quick._routes[stack.bucket] is not None
    assert len(signed) < 1 + THREADS * RESULTS
