"""A job whose links Celery could not send after it ran is refused before it runs."""

from __future__ import annotations

from typing import Any

import pytest
from celery import chain, chord, group

from runner.core.settings import WorkerSettings
from runner.runtime.app import create_app
from runner.settlement import links

APP = create_app(
    WorkerSettings(
        queue_url="https://sqs.eu-west-1.amazonaws.com/123456789012/galley-jobs",
        results_bucket="galley-results",
        region="eu-west-1",
    )
)


def sig(name: str = "tasks.next", **options: Any) -> dict[str, Any]:
    return dict(APP.signature(name, args=(1,), **options))


def embed(**links_: Any) -> dict[str, Any]:
    return {"callbacks": None, "errbacks": None, "chain": None, "chord": None, **links_}


@pytest.mark.parametrize(
    ("links_", "reason"),
    [
        # the adversarial review's cases: each failed only after the body had run
        ({"callbacks": [sig(queue="nope")]}, "routed to a queue this app does not have"),
        ({"chain": [sig(queue="galley-long-jobs")]}, "routed to a queue this app does not have"),
        ({"callbacks": [{**sig(), "subtask_type": "chord", "kwargs": {}}]}, "a chord without"),
        ({"callbacks": [{**sig(), "subtask_type": "group", "kwargs": {}}]}, "a group without"),
        ({"callbacks": [sig(countdown="soon")]}, "option 'countdown' is not a number"),
        ({"errbacks": ["tasks.next"]}, "a str is not a task signature"),
        ({"chain": [{"subtask_type": None, "kwargs": {}, "options": {}}]}, "without a task name"),
    ],
)
def test_links_that_cannot_be_sent_are_named(links_: dict[str, Any], reason: str) -> None:
    found = links.problem(APP, {}, embed(**links_))
    assert found is not None and reason in found


def test_links_celery_builds_are_accepted() -> None:
    # GIVEN what Celery itself puts in a message: a link, a chain's rest, a chord, a group link
    linked = sig()
    rest = [sig("tasks.third"), sig("tasks.second")]
    body = dict(
        chord([APP.signature("tasks.a"), APP.signature("tasks.b")], APP.signature("tasks.c"))
    )
    grouped = dict(group(APP.signature("tasks.a"), APP.signature("tasks.b")))
    chained = dict(chain(APP.signature("tasks.a"), APP.signature("tasks.b")))
    # THEN none is refused
    assert links.problem(APP, {}, embed(callbacks=[linked], chain=rest)) is None
    assert links.problem(APP, {}, embed(callbacks=[body, grouped, chained])) is None
    assert links.problem(APP, {}, embed(chord=dict(APP.signature("tasks.c")))) is None
    assert links.problem(APP, {}, None) is None


def test_a_link_to_a_task_declared_on_a_queue_the_app_lacks_is_refused() -> None:
    # GIVEN a task declared on the long queue (@app.task(queue="long")), and an app (a Lambda
    # consumer) that does not know that queue
    @APP.task(name="tests.links.declared_long", queue="long", shared=False)
    def declared_long() -> None: ...

    # WHEN a job's chain continues with it, THEN the job is refused before its body runs
    # (Task.apply_async adds the declared queue when the link is sent)
    found = links.problem(APP, {}, embed(chain=[sig("tests.links.declared_long")]))
    assert found is not None and "routed to a queue this app does not have" in found


def test_a_link_through_a_named_exchange_is_refused() -> None:
    # GIVEN a link routed through a named exchange: bound to no queue on SQS, its message would
    # be dropped by kombu without a word
    found = links.problem(APP, {}, embed(callbacks=[sig(exchange="long", routing_key="long")]))
    assert found is not None and "exchange 'long'" in found
