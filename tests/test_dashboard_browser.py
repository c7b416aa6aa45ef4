"""The dashboard in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, which ``.ci/run`` installs): log in, watch a running
workflow turn completed, look at a step and at the jobs. Screenshots are kept
in ``test-artifacts/`` (their paths are printed).

Without Chromium this test fails rather than skips: a dashboard nobody looked at
is not tested.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pool_jobs
import pytest
import workflow_jobs as wj
from api_helpers import TOKEN, api_server
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from worker import App, Worker
from worker.plugins.workflow import Workflow, WorkflowPlugin

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# No network here: without these, Chromium hangs on lookups of its own services.
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-proxy-server",
    "--window-size=1400,860",
]
WAIT = 60.0
COLOURS = {"pending": "lightblue", "running": "yellow", "succeeded": "lightgreen"}


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not found: the dashboard test needs Debian's "
            "Chromium (apt-get install -y chromium chromium-driver; .ci/run does it)"
        )
    options = Options()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """Selenium calls off the event loop (the API server runs on it)."""

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver

    async def run(self, call: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(call, *args)

    async def wait(self, what: str, check: Callable[[WebDriver], Any]) -> Any:
        try:
            return await self.run(WebDriverWait(self.driver, WAIT, 0.1).until, check)
        except TimeoutException:
            shot = await self.screenshot("timeout")
            raise AssertionError(f"timed out waiting for {what} (screenshot {shot})") from None

    async def wait_css(self, what: str, selector: str) -> Any:
        return await self.wait(
            what, lambda d: (d.find_elements(By.CSS_SELECTOR, selector) or [None])[0]
        )

    async def click(self, selector: str) -> None:
        element = await self.wait_css(selector, selector)
        await self.run(element.click)

    async def fill(self, step_id: str) -> str:
        rect = await self.wait_css(f"node {step_id}", f'g[data-step-id="{step_id}"] rect')
        return await self.run(rect.get_attribute, "fill")

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"dashboard-{name}.png"
        await self.run(self.driver.save_screenshot, str(path))
        print(f"screenshot: {path}")
        return path

    async def severe_console_messages(self) -> list[str]:
        entries = await self.run(self.driver.get_log, "browser")
        return [e["message"] for e in entries if e["level"] == "SEVERE"]


def waiting_diamond(dsn: str) -> Workflow:
    """The reference diamond whose ``left`` step runs until the test records
    ``release-left``."""
    left = pool_jobs.awaits_for.job.with_kwargs(
        dsn=dsn, tag="left", signal="release-left", limit=120.0
    )
    return (
        Workflow("example")
        .add("top", wj.ok)
        .add("left", left, ["top"])
        .add("right", wj.sync_ok, ["top"])
        .add("bottom", wj.ok, ["left", "right"])
    )


async def test_dashboard_shows_a_running_workflow_turn_completed(
    app: App, executions: str, browser: WebDriver
) -> None:
    page = Page(browser)
    app.plugins.append(WorkflowPlugin())
    async with (
        Worker(app, processes=2, concurrency=10),
        api_server(app) as server,
    ):
        workflow_id = await WorkflowPlugin.push(app, waiting_diamond(executions))

        # Without a token the page asks for one; a wrong one is refused.
        await page.run(browser.get, server.base + "/")
        await page.wait_css("the login dialog", "dialog#login[open]")
        token_input = await page.wait_css("the token field", "#login-token")
        await page.run(token_input.send_keys, "not-the-token-at-all")
        await page.click("#login-form button[type=submit]")
        await page.wait(
            "the refusal",
            lambda d: "not the one" in d.find_element(By.ID, "login-error").text,
        )
        await page.run(token_input.send_keys, TOKEN)  # the field was emptied
        await page.click("#login-form button[type=submit]")
        await page.wait_css("the workflow list", f'tr[data-workflow-id="{workflow_id}"]')
        await page.severe_console_messages()  # the two 401s of the login, expected

        # The address printed at start carries the token in its fragment, which
        # the page keeps in sessionStorage and removes from the address bar.
        await page.run(browser.execute_script, "sessionStorage.clear()")
        await page.run(browser.get, f"{server.base}/#token={TOKEN}")
        row = f'tr[data-workflow-id="{workflow_id}"]'
        await page.wait_css("the workflow running", f'{row}[data-workflow-state="running"]')
        assert TOKEN not in await page.run(lambda: browser.current_url)
        # the list refreshes by itself
        later = await WorkflowPlugin.push(
            app, Workflow("parked").add("only", wj.ok.job.with_queue("parked"))
        )
        await page.wait_css("a new workflow", f'tr[data-workflow-id="{later}"]')
        await page.screenshot("workflows")
        await page.click(f"{row} a")

        # The DAG: coloured as generate_dot colours it, live.
        await page.wait_css("left running", 'g[data-step-id="left"][data-state="running"]')
        await page.wait_css("right done", 'g[data-step-id="right"][data-state="succeeded"]')
        assert await page.fill("top") == COLOURS["succeeded"]
        assert await page.fill("left") == COLOURS["running"]
        assert await page.fill("bottom") == COLOURS["pending"]
        edges = await page.run(browser.find_elements, By.CSS_SELECTOR, "path.edge")
        assert len(edges) == 4
        await page.click('g[data-step-id="left"]')
        panel = await page.wait_css("the step panel", '#step[data-step-id="left"]')
        text = await page.run(lambda: panel.text)
        assert "pool_jobs.awaits_for" in text and "running" in text and "1 of 1" in text
        await page.screenshot("running")

        await asyncio.to_thread(pool_jobs.record, executions, "release-left")
        await page.wait_css("completed", '#workflow-state[data-workflow-state="completed"]')
        for step in ("top", "left", "right", "bottom"):
            await page.wait_css(f"{step} done", f'g[data-step-id="{step}"][data-state="succeeded"]')
            assert await page.fill(step) == COLOURS["succeeded"]
        await page.wait_css("the panel updated", '#step[data-step-state="succeeded"]')
        await page.click('g[data-step-id="bottom"]')
        await page.wait_css("the bottom step", '#step[data-step-id="bottom"]')
        completed = await page.screenshot("completed")

        # The jobs: counts per queue and state, and the list.
        await page.click('a[data-nav="jobs"]')
        await page.wait(
            "four succeeded jobs",
            lambda d: len(d.find_elements(By.CSS_SELECTOR, 'tr[data-job-state="succeeded"]')) == 4,
        )
        summary = await page.wait_css("the summary", 'table.summary tr[data-queue="default"]')
        assert "4" in await page.run(lambda: summary.text)
        await page.screenshot("jobs")
        await page.click('tr[data-job-state="succeeded"] a')
        await page.wait_css("one job", "#job dl.details")
        await page.screenshot("job")

        # A failed step: lightpink, with its error and traceback.
        failing = Workflow("fails").add("a", wj.ok).add("b", wj.boom, ["a"])
        failed_id = await WorkflowPlugin.push(app, failing)
        await WorkflowPlugin.wait_for_workflow(app, failed_id, timeout=WAIT)
        await page.run(browser.get, f"{server.base}/#/workflows/{failed_id}")
        await page.wait_css("failed", '#workflow-state[data-workflow-state="failed"]')
        assert await page.fill("b") == "lightpink"
        await page.click('g[data-step-id="b"]')
        errors = await page.wait_css("the error", "#step .errors summary")
        assert "RuntimeError: step failed on purpose" in await page.run(lambda: errors.text)
        await page.screenshot("failed")

        assert await page.severe_console_messages() == []
    assert completed.stat().st_size > 10_000
