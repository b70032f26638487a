"""Small S3 uploads that skip botocore's request pipeline after the first: a kept job's result.

A PutObject through botocore costs its caller about 2 ms of CPU, and half of it goes to work that
is the same for every upload to one bucket: checking and serializing the parameters, resolving
the endpoint, and a few dozen event handlers. A job's result is always that same request but for
its key and body, written once per kept job by the process that ran it. So:

- the first upload to a bucket goes through botocore's ``put_object``; a ``before-sign`` handler
  notes the URL it built and how botocore signs it, as last signed (botocore signs again after
  a redirect to the bucket's region), once the upload succeeded;
- the next ones are that request with another key and body, signed by botocore's own SigV4 signer
  for S3 (``S3SigV4Auth``, with the client's credentials, refreshed as botocore refreshes them)
  and sent on the client's own HTTP session (its TLS settings, proxies, timeouts and pool), after
  the client's ``before-send`` handlers, as botocore sends (moto's in-process mock answers there).

Anything else goes to ``put_object`` as before, and S3's answer is then botocore's (its retries,
its errors):

- a body of :data:`MAX_QUICK_BYTES` or more;
- a bucket whose first upload botocore did not sign with plain SigV4 for ``s3`` (S3 Express
  directory buckets, Outposts, multi-region access points), or whose URL has a query;
- an upload that raised (a connection error), or that S3 answered with a 5xx, 408 or 429: it is
  sent again through botocore, which retries it;
- any other answer but 200 (a 4xx): sent again through botocore, and the bucket's quick path is
  given up for good (S3 wants something botocore sends, e.g. a checksum on an object-locked
  bucket, or a signature botocore would make differently).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.hooks import first_non_none_response

log = logging.getLogger(__name__)

#: Bodies at least this long go through botocore (:mod:`runner.core.aws` sends them after
#: S3's ``100 Continue``).
MAX_QUICK_BYTES = 1024 * 1024
_SIGNERS = ("s3v4", "v4")
#: Answers that say "not now" (throttling, a timeout): that upload goes through botocore, which
#: retries it, and the next is sent quick again; as does any 5xx.
PASSING_STATUSES = frozenset({408, 429})


class QuickPut:
    """``put(bucket, key, body)`` for one boto3 S3 ``client``."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._learning = threading.local()  # the first upload to a bucket botocore is sending
        #: bucket -> how to send its next uploads; None: they go through botocore
        self._routes: dict[str, _Route | None] = {}
        signer = getattr(client, "_request_signer", None)
        endpoint = getattr(client, "_endpoint", None)
        self._credentials: Any = getattr(signer, "_credentials", None)
        self._http: Any = getattr(endpoint, "http_session", None)
        if self._credentials is not None and self._http is not None:
            client.meta.events.register(
                "before-sign.s3.PutObject", self._learn, unique_id=f"galley-quickput-{id(self)}"
            )

    def put(self, bucket: str, key: str, body: bytes) -> None:
        route = self._routes.get(bucket) if len(body) < MAX_QUICK_BYTES else None
        if route is not None:
            try:
                status = self._send(route, key, body)
            except Exception as error:  # sent again through botocore, which retries
                log.debug("quick upload of %s failed (%s); through botocore", key, error)
            else:
                if status == 200:
                    return
                if status not in PASSING_STATUSES and status < 500:
                    log.info(
                        "S3 answered %s to a quick upload to %s; its uploads go through botocore",
                        status,
                        bucket,
                    )
                    with self._lock:
                        self._routes[bucket] = None
        learning = _Learning(key) if bucket not in self._routes else None
        self._learning.upload = learning
        try:
            self._client.put_object(Bucket=bucket, Key=key, Body=body)
        finally:
            self._learning.upload = None
        if learning is not None and learning.signed:
            with self._lock:
                self._routes.setdefault(bucket, learning.route)

    def _send(self, route: _Route, key: str, body: bytes) -> int:
        request = AWSRequest(
            method="PUT",
            url=route.prefix + quote(key, safe="/~"),
            data=body,
            headers={"User-Agent": route.user_agent},
        )
        credentials = self._credentials.get_frozen_credentials()
        S3SigV4Auth(credentials, "s3", route.region).add_auth(request)
        prepared = request.prepare()
        # as botocore does: a before-send handler may answer instead (moto's mock, a stub)
        answers = self._client.meta.events.emit("before-send.s3.PutObject", request=prepared)
        response = first_non_none_response(answers)
        if response is None:
            response = self._http.send(prepared)
        _ = response.content  # read to the end: the connection goes back to the pool
        return int(response.status_code)

    def _learn(self, request: Any, signature_version: Any = None, **kwargs: Any) -> None:
        """botocore's first upload to a bucket, about to be signed: how to send the next ones.
        It is signed again when botocore retries it or follows a redirect to the bucket's
        region, so the last signing is kept, and only once botocore's upload succeeded."""
        learning = getattr(self._learning, "upload", None)
        if learning is not None:
            learning.route = _route(
                request, learning.key, signature_version, kwargs.get("region_name")
            )
            learning.signed = True


@dataclass
class _Learning:
    key: str
    signed: bool = False
    route: _Route | None = None


@dataclass(frozen=True)
class _Route:
    prefix: str  # the upload's URL up to its key
    region: str  # the region botocore signs for
    user_agent: str


def _route(
    request: Any, key: str, signature_version: Any, region_name: str | None
) -> _Route | None:
    """How to send the next uploads like this PutObject botocore is about to sign; None when it
    is not a plain SigV4 upload to ``s3`` at a URL that ends in the key."""
    signing = request.context.get("signing") or {}
    region = signing.get("region") or region_name
    url = str(request.url)
    quoted = quote(key, safe="/~")
    if (
        signature_version not in _SIGNERS
        or signing.get("signing_name", "s3") != "s3"
        or signing.get("request_credentials")
        or signing.get("identity_cache") is not None
        or "signingRegionSet" in signing
        or not region
        or "?" in url
        or not url.endswith("/" + quoted)
    ):
        return None
    agent = request.headers.get("User-Agent") or ""
    return _Route(
        url[: len(url) - len(quoted)],
        str(region),
        agent.decode() if isinstance(agent, bytes) else str(agent),
    )
