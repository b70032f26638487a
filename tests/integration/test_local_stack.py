"""The embedded stack against a real moto server: resources, ports, shutdown."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.errors import PortInUseError
from runner.local import embedded
from tests import support


def test_provision_creates_queue_with_redrive_to_dlq_and_bucket(
    make_stack: Callable[..., embedded.LocalResources],
) -> None:
    # GIVEN / WHEN a stack is provisioned
    stack = make_stack(visibility_timeout=45, max_receive_count=4)
    sqs, s3 = support.clients(stack)
    # THEN the queue has the visibility timeout and redrives to the DLQ
    attrs = sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["All"])["Attributes"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=stack.dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    assert attrs["VisibilityTimeout"] == "45"
    assert json.loads(attrs["RedrivePolicy"]) == {
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": 4,
    }
    # AND the results bucket exists
    s3.head_bucket(Bucket=stack.bucket)
    assert stack.visibility_timeout == 45


def test_port_in_use_is_a_clear_error(moto_server: embedded.MotoServer) -> None:
    # GIVEN the session's moto server holds its port
    # WHEN a second server asks for the same port
    with pytest.raises(PortInUseError, match=f"port {moto_server.port} on 127.0.0.1"):
        embedded.MotoServer(moto_server.port).start()


def test_server_listens_on_loopback_only_and_stops(tmp_path: Path) -> None:
    # GIVEN a server of our own
    server = embedded.MotoServer(log=tmp_path / "moto.log").start()
    assert server.child is not None
    pid = server.child.pid
    try:
        assert server.url.startswith("http://127.0.0.1:")
        # THEN nothing answers on the machine's other addresses
        assert not _listens_on_all_interfaces(server.port)
    finally:
        server.stop()
    # AND after stop its process is gone
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def _listens_on_all_interfaces(port: int) -> bool:
    listening = Path("/proc/net/tcp").read_text().splitlines()[1:]
    for line in listening:
        local_address, state = line.split()[1], line.split()[3]
        address, hex_port = local_address.split(":")
        if state == "0A" and int(hex_port, 16) == port and address != "0100007F":
            return True
    return False
