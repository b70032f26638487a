"""runner.core.quickput: the second upload to a bucket is botocore's request, sent without its
pipeline; anything unusual goes through botocore."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.core import aws, quickput

NOW = datetime.datetime(2026, 12, 1, 2, 30, 0)
BODY = b'{"status": "SUCCESS", "result": 1}'


class _Raw:
    def stream(self, *_: Any, **__: Any) -> list[bytes]:
        return [b""]


def _answer(url: str, status: int = 200) -> AWSResponse:
    return AWSResponse(url, status, {}, _Raw())


class _Network:
    """Answers every request at the client's ``before-send`` (where botocore, and the quick path
    after it, let a handler answer), recording which path sent it: botocore's requests carry
    an ``amz-sdk-invocation-id``, the quick path's do not."""

    def __init__(self, client: Any, status: int = 200, error: Exception | None = None) -> None:
        self.botocore: list[Any] = []
        self.quick: list[Any] = []
        self.status = status
        self.error = error
        client.meta.events.register("before-send.s3", self._answer)

    def _answer(self, request: Any, **_: Any) -> AWSResponse:
        if "amz-sdk-invocation-id" in request.headers:
            self.botocore.append(request)
            return _answer(request.url)
        self.quick.append(request)
        if self.error is not None:
            raise self.error
        return _answer(request.url, self.status)

    def keys(self) -> list[str]:
        return [r.url.rsplit("/", 1)[1] for r in self.botocore]


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _client(endpoint: str | None, region: str = "us-west-2", **config: Any) -> Any:
    return aws.client(
        "s3", region=region, endpoint_url=endpoint, config=Config(**config) if config else None
    )


@pytest.fixture(autouse=True)
def _frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: NOW)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")


def _quick_and_reference(
    endpoint: str | None,
    key: str,
    bucket: str = "results-bucket",
    region: str = "us-west-2",
    **config: Any,
) -> tuple[Any, Any]:
    """The quick path's second upload of ``key``, and botocore's own request for it (no
    checksum: botocore adds a CRC32 only because it supports one; S3 does not ask for it)."""
    client = _client(endpoint, region, **config)
    network = _Network(client)
    quick = quickput.QuickPut(client)
    quick.put(bucket, "first", BODY)
    assert network.keys() == ["first"]  # the first went through botocore
    quick.put(bucket, key, BODY)
    assert network.keys() == ["first"] and len(network.quick) == 1
    reference = _client(endpoint, region, request_checksum_calculation="when_required", **config)
    expected = _Network(reference)
    reference.put_object(Bucket=bucket, Key=key, Body=BODY)
    return network.quick[0], expected.botocore[0]


#: Clients and buckets whose uploads botocore signs with plain SigV4 for ``s3``, each at its
#: own URL: (endpoint, bucket, region, Config arguments).
SIGNED_ALIKE = {
    "default": (None, "results-bucket", "us-west-2", {}),
    "local endpoint": ("http://127.0.0.1:9", "results-bucket", "us-west-2", {}),
    "us-east-1": (None, "results-bucket", "us-east-1", {}),
    "us-east-1 regional": (
        None, "results-bucket", "us-east-1", {"s3": {"us_east_1_regional_endpoint": "regional"}}
    ),
    "eu-central-1": (None, "results-bucket", "eu-central-1", {}),
    "path style": (None, "results-bucket", "eu-central-1", {"s3": {"addressing_style": "path"}}),
    "virtual style": (
        None, "results-bucket", "eu-central-1", {"s3": {"addressing_style": "virtual"}}
    ),
    "dotted bucket": (None, "results.bucket", "eu-central-1", {}),
    "fips": (None, "results-bucket", "us-east-1", {"use_fips_endpoint": True}),
    "dualstack": (None, "results-bucket", "eu-central-1", {"use_dualstack_endpoint": True}),
    "accelerate": (
        None, "results-bucket", "eu-central-1", {"s3": {"use_accelerate_endpoint": True}}
    ),
    "endpoint with a path": ("http://127.0.0.1:9/s3/prefix/", "results-bucket", "us-west-2", {}),
    "https endpoint": ("https://s3.example.test", "results-bucket", "us-west-2", {}),
    "access point": (None, "arn:aws:s3:us-west-2:123456789012:accesspoint/jobs", "us-west-2", {}),
    "access point elsewhere": (
        None,
        "arn:aws:s3:eu-central-1:123456789012:accesspoint/jobs",
        "us-west-2",
        {"s3": {"use_arn_region": True}},
    ),
    "signature_version v4": (None, "results-bucket", "us-west-2", {"signature_version": "v4"}),
}  # fmt: skip


