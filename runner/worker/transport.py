"""kombu's SQS transport, with restored messages released at once.

When a worker gives back messages it received but did not finish (warm shutdown, lost
connection), kombu's SQS channel makes each visible again only after ``wait_time_seconds``
(20 s with long polling). Galley sets their visibility to 0: another worker can take them now.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.SQS import Channel as SQSChannel
from kombu.transport.SQS import Transport as SQSTransport

#: broker_url scheme of this transport (``galley-sqs://``).
SCHEME = "galley-sqs"


class Channel(SQSChannel):
    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        if not message.get("redelivered"):
            super()._put(queue, message, **kwargs)
            return
        self.sqs(queue=self.canonical_queue_name(queue)).change_message_visibility(
            QueueUrl=self._new_queue(queue),
            ReceiptHandle=message["properties"]["delivery_tag"],
            VisibilityTimeout=0,
        )


class Transport(SQSTransport):
    Channel = Channel


def register() -> None:
    TRANSPORT_ALIASES[SCHEME] = f"{__name__}:Transport"
