"""The dashboard in a real headless Chromium (Debian's, driven by Playwright)
against a real node: it loads without console errors, shows a job submitted
over REST within 3 s, shows a queue's shares, redrives from the DLQ view, and
lists the worker processes connected."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from kokaq.server.log_format import LOG_FORMAT
from tests.integration.nodes import NodeProcess, wait_until
from tests.integration.worker_processes import Workers

CHROMIUM = "/usr/bin/chromium"  # .ci/run installs Debian's chromium
# As root, without a network: no sandbox, and no background connections.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def http(node: NodeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{node.http}", timeout=10) as client:
        yield client


def open_dashboard(
    browser: Browser, node: NodeProcess, errors: list[str], width: int = 1280, height: int = 800
) -> Page:
    page = browser.new_page(viewport={"width": width, "height": height})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"http://{node.http}/")
    page.wait_for_selector("#node-status.ok", timeout=5_000)
    return page


def submit(http: httpx.Client, **job: Any) -> str:
    response = http.post("/v1/jobs", json={"type": "email_send", "payload": {"n": 1}, **job})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def kill(http: httpx.Client, queue: str, job_id: str) -> None:
    """Lease the job (the queue's most urgent) and fail it into the DLQ."""
    leased = http.post(f"/v1/namespaces/default/queues/{queue}/dequeue", json={}).json()
    (message,) = leased["messages"]
    assert message["id"] == job_id
    nack = http.post(
        f"/v1/namespaces/default/queues/{queue}/messages/{job_id}/nack",
        json={"lock_id": message["lock_id"], "error": "smtp down"},
    )
    assert nack.json()["outcome"] == "dead_lettered"


def test_dashboard_shows_jobs_and_redrives_dead_ones(
    browser: Browser, node: NodeProcess, http: httpx.Client, tmp_path: Path
) -> None:
    errors: list[str] = []
    queue = f"dash-{uuid.uuid4().hex[:6]}"
    submit(http, queue=queue)  # the namespace and queue exist before the page opens
    page = open_dashboard(browser, node, errors)
    assert "leader" in page.inner_text("#node-status")

    # A job submitted now appears in the recent jobs within 3 s (the page polls).
    page.click("#tabs button[data-tab=jobs]")
    job_id = submit(http, queue=queue, priority=7)
    submitted = time.monotonic()
    page.wait_for_selector(f'#jobs-table tr[data-job-id="{job_id}"]', timeout=3_000)
    assert time.monotonic() - submitted < 3
    page.click(f'#jobs-table tr[data-job-id="{job_id}"]')
    page.wait_for_selector("#job-detail:not([hidden])")
    assert page.inner_text("#job-id") == job_id
    assert '"n": 1' in page.inner_text("#job-payload")

    # The overview lists the queue; a click shows its shares.
    page.click("#tabs button[data-tab=overview]")
    row = page.locator(f'#queues-table tr[data-queue="{queue}"]')
    expect(row.locator("td").nth(1)).to_have_text("2", timeout=3_000)  # two ready
    row.click()
    page.wait_for_selector("#shares:not([hidden]) #bands-table tbody tr", timeout=3_000)

    # Pause stops the queue's dispatch (its row says so) until Resume.
    stats = f"/v1/namespaces/default/queues/{queue}/stats"
    row.locator("button.pause").click()
    expect(row.locator("td").first).to_contain_text("paused", timeout=3_000)
    assert http.get(stats).json()["paused"] is True
    row.locator("button.resume").click()
    expect(row.locator("button.pause")).to_be_visible(timeout=3_000)
    assert http.get(stats).json()["paused"] is False
    expect(row.locator("td").first).to_have_text(queue)

    # A dead job shows in the DLQ view; Redrive sends it back to its queue.
    dead = submit(http, queue=queue, max_retries=0, priority=100)
    kill(http, queue, dead)
    page.click("#tabs button[data-tab=dlq]")
    page.select_option("#dlq-queue", queue)
    page.wait_for_selector(f'#dlq-table tr[data-job-id="{dead}"]', timeout=3_000)
    assert "smtp down" in page.inner_text("#dlq-table")
    page.click(f'#dlq-table button.redrive[data-id="{dead}"]')
    page.wait_for_selector("#dlq-result:has-text('redriven: 1')", timeout=3_000)
    wait_until(lambda: http.get(f"/v1/jobs/{dead}").json()["status"] == "pending", timeout=3)
    page.wait_for_selector(f'#dlq-table tr[data-job-id="{dead}"]', state="detached", timeout=3_000)

    # Purge asks first; a declined confirmation deletes nothing.
    kill(http, queue, submit(http, queue=queue, max_retries=0, priority=200))
    page.wait_for_selector("#dlq-table tbody tr", timeout=3_000)
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#dlq-purge-all")
    assert http.get("/v1/dlq", params={"queue": queue}).json()["jobs"] != []
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#dlq-purge-all")
    page.wait_for_selector("#dlq-result:has-text('purged: 1')", timeout=3_000)
    assert http.get("/v1/dlq", params={"queue": queue}).json()["jobs"] == []

    page.click("#tabs button[data-tab=cluster]")
    page.wait_for_selector("#cluster-fields dd", timeout=3_000)
    assert "leader" in page.inner_text("#cluster-fields")
    assert f"log format\n{LOG_FORMAT}" in page.inner_text("#cluster-fields")
    page.click("#tabs button[data-tab=overview]")
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    page.close()

    phone = open_dashboard(browser, node, errors, width=390, height=844)
    phone.wait_for_selector(f'#queues-table tr[data-queue="{queue}"]', timeout=3_000)
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # no sideways scrolling of the page; wide tables scroll in place
    phone.screenshot(path=str(tmp_path / "dashboard-phone.png"), full_page=True)
    phone.close()
    assert errors == []


def test_dashboard_job_detail_shows_the_result(
    browser: Browser, node: NodeProcess, http: httpx.Client
) -> None:
    errors: list[str] = []
    queue = f"dash-{uuid.uuid4().hex[:6]}"
    done, waiting = submit(http, queue=queue), submit(http, queue=queue)
    leased = http.post(f"/v1/namespaces/default/queues/{queue}/dequeue", json={}).json()
    (message,) = leased["messages"]
    assert message["id"] == done
    reported = http.post(
        f"/v1/namespaces/default/queues/{queue}/messages/{done}/progress",
        json={"lock_id": message["lock_id"], "progress": {"pct": 100}},
    )
    assert reported.status_code == 200, reported.text
    acked = http.post(
        f"/v1/namespaces/default/queues/{queue}/messages/{done}/ack",
        json={"lock_id": message["lock_id"], "result": '{"delivered": true}'},
    )
    assert acked.status_code == 200, acked.text
    page = open_dashboard(browser, node, errors)
    page.click("#tabs button[data-tab=jobs]")
    done_row = page.locator(f'#jobs-table tr[data-job-id="{done}"]')
    expect(done_row.locator("td").nth(4)).to_have_text('{"pct":100}', timeout=3_000)
    page.click(f'#jobs-table tr[data-job-id="{waiting}"]', timeout=3_000)
    page.wait_for_selector("#job-detail:not([hidden])")
    expect(page.locator("#job-result-box")).to_be_hidden()  # no result yet
    page.click(f'#jobs-table tr[data-job-id="{done}"]')
    expect(page.locator("#job-id")).to_have_text(done)
    expect(page.locator("#job-result")).to_contain_text('"delivered": true')
    expect(page.locator('#job-fields dd[data-field="progress"]')).to_have_text('{"pct":100}')
    page.close()
    assert errors == []


def test_dashboard_lists_connected_workers(
    browser: Browser, node: NodeProcess, http: httpx.Client, tmp_path: Path
) -> None:
    errors: list[str] = []
    queue = f"dash-{uuid.uuid4().hex[:6]}"
    workers = Workers(node, tmp_path)
    http.post("/v1/namespaces", json={"name": "default"})  # made by an earlier test, or now
    created = http.post("/v1/namespaces/default/queues", json={"name": queue})
    assert created.status_code == 201, created.text
    try:
        process = workers.start(f"{queue}:2", "--concurrency", "2", "--worker-id", "dash-worker-1")
        page = open_dashboard(browser, node, errors)
        page.click("#tabs button[data-tab=workers]")
        row = page.locator("#workers-table tbody tr", has_text="dash-worker-1")
        expect(row).to_have_count(1, timeout=20_000)  # the worker process starts meanwhile
        cells = row.locator("td")
        expect(cells.nth(1)).to_have_text(f"{queue} (2)")
        expect(cells.nth(2)).to_have_text("0")  # holding nothing yet
        expect(cells.nth(3)).to_have_text("2")  # concurrency
        expect(cells.nth(7)).to_have_text("Work")
        expect(cells.nth(8)).to_have_text("working")
        assert "worker stream" in page.inner_text("#workers-note")

        # A slow job shows as held, and counted as leased, within the 3 s polling promise.
        submit(http, queue=queue, type="slow", payload={"seconds": 5})
        expect(cells.nth(2)).to_have_text("1", timeout=3_000)
        expect(cells.nth(5)).to_have_text("1")
        page.click("#tabs button[data-tab=overview]")
        card = page.locator("#summary .card", has_text="workers")
        expect(card.locator("b")).to_have_text("1", timeout=3_000)

        # Its queue paused: the row says why it gets nothing.
        assert http.post(f"/v1/namespaces/default/queues/{queue}/pause").status_code == 200
        page.click("#tabs button[data-tab=workers]")
        expect(cells.nth(8)).to_have_text("its queues are paused", timeout=3_000)
        assert http.post(f"/v1/namespaces/default/queues/{queue}/resume").status_code == 200
        expect(cells.nth(8)).to_have_text("working", timeout=3_000)

        # SIGTERM: the worker finishes its job and goes; so does its row.
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        assert [row[1] for row in workers.lines("end")] == [queue]
        page.click("#tabs button[data-tab=workers]")
        expect(row).to_have_count(0, timeout=3_000)
        expect(page.locator("#workers-table tbody tr")).to_have_count(0)
        page.close()
        assert errors == []
    finally:
        workers.stop_all()


def test_dashboard_without_a_key_says_so(browser: Browser, tmp_path: Path) -> None:
    node = NodeProcess(str(tmp_path), "--api-key", "adminkey1:admin").start()
    try:
        errors: list[str] = []
        page = browser.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"http://{node.http}/")
        banner = page.wait_for_selector("#error:not([hidden])", timeout=5_000)
        assert banner is not None and "401" in banner.inner_text()
        page.fill("#api-key", "adminkey1")
        page.click("#key-form button")
        page.wait_for_selector("#node-status.ok", timeout=5_000)
        page.wait_for_selector("#error", state="hidden", timeout=5_000)
        page.close()
        assert errors == []
    finally:
        node.kill()


