"""The public status page in a real browser (Debian's Chromium, driven by Playwright).

A real `nexus-bot serve` on SQLite, with `status_page.refresh_seconds: 10`: an
Alertmanager alert through the real endpoint, a public update with the real
CLI, and the page read as a reader reads it (roles and visible text), on a
desktop and on a phone in dark mode. The page then follows the incident to
its resolution by its own refresh, without a reload and without losing the
reader's scroll position.

Without Chromium (`/usr/bin/chromium`, or `NEXUS_CHROMIUM`) or Playwright these
tests skip with the reason, and fail when CI=true (.ci/run installs Chromium).
Screenshots go to the test's tmp folder; with NEXUS_UPDATE_DOCS=1 the desktop
one also replaces docs/status-page.png (the README shows it).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from tests.support.bot_process import REPO_ROOT, BotProcess
from tests.support.browser import DESKTOP, PHONE_DARK, launch_chromium, open_page

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

DATA = Path(__file__).resolve().parents[1] / "data"
NO_SLACK = ("http://127.0.0.1:9/api/", "")  # Slack off: the page needs none of it
REFRESH_SECONDS = 10
# The page's own refresh must show a change within this (one refresh period, the
# CLI's start-up and the routes' one-second cache, with room for a slow machine).
REFRESH_WAIT_MS = 25_000
UPDATE_DOCS = os.environ.get("NEXUS_UPDATE_DOCS") == "1"
DOCS_SCREENSHOT = REPO_ROOT / "docs" / "status-page.png"

FIRST_UPDATE = "We are rolling back a bad configuration change"
RESOLUTION = "Rolled back; all systems normal"
# From the alert's labels, annotations and URLs: internal, never on the public page.
INTERNAL = (
    "FrenlyAIDangerousEdit",
    "ssot_manifest_proposal",
    "PR #318",
    "rewrites SSOT anchors",
    "nexus/ssot",
    "prometheus.nexus.internal",
    "frenly_ai_unvalidated_edits",
)


# -- the bot ---------------------------------------------------------------------


def status_config(folder: Path) -> Path:
    """The shipped config with the page refreshing every 10 s (the minimum)."""
    config = yaml.safe_load((REPO_ROOT / "config" / "nexus.yaml").read_text())
    config.setdefault("status_page", {})["refresh_seconds"] = REFRESH_SECONDS
    path = folder / "nexus.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def bot(tmp_path: Path) -> Iterator[BotProcess]:
    process = BotProcess(
        f"sqlite:///{tmp_path / 'status.db'}",
        *NO_SLACK,
        NEXUS_CONFIG=str(status_config(tmp_path)),
    ).start()
    try:
        yield process
    finally:
        process.stop()
        print(f"--- bot ---\n{process.stderr[-20000:]}")  # shown when the test fails


def cli_env(bot: BotProcess) -> dict[str, str]:
    """The bot's database and config, no Slack or mail: as an operator's shell has them."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "SMTP_", "NEXUS_"))}
    return {
        **clean,
        "DATABASE_URL": bot.env["DATABASE_URL"],
        "NEXUS_CONFIG": bot.env["NEXUS_CONFIG"],
        "NEXUS_PLAYBOOKS": bot.env["NEXUS_PLAYBOOKS"],
    }


