"""The moto server Galley starts (runner.local.motoserver), as a process."""

from __future__ import annotations

from pathlib import Path

from runner.local import embedded
from tests import support


def test_requests_are_not_logged_one_line_each(tmp_path: Path) -> None:
    """werkzeug's line per request cost moto a tenth of its time under load (and buried the
    lines that matter in moto.log)."""
    log = tmp_path / "moto.log"
    with embedded.MotoServer(log=log) as server:
        stack = support.provision(server.url, support.unique_config())
        sqs, _ = support.clients(stack)
        sqs.send_message(QueueUrl=stack.queue_url, MessageBody="x")
    text = log.read_text()
    assert "moto serving on" in text  # the log is written, and
    assert "HTTP/1.1" not in text  # carries no request lines
