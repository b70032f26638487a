"""moto's server, made to keep the one promise of S3 that Galley's correctness rests on.

S3 applies a conditional write (``If-Match`` / ``If-None-Match``) atomically: of two writers
holding the same ETag, exactly one succeeds. moto 5 checks the condition and then writes, without
a lock, and its threaded server runs requests side by side, so under contention both writers
win, and a reader can meet an object in the middle of being replaced (``ValueError: I/O
operation on closed file``). Idempotency leases (runtime/idempotency) rest on that promise; on
the local stack it must hold as it does on AWS.

:func:`serialize_s3_objects` runs moto's object requests (GET, PUT, HEAD, DELETE, copy of one
key) one at a time. Bucket-level requests (listings, batch deletes) stay concurrent. Call it in
the process that serves moto: ``python -m runner.local.motoserver`` (what ``galley local up``
and the tests start) does, then runs ``moto.server``'s command line unchanged.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from moto.s3.responses import S3Response

_LOCK = threading.RLock()


def serialize_s3_objects() -> None:
    """Run moto's S3 object requests one at a time, in this process. Idempotent."""
    current = S3Response.key_response
    if getattr(current, "galley_serialized", False):
        return

    @functools.wraps(current)
    def key_response(self: S3Response, *args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return current(self, *args, **kwargs)

    key_response.galley_serialized = True  # type: ignore[attr-defined]
    S3Response.key_response = key_response  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    from moto import server

    serialize_s3_objects()
    server.main(argv)


if __name__ == "__main__":
    main()
