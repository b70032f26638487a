"""Celery's remote control from Python on a Galley app: one clear GalleyError, nothing sent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from celery.app.control import Control as CeleryControl

from runner.core.settings import WorkerSettings
from runner.errors import GalleyError, RemoteControlError
from runner.runtime.app import create_app

SETTINGS = WorkerSettings(
    queue_url="https://sqs.eu-west-1.amazonaws.com/123456789012/galley-jobs",
    results_bucket="galley-results",
    region="eu-west-1",
)


@pytest.fixture
def app(moto_in_process: None) -> Any:
    celery = create_app(SETTINGS)
    yield celery
    celery.close()


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda app: app.control.inspect().active(), "app.control.inspect().active(): SQS has"),
        (lambda app: app.control.inspect().stats(), "`galley status`"),
        (lambda app: app.control.inspect().query_task("x"), "`galley result ID`"),
        (lambda app: app.control.ping(), "app.control.broadcast('ping'): SQS has no broadcast"),
        (lambda app: app.control.shutdown(), "SIGTERM"),
        (lambda app: app.control.revoke_by_stamped_headers({"a": "b"}), "by task id only"),
        (lambda app: app.control.inspect().revoked(), "`galley revoke ID...`"),
        (lambda app: app.events.Receiver(None), "Galley workers send no events"),
    ],
)
def test_remote_control_raises_one_clear_galley_error(
    app: Any, call: Callable[[Any], Any], expected: str
) -> None:
    with pytest.raises(RemoteControlError) as raised:
        call(app)
    assert isinstance(raised.value, GalleyError)
    assert expected in str(raised.value)
    assert "\n" not in str(raised.value)
    assert "pidbox" not in str(raised.value)


def test_what_the_worker_and_beat_use_is_celerys(app: Any) -> None:
    # the worker's --purge and every worker's disabled events dispatcher, beat's mailbox
    assert type(app.control).purge is CeleryControl.purge
    assert app.control.mailbox is not None
    dispatcher = app.events.Dispatcher(enabled=False)
    assert dispatcher.enabled is False
    assert app.events.State() is not None  # the worker's gossip builds one, unused on SQS