def publish(bot: BotProcess, number: int, status: str, text: str) -> None:
    """`python -m bot update N STATUS TEXT`, the CLI an operator runs."""
    done = subprocess.run(
        [sys.executable, "-m", "bot", "update", str(number), status, text],
        cwd=REPO_ROOT,
        env=cli_env(bot),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"Incident #{number}: update posted ({status}).\n"


# The same service call the CLI makes, for many incidents in one process (50
# CLI start-ups would take a minute).
PUBLISH_ALL = textwrap.dedent(
    """
    import sqlalchemy as sa

    from bot.commands.database import migrated_database
    from bot.core import build_core
    from bot.domain.playbooks import load_playbooks
    from bot.settings import Settings

    settings = Settings()
    playbooks = load_playbooks([settings.nexus_playbooks], settings.allowed_targets)
    with migrated_database(settings) as engine:
        core = build_core(settings, engine, playbooks)
        with engine.connect() as conn:
            numbers = list(conn.execute(sa.text("SELECT id FROM incidents ORDER BY id")).scalars())
        for number in numbers:
            outcome = core.incidents.post_update(
                number, "identified", f"Incident {number}: the cause is known.",
                "cli:test", via="cli",
            )
            assert outcome.changed, outcome.message
    print(len(numbers))
    """
)


def alert(number: int | None = None) -> dict[str, Any]:
    """The Frenly AI alert (critical, service frenly-ai); numbered, a group of its own."""
    body: dict[str, Any] = json.loads((DATA / "alertmanager-frenly-ai.json").read_text())
    if number is None:
        return body
    body = copy.deepcopy(body)
    body["groupKey"] = f"{body['groupKey']}:storm-{number}"
    for item in body["alerts"]:
        item["fingerprint"] = f"{item['fingerprint']}-{number}"
    return body


# -- the browser -----------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with launch_chromium() as browser:
        yield browser


def screenshot(page: Page, tmp_path: Path, name: str, *, docs: bool = False) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000
    if docs and UPDATE_DOCS:
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(path, DOCS_SCREENSHOT)
    return path


def banner(page: Page) -> Locator:
    """The banner: the page's one live status region."""
    return page.locator("main#status").get_by_role("status")


def component(page: Page, name: str) -> Locator:
    """A component's row (a list item) by its visible name."""
    return (
        page.locator("main#status")
        .get_by_role("listitem")
        .filter(has=page.get_by_text(name, exact=True))
    )


def resolved_section(page: Page) -> Locator:
    return page.get_by_role("region", name=re.compile("^resolved", re.I))


def active_section(page: Page) -> Locator:
    return page.get_by_role("region", name=re.compile("active incidents", re.I))


def no_horizontal_overflow(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def assert_nothing_internal(page: Page) -> None:
    html = page.content()
    text = page.locator("body").inner_text()
    for secret in INTERNAL:
        assert secret not in html, f"{secret!r} is in the page's HTML"
        assert secret not in text, f"{secret!r} is on the page"


# -- the tests -------------------------------------------------------------------


def test_a_quiet_platform_is_all_operational_with_no_incidents(
    bot: BotProcess, chromium: Browser, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    with open_page(chromium, DESKTOP) as page:
        response = page.goto(f"{bot.url}/status")
        assert response is not None and response.status == 200
        expect(banner(page)).to_have_count(1)
        expect(banner(page)).to_contain_text("All systems operational")
        expect(active_section(page)).to_contain_text("No incidents")
        for name in ("Configuration (SSOT)", "Frenly AI assistant", "Platform APIs"):
            expect(component(page, name)).to_contain_text("Operational")
        expect(page.locator("article[id^=incident-]")).to_have_count(0)
        expect(page.get_by_role("contentinfo")).to_be_visible()
        screenshot(page, tmp_path, "status-page-quiet.png")


def test_a_reader_follows_a_critical_incident_to_its_resolution(
    bot: BotProcess, chromium: Browser, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    assert bot.alertmanager(alert()).status_code == 202
    bot.wait_applied()
    # Critical and unpublished: nothing public yet.
    with open_page(chromium, DESKTOP) as page:
        page.goto(f"{bot.url}/status")
        expect(banner(page)).to_contain_text("All systems operational")
        expect(page.locator("article[id^=incident-]")).to_have_count(0)
        assert_nothing_internal(page)

    publish(bot, 1, "investigating", FIRST_UPDATE)
    with open_page(chromium, DESKTOP) as desktop, open_page(chromium, PHONE_DARK) as phone:
        for page, name in ((desktop, "status-page.png"), (phone, "status-page-phone-dark.png")):
            page.goto(f"{bot.url}/status")
            expect(banner(page)).to_contain_text("Major outage")
            expect(component(page, "Frenly AI assistant")).to_contain_text("Major outage")
            expect(component(page, "Configuration (SSOT)")).to_contain_text("Operational")
            incident = page.locator("article#incident-1")
            expect(incident).to_be_visible()
            expect(incident.get_by_text(FIRST_UPDATE)).to_be_visible()
            expect(incident.get_by_text("Investigating", exact=True)).to_be_visible()
            expect(incident.locator("time[datetime]").first).to_be_visible()
            assert_nothing_internal(page)
            assert no_horizontal_overflow(page)
            screenshot(page, tmp_path, name, docs=page is desktop)

        # Two more updates make the phone page well taller than its screen; after one
        # reload the page only refreshes itself. The reader scrolls down a bit.
        for status, text in (
            (
                "identified",
                "A configuration change proposed by the assistant was applied "
                "without validation. We are restoring the previous configuration.",
            ),
            (
                "monitoring",
                "The previous configuration is restored. Proposals from the "
                "assistant are paused while we watch error rates return to normal.",
            ),
        ):
            publish(bot, 1, status, text)
        for page in (desktop, phone):
            page.reload()
            updates = page.locator("article#incident-1").get_by_role("listitem")
            expect(updates).to_have_count(3)  # one list item per public update
            page.evaluate("window.__sameDocument = true")
        room = phone.evaluate("document.documentElement.scrollHeight - window.innerHeight")
        assert room >= 200, f"the phone page scrolls only {room} px: too short to test"
        phone.evaluate("window.scrollTo({top: 200, behavior: 'instant'})")
        phone.wait_for_function("window.scrollY >= 199")

        started = time.monotonic()
        publish(bot, 1, "resolved", RESOLUTION)
        for page in (phone, desktop):
            expect(banner(page)).to_contain_text("All systems operational", timeout=REFRESH_WAIT_MS)
            expect(component(page, "Frenly AI assistant")).to_contain_text("Operational")
            resolved = page.locator("article#incident-1")
            expect(resolved).to_contain_text(RESOLUTION)
            expect(resolved.get_by_text("Resolved", exact=True)).to_be_visible()
            expect(resolved_section(page).locator("article#incident-1")).to_have_count(1)
            # The page's script changed it in place: same document, no reload.
            assert page.evaluate("window.__sameDocument === true")
        print(f"the page showed the resolution {time.monotonic() - started:.1f} s after it")
        scrolled = phone.evaluate("window.scrollY")
        room = phone.evaluate("document.documentElement.scrollHeight - window.innerHeight")
        print(f"the phone was scrolled to 200 px, and is at {scrolled} px after the refresh")
        assert scrolled > 0, "the refresh scrolled the reader back to the top"
        assert abs(scrolled - min(200, room)) <= 1, f"the refresh moved the reader to {scrolled}"
        assert no_horizontal_overflow(phone)
        screenshot(phone, tmp_path, "status-page-phone-resolved.png")


def test_fifty_incidents_keep_the_layout(
    bot: BotProcess, chromium: Browser, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    for number in range(1, 51):
        assert bot.alertmanager(alert(number)).status_code == 202
    bot.wait_applied(timeout=60)
    assert bot.scalar("SELECT count(*) FROM incidents") == 50
    done = subprocess.run(
        [sys.executable, "-c", PUBLISH_ALL],
        cwd=REPO_ROOT,
        env=cli_env(bot),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "50"

    for size, name in ((PHONE_DARK, "status-page-50-phone.png"), (DESKTOP, "status-page-50.png")):
        with open_page(chromium, size) as page:
            page.goto(f"{bot.url}/status")
            expect(banner(page)).to_contain_text("Major outage")
            expect(page.locator("article[id^=incident-]")).to_have_count(50)
            expect(page.locator("article#incident-50")).to_be_visible()
            expect(page.get_by_role("contentinfo")).to_be_visible()
            assert no_horizontal_overflow(page), page.evaluate(
                "[document.documentElement.scrollWidth, window.innerWidth]"
            )
            assert_nothing_internal(page)
            screenshot(page, tmp_path, name)
