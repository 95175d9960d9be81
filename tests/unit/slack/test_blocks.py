"""Block Kit for incident threads: within Slack's limits, escaped, buttons Slack accepts."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bot.domain.alerts import Alert, AlertSource, parse_alertmanager
from bot.domain.playbooks import (
    LoadedPlaybooks,
    Playbook,
    RiskLevel,
    RollbackStep,
    plan_playbook,
)
from bot.settings import AllowedTargets
from bot.slack.blocks import (
    ACTION_ACKNOWLEDGE,
    ACTION_RESOLVE,
    IncidentView,
    escape,
    playbook_blocks,
    root_blocks,
    root_text,
    to_json,
)
from tests.support.shipped import read_payload, shipped_allowed_targets, shipped_playbooks

Payload = Callable[[str], Any]
HOSTILE = "<!channel> ping <@U123> & <!here|here> <https://evil.example|click>"


# The shipped configuration, as tests/unit/domain/conftest.py offers it.
@pytest.fixture(scope="module")
def shipped_allowed() -> AllowedTargets:
    return shipped_allowed_targets()


@pytest.fixture(scope="module")
def shipped(shipped_allowed: AllowedTargets) -> LoadedPlaybooks:
    return shipped_playbooks(shipped_allowed)


@pytest.fixture(scope="module")
def payload() -> Payload:
    return read_payload


def view(**changes: Any) -> IncidentView:
    base: dict[str, Any] = {
        "title": "Schema mismatch: orders-api rejects SSOT anchor v37",
        "severity": "critical",
        "status": "triggered",
        "playbook_id": "schema-mismatch",
        "playbook_title": "Schema mismatch causing runtime errors",
        "number": 42,
        "service": "orders-api",
        "escalation_role": "Team lead",
        "pagerduty_url": "https://nexus.pagerduty.com/incidents/Q1NEXUS7SCHEMA",
        "firing": 2,
        "resolved": 1,
    }
    return IncidentView(**{**base, **changes})


def texts(node: Any) -> Iterator[dict[str, Any]]:
    """Every text object in serialised blocks."""
    if isinstance(node, dict):
        if node.get("type") in ("mrkdwn", "plain_text") and "text" in node:
            yield node
        for value in node.values():
            yield from texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from texts(item)


def buttons(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if node.get("type") == "button":
            yield node
        for value in node.values():
            yield from buttons(value)
    elif isinstance(node, list):
        for item in node:
            yield from buttons(item)


def assert_within_slack_limits(blocks: list[dict[str, Any]]) -> None:
    assert 0 < len(blocks) <= 50
    json.dumps(blocks)  # plain JSON, nothing exotic
    for block in blocks:
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text"
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "section":
            if "text" in block:
                assert len(block["text"]["text"]) <= 3000
            for field in block.get("fields", []):
                assert len(field["text"]) <= 2000
            assert len(block.get("fields", [])) <= 10
        if block["type"] == "actions":
            assert len(block["elements"]) <= 25
        if block["type"] == "context":
            assert len(block["elements"]) <= 10
        assert len(block.get("block_id", "")) <= 255
    for button in buttons(blocks):
        assert len(button["text"]["text"]) <= 75
        assert len(button["action_id"]) <= 255
        assert len(button.get("value", "")) <= 2000


def assert_no_live_mentions(blocks: list[dict[str, Any]]) -> None:
    for text in texts(blocks):
        if text["type"] == "mrkdwn":
            assert "<!" not in text["text"], text
            assert "<@" not in text["text"], text


# --- root message -------------------------------------------------------------


def test_root_blocks() -> None:
    blocks = to_json(root_blocks(view()))
    assert_within_slack_limits(blocks)
    assert [b["type"] for b in blocks] == ["header", "section", "actions"]
    assert blocks[0]["text"]["text"] == (
        "#42 CRITICAL: Schema mismatch: orders-api rejects SSOT anchor v37"
    )
    fields = [f["text"] for f in blocks[1]["fields"]]
    assert fields == [
        "*Severity*\n:red_circle: critical",
        "*Status*\n:rotating_light: triggered",
        "*Service*\norders-api",
        "*Escalation*\nLevel 1 — Team lead",
        "*Playbook*\n`schema-mismatch` Schema mismatch causing runtime errors",
        "*PagerDuty*\n<https://nexus.pagerduty.com/incidents/Q1NEXUS7SCHEMA|open incident>",
        "*Alerts*\n2 firing, 1 resolved",
    ]
    ack, resolve = blocks[2]["elements"]
    assert (ack["action_id"], resolve["action_id"]) == (ACTION_ACKNOWLEDGE, ACTION_RESOLVE)
    assert json.loads(ack["value"]) == {"i": 42}


def test_acknowledged_shows_only_resolve_and_resolved_shows_no_buttons() -> None:
    acknowledged = to_json(root_blocks(view(status="acknowledged")))
    assert [b["action_id"] for b in buttons(acknowledged)] == [ACTION_RESOLVE]
    resolved = to_json(root_blocks(view(status="resolved")))
    assert list(buttons(resolved)) == []
    assert "*Status*\n:white_check_mark: resolved" in [f["text"] for f in resolved[1]["fields"]]


def test_minimal_root_view() -> None:
    blocks = to_json(
        root_blocks(
            IncidentView(
                title="t",
                severity="info",
                status="triggered",
                playbook_id="generic-triage",
                playbook_title="Generic triage",
            )
        )
    )
    assert_within_slack_limits(blocks)
    assert blocks[0]["text"]["text"] == "INFO: t"
    fields = [f["text"] for f in blocks[1]["fields"]]
    assert "*Service*\nunknown" in fields
    assert "*Escalation*\nLevel 1" in fields
    assert not any(f.startswith(("*PagerDuty*", "*Alerts*")) for f in fields)
    assert json.loads(next(buttons(blocks))["value"]) == {}


def test_hostile_title_and_service_are_escaped() -> None:
    v = view(title=HOSTILE, service=HOSTILE, escalation_role=HOSTILE, playbook_title=HOSTILE)
    blocks = to_json(root_blocks(v))
    assert_within_slack_limits(blocks)
    assert_no_live_mentions(blocks)
    # The header is plain text, where Slack does not expand mentions.
    assert blocks[0]["text"]["type"] == "plain_text"
    fields = [f["text"] for f in blocks[1]["fields"]]
    assert f"*Service*\n{escape(HOSTILE)}" in fields
    assert "&lt;!channel&gt; ping &lt;@U123&gt; &amp;" in fields[2]


def test_root_text_is_escaped() -> None:
    text = root_text(view(title=HOSTILE))
    assert text.startswith("CRITICAL triggered: &lt;!channel&gt; ping &lt;@U123&gt;")
    assert "<!" not in text and "<@" not in text
    assert len(root_text(view(title="x" * 5000))) == 300


def test_pagerduty_url_cannot_break_out_of_its_link() -> None:
    blocks = to_json(root_blocks(view(pagerduty_url="https://x.example/a>b|c<d")))
    field = next(f["text"] for f in blocks[1]["fields"] if f["text"].startswith("*PagerDuty*"))
    assert field == "*PagerDuty*\n<https://x.example/a%3Eb%7Cc%3Cd|open incident>"


def test_enormous_root_values_stay_within_limits() -> None:
    huge = "<!channel>" * 2000
    blocks = to_json(
        root_blocks(view(title=huge, service=huge, playbook_title=huge, escalation_role=huge))
    )
    assert_within_slack_limits(blocks)
    assert blocks[0]["text"]["text"].endswith("…")


# --- playbook thread ----------------------------------------------------------


def test_playbook_blocks_for_the_frenly_sample(
    shipped: LoadedPlaybooks, shipped_allowed: AllowedTargets, payload: Payload
) -> None:
    (alert,) = parse_alertmanager(payload("alertmanager-frenly-ai.json"))
    playbook = shipped.get("frenly-ai-dangerous-edit")
    assert playbook is not None
    steps = plan_playbook(playbook, alert, shipped_allowed)
    blocks = to_json(playbook_blocks(playbook, steps, incident_number=7))
    assert_within_slack_limits(blocks)
    assert blocks[0]["text"]["text"] == "Playbook: Frenly AI proposing dangerous automated edits"
    body = "\n".join(t["text"] for t in texts(blocks))
    assert "Emergency rollback (critical issues)" in body
    assert "*Immediate response* (0–5 min)" in body
    assert "*Recovery* (15–60 min)" in body
    assert "*Risk* HIGH · *Probability* Low · *Impact* Critical" in body
    found = list(buttons(blocks))
    # close-pr and scale-to-zero are runnable; revert-ai-commit has no commit yet but can
    # still be requested (the bot asks for it).
    assert [b["action_id"] for b in found] == [
        "remediation.request.close-pr",
        "remediation.request.revert-ai-commit",
        "remediation.request.scale-to-zero",
    ]
    for button in found:
        assert button["action_id"].startswith("remediation.request")
        value = json.loads(button["value"])
        assert value["p"] == "frenly-ai-dangerous-edit"
        assert value["i"] == 7
        assert button["action_id"] == f"remediation.request.{value['s']}"
    assert "_You will be asked for: commit_" in body


def test_refused_steps_have_no_button(
    shipped: LoadedPlaybooks, shipped_allowed: AllowedTargets
) -> None:
    playbook = shipped.get("frenly-ai-dangerous-edit")
    assert playbook is not None
    alert = Alert(
        source=AlertSource.ALERTMANAGER,
        fingerprint="f",
        title="t",
        labels={"pr": "1", "commit": "9fceb02", "deployment": "evil", "repo": "attacker/ssot"},
    )
    blocks = to_json(playbook_blocks(playbook, plan_playbook(playbook, alert, shipped_allowed)))
    assert list(buttons(blocks)) == []
    body = "\n".join(t["text"] for t in texts(blocks))
    assert ":no_entry: Refused: deployment ai/evil is not allow-listed" in body
    assert "Refused: repository attacker/ssot is not allow-listed" in body


def test_manual_steps_show_commands_and_what_to_fill_in(
    shipped: LoadedPlaybooks, shipped_allowed: AllowedTargets
) -> None:
    playbook = Playbook(
        id="by-hand",
        title="By hand",
        risk_level=RiskLevel.HIGH,
        probability="Low",
        impact="Critical",
        description="d",
        rollback=[
            RollbackStep(
                id="database-rollback",
                title="Database rollback",
                manual="kubectl exec -it {{ postgres_pod }} -- psql -U {{ db_user }} "
                "-d {{ database }} -f /backup/rollback.sql",
                note="The bot never runs SQL against production; a human decides.",
            )
        ],
    )
    alert = Alert(source=AlertSource.GENERIC, fingerprint="f", title="t", labels={"db_user": "x"})
    blocks = to_json(playbook_blocks(playbook, plan_playbook(playbook, alert, shipped_allowed)))
    body = "\n".join(t["text"] for t in texts(blocks))
    assert "```kubectl exec -it &lt;postgres_pod&gt; -- psql -U x -d &lt;database&gt;" in body
    assert "_Fill in: postgres_pod, database_" in body
    assert "_The bot never runs SQL against production" in body


def _big_playbook(step_count: int, text: str = "step") -> Playbook:
    return Playbook(
        id="big-playbook",
        title=f"Big {text}",
        risk_level=RiskLevel.HIGH,
        probability="Low",
        impact="Critical",
        description=f"{text} " * 500,
        mitigations=[f"{text} {i}" for i in range(100)],
        rollback=[
            RollbackStep(
                id=f"step-{i}",
                title=f"{text} {i}"[:150],
                action="k8s.scale",
                params={"namespace": "ai", "deployment": "frenly-ai", "replicas": i},
                note=text[:500],
            )
            for i in range(step_count)
        ],
    )


def test_sixty_steps_stay_within_fifty_blocks(shipped_allowed: AllowedTargets) -> None:
    playbook = _big_playbook(60)
    alert = Alert(source=AlertSource.GENERIC, fingerprint="f", title="t")
    blocks = to_json(
        playbook_blocks(playbook, plan_playbook(playbook, alert, shipped_allowed), 10**9)
    )
    assert len(blocks) == 50
    assert_within_slack_limits(blocks)
    assert blocks[-1]["type"] == "context"
    assert blocks[-1]["elements"][0]["text"] == "…more steps in the playbook file"
    for button in buttons(blocks):
        assert len(json.loads(button["value"])) == 3


def test_hostile_playbook_text_is_escaped_and_clipped(shipped_allowed: AllowedTargets) -> None:
    playbook = _big_playbook(3, HOSTILE)
    alert = Alert(source=AlertSource.GENERIC, fingerprint="f", title="t")
    blocks = to_json(playbook_blocks(playbook, plan_playbook(playbook, alert, shipped_allowed)))
    assert_within_slack_limits(blocks)
    assert_no_live_mentions(blocks)


@pytest.mark.parametrize("severity", ["critical", "warning", "info", "unknown"])
def test_every_severity_renders(severity: str) -> None:
    blocks = to_json(root_blocks(view(severity=severity)))
    assert_within_slack_limits(blocks)
    assert blocks[0]["text"]["text"].startswith(f"#42 {severity.upper()}: ")