@pytest.mark.parametrize("case", SIGNED_ALIKE.values(), ids=SIGNED_ALIKE.keys())
def test_the_second_upload_is_the_request_botocore_signs(case: tuple[Any, ...]) -> None:
    endpoint, bucket, region, config = case
    sent, expected = _quick_and_reference(
        endpoint, "celery-task-meta-3c6e0b8a", bucket, region, **config
    )
    assert sent.method == "PUT"
    assert sent.url == expected.url
    assert sent.body == BODY
    assert expected.body.getvalue() == BODY  # botocore sends a file-like body
    for header in ("Authorization", "X-Amz-Date", "X-Amz-Content-SHA256", "User-Agent"):
        assert _text(sent.headers[header]) == _text(expected.headers[header]), header
    # and no other header: botocore's own are its invocation id and attempt count
    assert {h.lower() for h in sent.headers} == {h.lower() for h in expected.headers} - {
        "amz-sdk-invocation-id",
        "amz-sdk-request",
    }


def test_temporary_credentials_are_signed_with_their_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", "FQoGZXIvYXdzEXAMPLETOKEN")
    sent, expected = _quick_and_reference(None, "celery-task-meta-3c6e0b8a")
    assert _text(sent.headers["X-Amz-Security-Token"]) == "FQoGZXIvYXdzEXAMPLETOKEN"
    assert _text(sent.headers["Authorization"]) == _text(expected.headers["Authorization"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=60))
def test_any_key_is_quoted_and_signed_as_botocore_does(key: str) -> None:
    sent, expected = _quick_and_reference(None, key)
    assert sent.url == expected.url
    assert _text(sent.headers["Authorization"]) == _text(expected.headers["Authorization"])


def _learned_quick(status: int = 200, error: Exception | None = None) -> tuple[Any, _Network]:
    client = _client(None)
    network = _Network(client, status, error)
    quick = quickput.QuickPut(client)
    quick.put("results-bucket", "first", BODY)
    return quick, network


@pytest.mark.parametrize("status", [400, 403, 404])
def test_a_4xx_answer_goes_through_botocore_from_then_on(status: int) -> None:
    quick, network = _learned_quick(status=status)
    quick.put("results-bucket", "k1", BODY)
    assert network.keys() == ["first", "k1"]
    quick.put("results-bucket", "k2", BODY)
    assert len(network.quick) == 1  # not tried again
    assert network.keys() == ["first", "k1", "k2"]


@pytest.mark.parametrize("status", [500, 503, 429, 408])
def test_a_passing_fault_is_sent_again_through_botocore_and_the_next_is_quick(status: int) -> None:
    quick, network = _learned_quick(status=status)
    quick.put("results-bucket", "k1", BODY)
    assert network.keys() == ["first", "k1"]
    quick.put("results-bucket", "k2", BODY)
    assert len(network.quick) == 2


def test_a_failed_send_is_sent_again_through_botocore_and_the_next_is_quick() -> None:
    quick, network = _learned_quick(error=ConnectionResetError("reset"))
    quick.put("results-bucket", "k1", BODY)
    assert network.keys() == ["first", "k1"]
    quick.put("results-bucket", "k2", BODY)
    assert len(network.quick) == 2


def test_a_large_body_goes_through_botocore() -> None:
    quick, network = _learned_quick()
    quick.put("results-bucket", "big", b"x" * quickput.MAX_QUICK_BYTES)
    assert network.keys() == ["first", "big"] and not network.quick


def test_each_bucket_learns_from_its_own_first_upload() -> None:
    quick, network = _learned_quick()
    quick.put("other-bucket", "k", BODY)
    assert network.keys() == ["first", "k"] and not network.quick
    quick.put("other-bucket", "k2", BODY)
    assert network.quick[0].url == "https://other-bucket.s3.us-west-2.amazonaws.com/k2"


