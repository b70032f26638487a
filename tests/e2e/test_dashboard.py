"""`galley dashboard` in a real browser: Debian's headless Chromium, driven by Playwright, on a
running stack (a real prefork worker on the moto server), the dashboard its own process."""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.core import settings
from runner.core.deadletter import dead_letter
from runner.local import embedded
from runner.local.process import Child, wait_for
from runner.wire import codec
from tests import support

pytestmark = pytest.mark.e2e

#: The system's Chromium (`apt-get install chromium`; .ci/run installs it): no browser download.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FAST = {
    "GALLEY_TASK_MODULES": "tests.e2e.registry_tasks,tests.e2e.reliability_tasks",
    settings.REGISTRY_INTERVAL: "0.5",
}
URL = re.compile(r"(http://127\.0\.0\.1:\d+/)")
PROGRESS = re.compile(r"^(\d+)/40 \(\d+%\)$")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A fresh headless Chromium (its own profile under tmp_path); fails if it cannot start."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1440, "height": 1100},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def dashboard_url(stack: embedded.LocalResources) -> Iterator[str]:
    """`galley dashboard --port 0` attached to ``stack``, as a person runs it; stopped by pid."""
    proc = subprocess.Popen(
        support.galley("dashboard", "--port", "0", "--interval", "0.5"),
        env=support.attached_env(stack),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    try:
        wait_for(lambda: any(URL.search(line) for line in lines), timeout=30, what="its URL")
        yield next(m.group(1) for line in lines if (m := URL.search(line)))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()
        print("".join(lines))
    assert code == 0 and lines[-1].strip() == "dashboard stopped", lines
    assert not any("Traceback" in line for line in lines)


def test_the_dashboard_shows_progress_finds_jobs_and_redrives_a_dead_letter(
    stack: embedded.LocalResources,
    worker: Callable[..., Child],
    app_for: Callable[[embedded.LocalResources], Any],
    browser: Any,
    dashboard_url: str,
    tmp_path: Path,
) -> None:
    # GIVEN a worker, and a person who opened the dashboard
    worker(stack, **FAST)
    app = app_for(stack)
    page = browser.new_page()
    page.goto(dashboard_url)
    page.locator("#workers tbody tr").wait_for(timeout=20_000)
    # AND a job that succeeded, one that failed (dead-lettered with its reason)
    finished = app.send_task("registry.steps", args=[2, 0.05])
    failed = app.send_task("reliability.fail", args=["the CSV has no 'amount' column"])
    # AND a dead letter whose cause is gone: redriven, it will succeed
    sqs, _ = support.clients(stack)
    fixable = str(uuid.uuid4())
    queue = stack.queue_url.rsplit("/", 1)[1]
    body = codec.encode("registry.steps", [2, 0.05], queue=queue, task_id=fixable)
    reason = "task registry.steps FAILURE: ConnectionError: the upstream API was down"
    dead_letter(sqs, stack.dlq_url, body, reason=reason, source_queue=stack.queue_url)
    wait_for(lambda: finished.state == "SUCCESS", timeout=60, what="the first job to succeed")
    wait_for(lambda: support.queue_depth(stack, stack.dlq_url) == 2, timeout=60, what="2 dead")
    # AND a longer job reporting PROGRESS (40 steps of 0.3 s)
    running = app.send_task("registry.steps", args=[40, 0.3])

    # THEN the page shows the running job's bar advance
    text = page.locator(f'#running li[data-job-id="{running.id}"] .progress-text')
    seen: list[int] = []

    def advanced() -> bool:
        # all_inner_texts does not wait: inner_text would wait 30 s for a bar that went away
        for shown in filter(None, map(PROGRESS.match, text.all_inner_texts())):
            if not seen or int(shown.group(1)) != seen[-1]:
                seen.append(int(shown.group(1)))
        return len(seen) >= 3

    try:
        wait_for(advanced, timeout=40, what="the page to show the job's progress advancing")
    except BaseException:
        print(f"progress seen: {seen}; the page:\n{page.locator('main').inner_text()}")
        raise
    assert seen == sorted(seen), seen
    # AND the queues, the worker and the failed job's dead letter are there
    assert page.locator('#queues tr[data-queue="jobs"]').count() == 1
    assert page.locator("#workers tbody tr").count() == 1
    letter = page.locator(f'#dlq tr[data-letter="{failed.id}"]')
    letter.wait_for(timeout=20_000)
    assert "reliability.fail" in letter.inner_text()
    assert "the CSV has no 'amount' column" in letter.inner_text()

    # WHEN the person looks up the finished job, then the failed one, then an unknown id
    lookup(page, finished.id)
    page.locator("#job .badge", has_text="SUCCESS").wait_for(timeout=10_000)
    assert "[2, 0.05]" in page.locator("#job dl").inner_text()
    lookup(page, failed.id)
    page.locator("#job .badge", has_text="FAILURE").wait_for(timeout=10_000)
    assert "ValueError: the CSV has no 'amount' column" in page.locator("#job .error").inner_text()
    assert "Traceback" in page.locator("#job pre.traceback").text_content()  # folded away
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    lookup(page, "no-job-has-this-id")
    page.locator("#job .notfound").wait_for(timeout=10_000)
    assert page.locator("#job .notfound").inner_text().startswith("no such job")

    # WHEN the person redrives the fixable dead letter, and confirms
    page.locator(f'#dlq tr[data-letter="{fixable}"] button', has_text="Redrive").click()
    page.locator("#confirm").wait_for(state="visible")
    page.locator("#confirm-ok").click()
    # THEN the page says it moved, the letter leaves the list, and the job succeeds
    page.locator("#toast", has_text="1 moved, 0 not moved from the jobs DLQ").wait_for()
    page.locator(f'#dlq tr[data-letter="{fixable}"]').wait_for(state="detached", timeout=20_000)
    redriven = app.AsyncResult(fixable)
    wait_for(lambda: redriven.state == "SUCCESS", timeout=60, what="the redriven job to succeed")
    lookup(page, fixable)
    try:
        page.locator("#job .badge", has_text="SUCCESS").wait_for(timeout=20_000)
    except BaseException:
        print(f"the page:\n{page.locator('body').inner_text()}")
        raise
    assert page.locator("#error").is_hidden()
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000


def test_the_page_asks_for_one_lookup_at_a_time(
    stack: embedded.LocalResources, browser: Any, dashboard_url: str
) -> None:
    # GIVEN a lookup the server takes long to answer (S3 slow)
    page = browser.new_page()
    asked: list[Any] = []
    page.route("**/api/job?*", lambda route: asked.append(route))
    page.goto(dashboard_url)
    lookup(page, "no-job-has-this-id")
    # WHEN the page refreshes four times meanwhile (each asks again for the job shown)
    refreshes(page, 4)
    # THEN it waits for the answer it asked for instead of asking again each refresh
    assert len(asked) == 1


def refreshes(page: Any, count: int) -> None:
    """Wait for ``count`` refreshes of the page."""
    for _ in range(count):
        with page.expect_response("**/api/overview", timeout=10_000):
            pass


def lookup(page: Any, job_id: str) -> None:
    page.locator("#job-id").fill(job_id)
    page.locator("#lookup button").click()


def test_an_id_typed_while_the_page_refreshes_is_the_one_looked_up(
    stack: embedded.LocalResources, browser: Any, dashboard_url: str
) -> None:
    # GIVEN a page that looked up an id no job has (it asks again each refresh: it may run later)
    page = browser.new_page()
    page.goto(dashboard_url)
    lookup(page, "no-job-has-this-id")
    page.locator("#job .notfound").wait_for(timeout=10_000)
    # AND a job that finished
    done = str(uuid.uuid4())
    _, s3 = support.clients(stack)
    meta = {"status": "SUCCESS", "result": 7, "task_id": done, "name": "registry.steps"}
    key = f"results/celery-task-meta-{done}"
    s3.put_object(Bucket=stack.bucket, Key=key, Body=json.dumps(meta))
    # WHEN the person types its id and the page refreshes a few times before they press Look up
    page.locator("#job-id").fill(done)
    for _ in range(3):
        with page.expect_response(lambda r: "/api/job?" in r.url, timeout=10_000):
            pass
    # THEN the field still holds what they typed, and Look up finds that job
    assert page.locator("#job-id").input_value() == done
    page.locator("#lookup button").click()
    page.locator("#job .badge", has_text="SUCCESS").wait_for(timeout=10_000)
    assert done in page.locator("#job dl").inner_text()


def test_the_page_asks_for_one_dead_letter_listing_at_a_time(
    stack: embedded.LocalResources, browser: Any, dashboard_url: str
) -> None:
    # GIVEN dead-letter queues whose depth changes at every refresh (failures arriving)
    page = browser.new_page()
    depth = itertools.count(1)

    def growing(route: Any) -> None:
        answer = route.fetch()
        data = answer.json()
        for queue in data["queues"]:
            if queue["kind"] == "dead-letter" and queue["visible"] is not None:
                queue["visible"] = next(depth)
        route.fulfill(response=answer, json=data)

    page.route("**/api/overview", growing)
    # AND a listing that takes long (each receives every message; the server runs one at a time)
    listings: list[Any] = []
    page.route("**/api/dlq", lambda route: listings.append(route))
    page.goto(dashboard_url)
    # WHEN the page refreshes four times during the first listing
    refreshes(page, 4)
    # THEN it asked for that one listing only, not one more each refresh
    assert len(listings) == 1
    # AND once it ends, the next refresh lists them again (they changed meanwhile)
    listings[0].continue_()
    # (evaluate lets Playwright deliver the routed requests to the handler above)
    wait_for(lambda: page.evaluate("1") and len(listings) == 2, timeout=10, what="a new listing")


def test_a_refresh_the_server_does_not_answer_is_shown_as_one(
    stack: embedded.LocalResources, browser: Any, dashboard_url: str
) -> None:
    # GIVEN a page that showed the stack once
    page = browser.new_page()
    answered: list[Any] = []
    held: list[Any] = []

    def first_only(route: Any) -> None:
        if answered:
            held.append(route)  # AWS hanging: the server holds the refresh
        else:
            answered.append(route)
            route.continue_()

    page.route("**/api/overview", first_only)
    page.goto(dashboard_url)
    page.locator("#live.ok").wait_for(timeout=10_000)
    # WHEN its next refresh is not answered
    # THEN the page says so, rather than show the last answer as if it were current
    banner = page.locator("#error", has_text="did not answer")
    banner.wait_for(timeout=15_000)
    assert page.locator("#live.stale").count() == 1
