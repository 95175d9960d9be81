"""The Slack output of a recovery drill: events in, outbox rows out, on SQLite and PostgreSQL.

A drill's thread opens in the drill channel, says DRILL everywhere and ends
with its scorecard; a real incident in the same database reads as always.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bot.domain.playbooks import load_playbooks
from bot.settings import Settings
from bot.slack.outbox_rows import PRIORITY_DRILL, PRIORITY_REAL
from bot.slack.thread_output import SlackThreadOutput, card_key
from bot.store.models import DrillRun, OutboxMessage, utcnow
from bot.store.repository import Repository
from bot.timeline.events import Kind
from bot.timeline.recorder import Timeline
from tests.unit.slack.drill_support import scorecard
from tests.unit.slack.outbox_support import incident_row

REPO_ROOT = Path(__file__).resolve().parents[3]
PARTICIPANTS = ["U0ALICE", "U0BOB"]


def make(
    engine: sa.Engine, channel: str | None = "C0INCIDENTS", drill_channel: str | None = "C0DRILLS"
) -> tuple[Repository, Timeline]:
    settings = Settings(
        nexus_incident_channel=channel,
        nexus_drill_channel=drill_channel,
        roles={"commander": {"slack": ["U0LEAD"]}, "comms": {"slack": ["S0PRODUCT"]}},
        drills={"participants": PARTICIPANTS},
    )
    playbooks = load_playbooks([REPO_ROOT / "playbooks"], settings.allowed_targets)
    repo = Repository(engine)
    return repo, Timeline([SlackThreadOutput(settings, repo, playbooks)])


def open_incident(repo: Repository, timeline: Timeline, *, drill: bool) -> int:
    with repo.session() as s:
        run_id = None
        if drill:
            now = utcnow()
            run = DrillRun(
                scenario="frenly-ai-edit",
                playbook_id="frenly-ai-dangerous-edit",
                trigger="cli",
                started_by="U0ALICE",
                batch="b1",
                state="running",
                started_at=now,
                deadline_at=now + timedelta(minutes=30),
            )
            s.add(run)
            s.flush()
            run_id = run.id
        incident, how = repo.open_or_reopen(
            s,
            key=f"k-{'drill' if drill else 'real'}",
            source="alertmanager",
            title="Frenly AI <dangerous> edit",
            severity="critical",
            playbook_id="frenly-ai-dangerous-edit",
            labels={"service": "frenly-ai", "namespace": "ai", "deployment": "frenly-ai"},
            roles={"commander": ["U0LEAD"], "tech-lead": [], "comms": ["S0PRODUCT"]},
            drill_run_id=run_id,
        )
        assert how == "created"
        drill_facts = {"drill_run_id": run_id, "drill_scenario": "frenly-ai-edit"} if drill else {}
        timeline.record(
            s,
            incident.id,
            Kind.OPENED,
            "alertmanager",
            playbook_id="frenly-ai-dangerous-edit",
            match="matched by title",
            severity="critical",
            severity_reason="alertname is critical",
            routes=["slack"],
            declared_by=None,
            **drill_facts,
        )
        return incident.id


def play(repo: Repository, timeline: Timeline, number: int, *, drill: bool) -> None:
    """The same run of events in a drill and in a real incident."""
    with repo.session() as s:
        timeline.record(s, number, Kind.ACKNOWLEDGED, "U0ALICE", via="slack")
        timeline.record(s, number, Kind.NOTE_ADDED, "U0BOB", text="looking")
        timeline.record(
            s,
            number,
            Kind.LEVEL_REACHED,
            "nexus-bot",
            level=2,
            role="Engineering lead",
            reason="not resolved after 5m",
            slack=PARTICIPANTS if drill else ["U0LEAD", "S0PRODUCT"],
            email=[],
            pagerduty_level=None,
            notify_pagerduty=not drill,
        )
        timeline.record(
            s,
            number,
            Kind.REMEDIATION_REQUESTED,
            "U0ALICE",
            request_id=7,
            title="Scale Frenly AI to zero",
            action="k8s.scale",
            summary="ai/frenly-ai: 3 → 0 replicas",
            details=["deployment ai/frenly-ai"],
            expires_at=(utcnow() + timedelta(minutes=15)).isoformat(),
            approvers=["U0BOB"],
            requested_by="U0ALICE",
        )
        timeline.record(
            s,
            number,
            Kind.REMEDIATION_DONE,
            "U0BOB",
            request_id=7,
            title="Scale Frenly AI to zero",
            requested_by="U0ALICE",
            approved_by="U0BOB",
            approved_at="10:01:02",
            summary="ai/frenly-ai: 3 → 0 replicas",
            details=[],
            links=[],
            undo_title="Scale Frenly AI back up",
            undoes=None,
            **({"rehearsal": True, "checks": ["dry run accepted"]} if drill else {}),
        )
        timeline.record(
            s,
            number,
            Kind.REMEDIATION_FAILED,
            "U0BOB",
            request_id=8,
            title="Revert the commit",
            requested_by="U0ALICE",
            approved_by="U0BOB",
            outcome="failed",
            message="403 forbidden",
        )


def rows(engine: sa.Engine, number: int) -> list[Any]:
    o = OutboxMessage
    query = sa.select(
        o.method, o.channel, o.coalesce_key, o.payload, o.priority, o.incident_id
    ).where(o.output == "slack", o.incident_id == number)
    with engine.connect() as conn:
        return list(conn.execute(query.order_by(o.id)))


def replies(engine: sa.Engine, number: int) -> list[Any]:
    root = f"incident:{number}:root"
    return [r for r in rows(engine, number) if r.coalesce_key != root]


def test_a_drill_opens_in_the_drill_channel_and_says_drill_everywhere(engine: sa.Engine) -> None:
    repo, timeline = make(engine)
    drill = open_incident(repo, timeline, drill=True)
    real = open_incident(repo, timeline, drill=False)
    play(repo, timeline, drill, drill=True)
    play(repo, timeline, real, drill=False)
    with repo.session() as s:
        timeline.record(s, drill, Kind.DRILL_FINISHED, "nexus-bot", **scorecard(passed=True))

    assert incident_row(engine, drill).slack_channel == "C0DRILLS"
    assert incident_row(engine, real).slack_channel == "C0INCIDENTS"
    drill_rows = rows(engine, drill)
    assert {r.channel for r in drill_rows} == {"C0DRILLS"}
    assert {r.priority for r in drill_rows} == {PRIORITY_DRILL}
    root = drill_rows[0]
    assert root.coalesce_key == f"incident:{drill}:root"
    # The root post (not sent yet) is rendered when sent: it shows the finished drill.
    assert root.payload["text"] == f"Incident #{drill}: 🧪 DRILL — Frenly AI &lt;dangerous&gt; edit"
    output = timeline.outputs[0]
    assert isinstance(output, SlackThreadOutput)
    with engine.connect() as conn:
        rendered = output.render_root(conn, drill)
    assert rendered is not None
    text, blocks = rendered
    assert "🧪 DRILL — Frenly AI &lt;dangerous&gt; edit" in text
    assert text.endswith("— DRILL finished: PASSED")
    assert blocks[0]["text"]["text"].startswith("#")
    assert "🧪 DRILL — Frenly AI <dangerous> edit" in blocks[0]["text"]["text"]
    banner = blocks[1]["elements"][0]["text"]
    assert "This is a recovery drill: nothing real changes" in banner
    assert "DRILL finished: PASSED" in banner
    texts = [r.payload["text"] for r in replies(engine, drill)]
    assert texts and all(t.startswith("DRILL") for t in texts), texts
    assert texts[0].startswith("DRILL · :test_tube: Scenario `frenly-ai-edit`")
    # The playbook's blocks say it too (its text is only the notification).
    assert "DRILL" in replies(engine, drill)[1].payload["blocks"][0]["elements"][0]["text"]
    # A rehearsal changed nothing: no undo button.
    assert not any("remediation.undo" in str(r.payload.get("blocks")) for r in drill_rows)
    scorecard_row = replies(engine, drill)[-1]
    assert scorecard_row.payload["text"].startswith("DRILL scorecard — Frenly AI")
    header = scorecard_row.payload["blocks"][0]["text"]["text"]
    assert header == "DRILL scorecard — Frenly AI <dangerous> edit: PASSED"

    real_rows = rows(engine, real)
    assert {r.channel for r in real_rows} == {"C0INCIDENTS"}
    assert {r.priority for r in real_rows} == {PRIORITY_REAL}
    assert not any("DRILL" in str(r.payload) or "rehears" in str(r.payload) for r in real_rows)
    assert any("remediation.undo" in str(r.payload.get("blocks")) for r in real_rows)


def test_rehearsal_results_and_the_drill_ladder(engine: sa.Engine) -> None:
    repo, timeline = make(engine)
    drill = open_incident(repo, timeline, drill=True)
    real = open_incident(repo, timeline, drill=False)
    play(repo, timeline, drill, drill=True)
    play(repo, timeline, real, drill=False)

    texts = [r.payload["text"] for r in replies(engine, drill)]
    level = next(t for t in texts if "Level 2" in t)
    assert level == (
        "DRILL · :rotating_light: *Level 2 — Engineering lead* (drill ladder): "
        "not resolved after 5m. <@U0ALICE> <@U0BOB>"
    )
    done = next(t for t in texts if "#7" in t and "rehearsed" in t)
    assert done.startswith("DRILL · Remediation #7 (Scale Frenly AI to zero) rehearsed.\n")
    assert ":white_check_mark: Would work: ai/frenly-ai: 3 → 0 replicas" in done
    assert "Checked:\n• dry run accepted" in done
    failed = next(t for t in texts if "#8" in t)
    assert failed == (
        "DRILL · :x: Remediation #8 (Revert the commit) rehearsed. Would NOT work: 403 forbidden"
    )

    real_texts = [r.payload["text"] for r in replies(engine, real)]
    assert (
        ":rotating_light: *Level 2 — Engineering lead*: not resolved after 5m. "
        "<@U0LEAD> <!subteam^S0PRODUCT>"
    ) in real_texts
    assert any(t.startswith("Remediation #7 (Scale Frenly AI to zero) done.\n") for t in real_texts)
    assert ":warning: Remediation #8 (Revert the commit) 403 forbidden" in real_texts


def test_a_drills_approval_card_says_it_is_a_rehearsal(engine: sa.Engine) -> None:
    repo, timeline = make(engine)
    drill = open_incident(repo, timeline, drill=True)
    real = open_incident(repo, timeline, drill=False)
    play(repo, timeline, drill, drill=True)
    play(repo, timeline, real, drill=False)

    def card(number: int) -> Any:
        return next(r for r in rows(engine, number) if r.coalesce_key == card_key(7))

    drill_card = card(drill)
    assert drill_card.payload["text"] == (
        "DRILL · Remediation #7 needs approval (rehearsal): Scale Frenly AI to zero"
    )
    blocks = drill_card.payload["blocks"]
    assert "DRILL — Remediation #7 (rehearsal)" in blocks[0]["text"]["text"]
    assert "*What would happen:*" in blocks[0]["text"]["text"]
    approve = blocks[-1]["elements"][0]
    assert approve["action_id"] == "approval.approve"
    assert approve["text"]["text"] == "Approve (rehearsal — nothing real changes)"
    assert "nothing real changes" in approve["confirm"]["text"]["text"]

    real_approve = card(real).payload["blocks"][-1]["elements"][0]
    assert real_approve["text"]["text"] == "Approve" and "confirm" not in real_approve
    assert "rehearsal" not in str(card(real).payload)


def test_a_drill_falls_back_to_the_incident_channel(engine: sa.Engine) -> None:
    repo, timeline = make(engine, drill_channel=None)
    drill = open_incident(repo, timeline, drill=True)
    assert {r.channel for r in rows(engine, drill)} == {"C0INCIDENTS"}


def test_without_any_channel_a_drill_opens_no_thread(engine: sa.Engine) -> None:
    repo, timeline = make(engine, channel=None, drill_channel=None)
    drill = open_incident(repo, timeline, drill=True)
    play(repo, timeline, drill, drill=True)
    assert rows(engine, drill) == []


def test_only_the_drill_channel_configured_is_enough_for_a_drill(engine: sa.Engine) -> None:
    repo, timeline = make(engine, channel=None)
    drill = open_incident(repo, timeline, drill=True)
    real = open_incident(repo, timeline, drill=False)
    assert {r.channel for r in rows(engine, drill)} == {"C0DRILLS"}
    assert rows(engine, real) == []
