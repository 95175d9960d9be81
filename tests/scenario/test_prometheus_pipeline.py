"""Metrics to Slack thread through the real pipeline: Prometheus, Alertmanager, the bot.

Prometheus (Debian package `prometheus`) scrapes a metrics endpoint the test
controls and evaluates the shipped rules in config/prometheus/; Alertmanager
(package `prometheus-alertmanager`) sends their alerts to the bot's webhook with
the bearer token; the bot runs as `nexus-bot serve` and posts to the fake Slack.
Intervals are one second, so the whole round trip takes well under a minute.
Without the binaries these tests skip, and fail when CI=true (.ci/run installs them).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import unavailable
from tests.fakes.slack import FakeMessage, FakeSlack
from tests.support.bot_process import ALERTMANAGER_TOKEN, CHANNEL, REPO_ROOT, BotProcess
from tests.support.prometheus_stack import (
    ALERTMANAGER_NAMES,
    AMTOOL_NAMES,
    PROMETHEUS_NAMES,
    MetricsServer,
    PrometheusStack,
    find_binary,
)

EXAMPLE_CONFIG = REPO_ROOT / "config" / "alertmanager" / "alertmanager.example.yml"
METRIC = "frenly_ai_unvalidated_edits"
PLAYBOOK = "frenly-ai-dangerous-edit"
SCALE_TO_ZERO = "remediation.request.scale-to-zero"
# Per stage (metric flipped -> Slack shows it); the test as a whole stays under a minute.
STAGE_TIMEOUT = 30


def _binary(names: tuple[str, ...], package: str) -> str:
    path = find_binary(names)
    if path is None:
        unavailable(f"{' or '.join(names)} not installed (Debian package '{package}'; .ci/run)")
    assert path is not None
    return path


@pytest.fixture
def binaries() -> tuple[str, str]:
    return (
        _binary(PROMETHEUS_NAMES, "prometheus"),
        _binary(ALERTMANAGER_NAMES, "prometheus-alertmanager"),
    )


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def bot(sqlite_url: str, slack: FakeSlack) -> Iterator[BotProcess]:
    process = BotProcess(sqlite_url, slack.url, slack.token or "xoxb-test").start()
    try:
        yield process
    finally:
        process.stop()
        print(f"--- bot ---\n{process.stderr[-20000:]}")  # shown when the test fails


@pytest.fixture
def metrics() -> Iterator[MetricsServer]:
    with MetricsServer() as server:
        server.set(METRIC, 0)  # healthy from the first scrape on
        yield server


@pytest.fixture
def stack(
    binaries: tuple[str, str], bot: BotProcess, metrics: MetricsServer, tmp_path: Path
) -> Iterator[PrometheusStack]:
    prometheus, alertmanager = binaries
    pipeline = PrometheusStack(
        tmp_path / "stack",
        webhook_url=f"{bot.url}/webhooks/alertmanager",
        token=ALERTMANAGER_TOKEN,
        targets=[metrics.address],
        prometheus_binary=prometheus,
        alertmanager_binary=alertmanager,
    )
    with pipeline:
        try:
            yield pipeline
        finally:
            print(pipeline.logs())


def blocks_text(message: FakeMessage) -> str:
    return json.dumps(message.blocks, ensure_ascii=False)


def buttons(message: FakeMessage) -> list[dict[str, Any]]:
    """Buttons in action blocks and as section accessories."""
    elements = [
        element
        for block in message.blocks or []
        for element in [*block.get("elements", []), block.get("accessory") or {}]
    ]
    return [element for element in elements if element.get("type") == "button"]


def wait_until_evaluated_healthy(stack: PrometheusStack, slack: FakeSlack) -> None:
    """Prometheus has scraped the 0 and evaluated the rules on it: nothing fires."""

    def evaluated() -> bool:
        if [s["value"][1] for s in stack.prometheus.query(METRIC)] != ["0"]:
            return False
        (group,) = stack.prometheus.rule_groups()
        (rule,) = [r for r in group["rules"] if r.get("name") == "FrenlyAIDangerousEdit"]
        return bool(rule["health"] == "ok" and rule["state"] == "inactive")

    slack.wait_for(evaluated, timeout=STAGE_TIMEOUT, interval=0.2)
    assert stack.prometheus.alerts() == []
    assert slack.messages(CHANNEL) == []


def test_failing_metric_opens_the_playbook_thread_and_recovery_resolves_it(
    stack: PrometheusStack, metrics: MetricsServer, slack: FakeSlack, bot: BotProcess
) -> None:
    started = time.monotonic()
    wait_until_evaluated_healthy(stack, slack)

    # -- failure: Prometheus fires, Alertmanager notifies the bot, a thread opens --
    metrics.set(METRIC, 1)
    root = slack.wait_for(lambda: slack.roots(CHANNEL), timeout=STAGE_TIMEOUT, interval=0.1)[0]
    header = blocks_text(root)
    assert f"`{PLAYBOOK}`" in header
    assert "CRITICAL: Frenly AI made 1 unvalidated edit(s)" in header  # the rule's summary
    assert "frenly-ai" in header and "triggered" in header

    def playbook_replies() -> list[FakeMessage]:
        return [m for m in slack.thread(CHANNEL, root.ts) if SCALE_TO_ZERO in blocks_text(m)]

    (playbook,) = slack.wait_for(playbook_replies, timeout=STAGE_TIMEOUT, interval=0.1)
    (button,) = [b for b in buttons(playbook) if b["action_id"] == SCALE_TO_ZERO]
    assert json.loads(button["value"]) == {"p": PLAYBOOK, "s": "scale-to-zero", "i": 1}
    intro = [m.text or "" for m in slack.thread(CHANNEL, root.ts)]
    assert any(f"Playbook `{PLAYBOOK}`" in text for text in intro), intro

    # The alert went through Alertmanager with the labels of the shipped rule.
    (alert,) = stack.alertmanager.alerts()
    assert alert["labels"]["alertname"] == "FrenlyAIDangerousEdit"
    assert alert["labels"]["scenario"] == PLAYBOOK
    assert (alert["labels"]["namespace"], alert["labels"]["deployment"]) == ("ai", "frenly-ai")

    # -- recovery: Prometheus resolves, Alertmanager sends it, the thread closes --
    metrics.set(METRIC, 0)

    def resolved_root() -> FakeMessage | None:
        current = slack.message(CHANNEL, root.ts)
        if current is not None and ":white_check_mark: resolved" in blocks_text(current):
            return current
        return None

    slack.wait_for(resolved_root, timeout=STAGE_TIMEOUT, interval=0.1)

    def resolved_replies() -> list[FakeMessage]:
        return [
            m for m in slack.thread(CHANNEL, root.ts) if "All alerts resolved" in (m.text or "")
        ]

    slack.wait_for(resolved_replies, timeout=STAGE_TIMEOUT, interval=0.1)
    time.sleep(1.5)  # a late duplicate notification would show up by now
    assert len(slack.roots(CHANNEL)) == 1
    assert len(resolved_replies()) == 1
    assert len(playbook_replies()) == 1
    assert "0 firing, 1 resolved" in blocks_text(resolved_root() or root)
    assert time.monotonic() - started < 60


# -- the production example ----------------------------------------------------------


def test_example_alertmanager_config_passes_amtool_check_config() -> None:
    amtool = _binary(AMTOOL_NAMES, "prometheus-alertmanager")
    result = subprocess.run(
        [amtool, "check-config", str(EXAMPLE_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_example_alertmanager_config_reaches_the_bot_as_it_expects() -> None:
    config: dict[str, Any] = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    route = config["route"]
    assert route["group_by"] == ["alertname", "service"]
    severities = {m for child in route["routes"] for m in child["matchers"]}
    assert severities == {f'severity="{s}"' for s in ("critical", "warning", "info")}
    receivers = {r["name"]: r for r in config["receivers"]}
    assert {route["receiver"], *(c["receiver"] for c in route["routes"])} <= set(receivers)
    for receiver in receivers.values():
        for webhook in receiver["webhook_configs"]:
            assert webhook["url"].endswith("/webhooks/alertmanager")
            assert webhook["send_resolved"] is True
            auth = webhook["http_config"]["authorization"]
            assert auth["type"] == "Bearer" and auth["credentials_file"]