def test_dashboard_lists_schedules_and_runs_one_now(
    browser: Browser, node: NodeProcess, http: httpx.Client
) -> None:
    errors: list[str] = []
    name, queue = f"dash-{uuid.uuid4().hex[:6]}", f"dash-{uuid.uuid4().hex[:6]}"
    body = {"cron": "0 4 * * *", "timezone": "Asia/Tokyo", "type": "digest", "payload": {}}
    assert http.put(f"/v1/schedules/{name}", json=body | {"queue": queue}).status_code == 200
    page = open_dashboard(browser, node, errors)
    page.click("#tabs button[data-tab=schedules]")
    row = page.locator(f'#schedules-table tr[data-schedule="{name}"]')
    cells = row.locator("td")
    expect(cells.nth(1)).to_have_text("digest", timeout=3_000)
    expect(cells.nth(3)).to_have_text("0 4 * * *")
    expect(cells.nth(4)).to_have_text("Asia/Tokyo")
    expect(cells.nth(6)).to_have_text("0")
    row.locator("button.trigger").click()
    expect(page.locator("#schedules-result")).to_contain_text("submitted ", timeout=3_000)
    job_id = page.inner_text("#schedules-result").removeprefix("submitted ")
    assert http.get(f"/v1/jobs/{job_id}").json()["type"] == "digest"
    expect(cells.nth(6)).to_have_text("1", timeout=3_000)
    expect(cells.nth(7)).to_have_text(job_id)
    row.locator("button.pause").click()
    expect(cells.nth(5)).to_have_text("paused", timeout=3_000)
    assert http.get(f"/v1/schedules/{name}").json()["paused"] is True
    row.locator("button.resume").click()
    expect(row.locator("button.pause")).to_be_visible(timeout=3_000)
    assert http.get(f"/v1/schedules/{name}").json()["paused"] is False
    page.close()
    assert errors == []
    http.delete(f"/v1/schedules/{name}")
