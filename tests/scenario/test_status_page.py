"""The public status page as a newcomer gets it: `nexus-bot serve` from a copy of the
repository with the defaults (SQLite, no Slack), an Alertmanager alert, a public
update from the CLI, and the three public endpoints over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.fakes.statuspage import FakeStatuspage
from tests.support.bot_process import (
    ALERTMANAGER_TOKEN,
    REPO_ROOT,
    SETTING_NAMES,
    BotProcess,
    repository_copy,
)
from tests.support.postgres import PostgresOutage

DATA = Path(__file__).resolve().parents[1] / "data"
ATOM = "{http://www.w3.org/2005/Atom}"
# Outside input that must never be published: labels, annotations, the title, commands.
HOSTILE = {
    "team": "<script>alert('labels')</script>",
    "token": "ghp_supersecrettokenvalue000000000000",
    "injected": '"><img src=x onerror=alert(1)>',
}
HOSTILE_ANNOTATIONS = {
    "summary": "Frenly AI {{ secrets }} rewrote <b>anchors</b>",
    "description": "run python scripts/reset_to_ssot.py --anchor v37",
}
NEVER_PUBLIC = [
    *HOSTILE.values(),
    *HOSTILE_ANNOTATIONS.values(),
    "FrenlyAIDangerousEdit",
    "frenly-ai-dangerous-edit",
    "ssot_manifest_proposal",
    "reset_to_ssot",
    "{{",
]


@pytest.fixture
def bot(tmp_path: Path) -> Iterator[BotProcess]:
    clone = repository_copy(tmp_path / "nexus-incident-bot")
    process = BotProcess.with_defaults(clone, ALERTMANAGER_TOKEN=ALERTMANAGER_TOKEN).start()
    try:
        yield process
    finally:
        process.stop()
        print(process.stderr[-10000:])


def cli(bot: BotProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m bot …` from the same copy, with the same (default) settings."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in SETTING_NAMES}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=bot.cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def hostile_alert() -> dict[str, Any]:
    batch = json.loads((DATA / "alertmanager-frenly-ai.json").read_text())
    batch["alerts"][0]["labels"].update(HOSTILE)
    batch["alerts"][0]["annotations"].update(HOSTILE_ANNOTATIONS)
    batch["commonAnnotations"].update(HOSTILE_ANNOTATIONS)
    return batch


def get(bot: BotProcess, path: str, **headers: str) -> httpx.Response:
    return httpx.get(f"{bot.url}{path}", headers=headers, timeout=10)


def test_nothing_to_report_works_with_no_credentials(bot: BotProcess) -> None:
    page = get(bot, "/status")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "All systems operational" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    summary = get(bot, "/status.json").json()
    assert summary["status"]["indicator"] == "none"
    assert {c["status"] for c in summary["components"]} == {"operational"}
    feed = ET.fromstring(get(bot, "/status/feed.atom").content)
    assert feed.tag == f"{ATOM}feed" and feed.findall(f"{ATOM}entry") == []
    for asset, kind in (("status.css", "text/css"), ("status.js", "text/javascript")):
        answer = get(bot, f"/status/assets/{asset}")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(kind)
    assert httpx.post(f"{bot.url}/status", timeout=10).status_code == 405


def test_only_the_published_update_reaches_the_public(bot: BotProcess) -> None:
    assert bot.alertmanager(hostile_alert()).status_code == 202
    bot.wait_applied()
    time.sleep(1.1)  # past the page's one-second cache
    assert "All systems operational" in get(bot, "/status").text  # not published yet

    posted = cli(bot, "update", "1", "investigating", "We are rolling back a bad change")
    assert posted.returncode == 0, posted.stderr
    time.sleep(1.1)
    page = get(bot, "/status").text
    summary = get(bot, "/status.json").json()
    feed = get(bot, "/status/feed.atom").text
    assert "We are rolling back a bad change" in page
    assert summary["status"]["indicator"] == "critical"
    states = {c["name"]: c["status"] for c in summary["components"]}
    assert states["Frenly AI assistant"] == "major_outage"
    [incident] = summary["incidents"]
    assert incident["incident_updates"][0]["body"] == "We are rolling back a bad change"
    assert "We are rolling back a bad change" in feed
    for document in (page, json.dumps(summary), feed):
        for secret in NEVER_PUBLIC:
            assert secret not in document, secret


def test_etags_answer_304_until_the_page_changes(bot: BotProcess) -> None:
    first = get(bot, "/status.json")
    tag = first.headers["etag"]
    assert first.headers["last-modified"]
    assert get(bot, "/status.json", **{"If-None-Match": tag}).status_code == 304
    assert get(bot, "/status", **{"If-None-Match": tag}).status_code == 200  # per format
    assert bot.alertmanager(hostile_alert()).status_code == 202
    bot.wait_applied()
    assert cli(bot, "update", "1", "identified", "Found it").returncode == 0
    time.sleep(1.1)
    changed = get(bot, "/status.json", **{"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] != tag
    head = httpx.head(f"{bot.url}/status", timeout=10)
    assert head.status_code == 200 and head.content == b""


def test_public_updates_are_mirrored_to_statuspage(tmp_path: Path) -> None:
    """Through the running bot: the durable queue delivers each public update to the
    (fake) Statuspage API: created once, then updated, then resolved."""
    with FakeStatuspage(components={"cmp-ai": "operational"}) as statuspage:
        config = yaml.safe_load((REPO_ROOT / "config" / "nexus.yaml").read_text())
        for component in config["status_page"]["components"]:
            if component["id"] == "frenly-ai":
                component["statuspage_id"] = "cmp-ai"
        path = tmp_path / "nexus.yaml"
        path.write_text(yaml.safe_dump(config))
        env = {
            "NEXUS_CONFIG": str(path),
            "STATUSPAGE_API_KEY": statuspage.api_key,
            "STATUSPAGE_PAGE_ID": statuspage.page_id,
            "STATUSPAGE_API_URL": statuspage.url,
        }
        bot = BotProcess(f"sqlite:///{tmp_path / 'bot.db'}", "", "", **env)
        for name in ("SLACK_API_URL", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
            bot.env.pop(name)  # a status page without Slack
        bot.start()
        try:
            assert bot.alertmanager(hostile_alert()).status_code == 202
            bot.wait_applied()
            run = {**os.environ, "DATABASE_URL": bot.database_url, **env}
            for status, text in (
                ("investigating", "Looking into it"),
                ("resolved", "All good again"),
            ):
                done = subprocess.run(
                    [sys.executable, "-m", "bot", "update", "1", status, text],
                    cwd=REPO_ROOT,
                    env=run,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert done.returncode == 0, done.stderr
            wait_until(lambda: [i.status for i in statuspage.incidents()] == ["resolved"])
            [incident] = statuspage.incidents()
            assert incident.name == "Service disruption"
            assert [u["body"] for u in incident.updates] == ["Looking into it", "All good again"]
            assert statuspage.components()["cmp-ai"] == "operational"
            sent = json.dumps([r.body for r in statuspage.requests()])
            for secret in NEVER_PUBLIC:
                assert secret not in sent, secret
        finally:
            bot.stop()
            print(bot.stderr[-10000:])


def wait_until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


@pytest.mark.postgres
def test_a_database_outage_is_a_503_and_the_page_comes_back(
    postgres_url: str, postgres_server: str, tmp_path: Path
) -> None:
    bot = BotProcess(postgres_url, "", "")
    for name in ("SLACK_API_URL", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
        bot.env.pop(name)
    bot.start()
    database = PostgresOutage(postgres_server, postgres_url)
    try:
        assert get(bot, "/status").status_code == 200
        database.go_away()
        time.sleep(1.1)  # past the one-second cache
        away = get(bot, "/status.json")
        assert away.status_code == 503 and away.headers["retry-after"] == "5"
        assert away.json() == {"error": "status temporarily unavailable"}
        assert "Traceback" not in away.text
        database.come_back()
        wait_until(lambda: get(bot, "/status").status_code == 200)
    finally:
        database.come_back()
        database.admin.dispose()
        bot.stop()
        print(bot.stderr[-5000:])
