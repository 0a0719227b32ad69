"""The dashboard in a real browser: headless Chromium (Debian's) driven by Playwright.

The whole platform runs (the five services as processes, as ``make run`` starts them). The
test logs in with the platform's key, creates a template over the API, submits the example
CSV from the dashboard's form, watches the transaction's row in the list go to COMPLETED
without reloading the page, opens the transaction page, and saves a screenshot of each in
``var/`` for people to look at; then it opens the API docs (Swagger UI), which must
render. Any request to another origin, or a script error, fails it.

Playwright's own browser download does not work here (no internet): the Makefile installs
Debian's ``chromium``. Without it the test is skipped, except under CI, where it fails.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import httpx
import pytest
from playwright.async_api import async_playwright, expect

from stack.launcher import StackInfo
from stack.platform import Platform
from stack.processes import free_port

pytestmark = pytest.mark.timeout(240)

CHROMIUM: Final = Path("/usr/bin/chromium")
# No sandbox: the tests run as root. The rest keeps Chromium from calling home.
CHROMIUM_ARGS: Final = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VAR: Final = Path(__file__).resolve().parents[2] / "var"
# The campaign waits this long before sending: long enough to see it change on the page.
_SEND_DELAY: Final = timedelta(seconds=12)


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's chromium, looked for before the platform starts (a skip costs nothing)."""
    if CHROMIUM.exists():
        return CHROMIUM
    message = f"{CHROMIUM} is missing: `make test` installs Debian's chromium package"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def platform(stack_info: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with Platform(
        tmp_path_factory.mktemp("platform"),
        gateway_port=free_port(),
        running_stack=stack_info,
        service_env={"MONGODB_DB": "dashboard", "SQS_WAIT_SECONDS": "1"},
    ) as running:
        yield running


def create_template(platform: Platform, examples: Path) -> str:
    assert platform.api_key is not None
    answer = httpx.post(
        f"{platform.gateway_url}/api/v1/templates",
        json=tomllib.loads((examples / "welcome.toml").read_text()),
        headers={"Authorization": f"Bearer {platform.api_key}"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


async def test_submit_watch_and_open_a_transaction(
    chromium: Path, platform: Platform, examples: Path
) -> None:
    assert platform.api_key is not None
    base = platform.gateway_url
    template_id = create_template(platform, examples)
    VAR.mkdir(exist_ok=True)
    elsewhere: list[str] = []
    ours = (base, f"blob:{base}", "data:")
    problems: list[str] = []

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 860})
            page.on(
                "request",
                lambda r: None if r.url.startswith(ours) else elsewhere.append(r.url),
            )
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on(
                "console",
                lambda m: problems.append(m.text) if m.type == "error" else None,
            )

            # Not logged in: the login form, then back to the list.
            await page.goto(f"{base}/dashboard/")
            await expect(page).to_have_url(re.compile(r"/dashboard/login\?next="))
            await page.fill("#api_key", platform.api_key)
            await page.click("#login-form button[type=submit]")
            await expect(page).to_have_url(f"{base}/dashboard")

            # Submit the example CSV from the form, to send a few seconds from now.
            await page.goto(f"{base}/dashboard/submit?template_id={template_id}")
            await page.set_input_files("#file", str(examples / "recipients.csv"))
            send_at = (datetime.now(UTC) + _SEND_DELAY).isoformat(timespec="seconds")
            await page.fill("#send_at", send_at)
            await page.click("#submit-form button[type=submit]")
            await expect(page).to_have_url(re.compile(r"/dashboard/?\?new=[0-9a-f]{32}$"))
            tx_id = page.url.rsplit("=", 1)[1]

            # The row changes under our eyes: no navigation until it is COMPLETED.
            navigations: list[str] = []
            page.on("framenavigated", lambda frame: navigations.append(frame.url))
            row = page.locator(f'tr[data-tx="{tx_id}"]')
            await expect(row).to_have_count(1)
            first = await row.get_attribute("data-status")
            assert first in {"ACCEPT", "PROCESSING", "SCHEDULED"}, first
            await expect(row).to_have_attribute("data-status", "COMPLETED", timeout=120_000)
            await expect(row.locator("progress")).to_have_attribute("value", "100.0")
            assert navigations == []
            await page.screenshot(path=str(VAR / "dashboard.png"), full_page=True)

            # One transaction: its timeline, outcomes, row errors.
            await row.locator("a").first.click()
            await expect(page).to_have_url(f"{base}/dashboard/transactions/{tx_id}")
            await expect(page.locator("#tx-status")).to_have_attribute("data-status", "COMPLETED")
            async with httpx.AsyncClient(base_url=base, timeout=10) as api:
                found = await api.get(
                    f"/api/v1/transactions/{tx_id}",
                    headers={"Authorization": f"Bearer {platform.api_key}"},
                )
            answer = found.json()
            counters = answer["counters"]
            for outcome in ("delivered", "bounced", "complained", "invalid"):
                bar = page.locator(f'#outcomes [data-outcome="{outcome}"]')
                await expect(bar).to_have_attribute("data-count", str(counters[outcome]))
            timeline = [
                text.strip()
                for text in await page.locator(
                    "#timeline tbody tr td:first-child"
                ).all_inner_texts()
            ]
            assert timeline == [entry["status"] for entry in answer["status_history"]]
            await expect(page.locator("#row-errors tbody tr")).to_have_count(counters["invalid"])
            await page.screenshot(path=str(VAR / "dashboard-transaction.png"), full_page=True)

            # The platform's key is an admin key: the dead letters and alerts pages answer.
            for path in ("dead-letters", "alerts"):
                await page.goto(f"{base}/dashboard/{path}")
                await expect(page.locator(".problem")).to_have_count(0)

            # The API docs render from our own files (a CDN would be a request elsewhere).
            await page.goto(f"{base}/schema")
            await expect(page.locator(".swagger-ui .info .title")).to_contain_text(
                "Email Platform API"
            )
            await expect(page.locator(".opblock").first).to_be_visible()
        finally:
            await browser.close()

    assert elsewhere == []
    assert problems == []