def _learned_on_its_own_http() -> tuple[Any, quickput.QuickPut, list[Any]]:
    """A client whose bucket is learned, no before-send handler answering any more, and what
    the quick path then sends on the client's own HTTP session (each answered 200)."""
    client = _client("http://127.0.0.1:9")
    network = _Network(client)
    quick = quickput.QuickPut(client)
    quick.put("results-bucket", "first", BODY)
    client.meta.events.unregister("before-send.s3", network._answer)
    sent: list[Any] = []
    quick._http = type("Http", (), {"send": lambda self, r: sent.append(r) or _answer(r.url)})()
    return client, quick, sent


def test_without_a_before_send_answer_the_clients_own_http_session_sends() -> None:
    _, quick, sent = _learned_on_its_own_http()
    quick.put("results-bucket", "k", BODY)
    assert [r.url for r in sent] == ["http://127.0.0.1:9/results-bucket/k"]


def test_a_bucket_in_another_region_is_learned_from_botocores_redirected_upload() -> None:
    # GIVEN a client in us-west-2 and a bucket in eu-central-1: S3 answers 301 PermanentRedirect
    # to an upload not signed for the bucket's region, and botocore sends it again there
    client = _client(None)
    sent: list[tuple[str, int]] = []

    def s3(request: Any, **_: Any) -> AWSResponse:
        home = "/eu-central-1/s3/" in _text(request.headers["Authorization"])
        path = "botocore" if "amz-sdk-invocation-id" in request.headers else "quick"
        sent.append((path, 200 if home else 301))
        headers = {} if home else {"x-amz-bucket-region": "eu-central-1"}
        return AWSResponse(request.url, 200 if home else 301, headers, _Raw())

    client.meta.events.register("before-send.s3", s3)
    quick = quickput.QuickPut(client)
    # WHEN three results are written
    for key in ("first", "k1", "k2"):
        quick.put("results-bucket", key, BODY)
    # THEN the next ones are sent as botocore's redirected upload was: to the bucket's region
    assert sent == [("botocore", 301), ("botocore", 200), ("quick", 200), ("quick", 200)]


class _FalseAnswer(AWSResponse):
    """A response that is false, as ``requests``' is for a 4xx or 5xx."""

    def __bool__(self) -> bool:
        return False


def test_a_before_send_answer_is_used_whatever_its_truth() -> None:
    # GIVEN a learned bucket and a before-send handler answering every upload, as botocore
    # lets one (it takes any answer that is not None)
    client, quick, sent = _learned_on_its_own_http()
    client.meta.events.register(
        "before-send.s3", lambda request, **_: _FalseAnswer(request.url, 200, {}, _Raw())
    )
    # WHEN the next result is written
    quick.put("results-bucket", "k", BODY)
    # THEN the handler's answer is the upload's: nothing goes out on the client's HTTP session
    assert sent == []


class _Signing:
    def __init__(self, url: str, signing: dict[str, Any]) -> None:
        self.url = url
        self.context = {"signing": signing}
        self.headers = {"User-Agent": "galley"}


@pytest.mark.parametrize(
    ("signature_version", "signing", "url"),
    [
        ("v4-s3express", {"region": "us-west-2"}, "https://b.s3.amazonaws.com/k"),
        ("s3v4", {"region": "us-west-2", "signing_name": "s3-outposts"}, "https://b/k"),
        ("s3v4", {"signingRegionSet": ["*"], "region": "*"}, "https://b/k"),
        ("s3v4", {"region": "us-west-2", "request_credentials": object()}, "https://b/k"),
        ("s3v4", {"region": "us-west-2"}, "https://b/k?x-id=PutObject"),
        ("s3v4", {"region": "us-west-2"}, "https://b/other-key"),
    ],
)
def test_an_unusual_upload_is_never_sent_quick(
    signature_version: str, signing: dict[str, Any], url: str
) -> None:
    assert quickput._route(_Signing(url, signing), "k", signature_version, "us-west-2") is None
