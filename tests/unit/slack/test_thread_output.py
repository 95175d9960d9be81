"""The Slack output: timeline events in, outbox rows out, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bot.domain.playbooks import load_playbooks
from bot.settings import Settings
from bot.slack.thread_output import SlackThreadOutput, card_key
from bot.store.communication import record_public_update
from bot.store.models import OutboxMessage, utcnow
from bot.store.repository import Repository
from bot.timeline.events import Kind
from bot.timeline.recorder import Timeline

REPO_ROOT = Path(__file__).resolve().parents[3]


def make(engine: sa.Engine, channel: str | None = "C0INCIDENTS") -> tuple[Repository, Timeline]:
    settings = Settings(
        nexus_incident_channel=channel,
        roles={"commander": {"slack": ["U0LEAD"]}, "comms": {"slack": ["S0PRODUCT"]}},
    )
    playbooks = load_playbooks([REPO_ROOT / "playbooks"], settings.allowed_targets)
    repo = Repository(engine)
    return repo, Timeline([SlackThreadOutput(settings, repo, playbooks)])


def open_incident(repo: Repository, timeline: Timeline) -> int:
    with repo.session() as s:
        incident, how = repo.open_or_reopen(
            s,
            key="k1",
            source="alertmanager",
            title="Frenly AI <dangerous> edit",
            severity="critical",
            playbook_id="frenly-ai-dangerous-edit",
            labels={"service": "frenly-ai", "namespace": "ai", "deployment": "frenly-ai"},
            roles={"commander": ["U0LEAD"], "tech-lead": [], "comms": ["S0PRODUCT"]},
        )
        assert how == "created"
        timeline.record(
            s,
            incident.id,
            Kind.OPENED,
            "alertmanager",
            playbook_id="frenly-ai-dangerous-edit",
            match="matched by title",
            severity="critical",
            severity_reason="alertname is critical",
            routes=["pagerduty", "slack", "email"],
            declared_by=None,
        )
        return incident.id


def rows(engine: sa.Engine) -> list[Any]:
    query = sa.select(
        OutboxMessage.method, OutboxMessage.coalesce_key, OutboxMessage.payload
    ).where(OutboxMessage.output == "slack")
    with engine.connect() as conn:
        return list(conn.execute(query.order_by(OutboxMessage.id)))


def as_sent(engine: sa.Engine, timeline: Timeline, row: Any, incident_id: int) -> dict[str, Any]:
    """A root row's payload as the delivery worker sends it: rendered then (`RENDER_ROOT`)."""
    payload = dict(row.payload)
    if payload.pop("render", None) == "root":
        output = timeline.outputs[0]
        assert isinstance(output, SlackThreadOutput)
        with engine.connect() as conn:
            rendered = output.render_root(conn, incident_id)
        assert rendered is not None
        payload["text"], payload["blocks"] = rendered
    return payload


def test_opened_posts_root_intro_and_playbook_once(engine: sa.Engine) -> None:
    repo, timeline = make(engine)
    number = open_incident(repo, timeline)
    posted = rows(engine)
    assert [r.coalesce_key for r in posted] == [f"incident:{number}:root", None, None]
    # The root is rendered when sent; enqueued, it holds only the fallback text.
    assert posted[0].payload == {
        "text": f"Incident #{number}: Frenly AI &lt;dangerous&gt; edit",
        "render": "root",
    }
    root = as_sent(engine, timeline, posted[0], number)
    root_blocks = str(root["blocks"])
    assert "Incident Commander" in root_blocks and "<@U0LEAD>" in root_blocks
    assert "<!subteam^S0PRODUCT>" in root_blocks and "_unassigned_" in root_blocks
    assert "&lt;dangerous&gt;" in root["text"]
    assert posted[1].payload["text"].startswith("Playbook `frenly-ai-dangerous-edit`")
    assert "remediation.request.scale-to-zero" in str(posted[2].payload["blocks"])
    # A second `opened` (another replica) finds the thread claimed: nothing more.
    with repo.session() as s:
        timeline.record(s, number, Kind.OPENED, "alertmanager", routes=[])
    assert len(rows(engine)) == 3


def test_without_a_channel_nothing_is_enqueued(engine: sa.Engine) -> None:
    repo, timeline = make(engine, channel=None)
    number = open_incident(repo, timeline)
    with repo.session() as s:
        timeline.record(s, number, Kind.NOTE_ADDED, "U0BOB", text="hello")
    assert rows(engine) == []


def test_replies_escape_outside_text_and_edit_the_root(engine: sa.Engine) -> None:
    repo, timeline = make(engine)
    number = open_incident(repo, timeline)
    with repo.session() as s:
        timeline.record(
            s,
            number,
            Kind.PAGERDUTY_NOTE,
            "pagerduty",
            event_type="incident.annotated",
            agent="<!channel> Mallory",
            content="*bold* <https://evil|click>",
        )
        # The root renders the incident's state, which the service sets with the event.
        record_public_update(s, number, "identified", utcnow())
        timeline.record(
            s, number, Kind.UPDATE_POSTED, "U0PM", status="identified", text="v37 <reverted>"
        )
        timeline.record(s, number, Kind.ACKNOWLEDGED, "pagerduty", via="pagerduty", agent="Eve")
    texts = [r.payload["text"] for r in rows(engine) if r.method == "chat.postMessage"]
    annotated = next(t for t in texts if "Note from" in t)
    assert "<!channel>" not in annotated and "&lt;!channel&gt; Mallory" in annotated
    assert "&lt;https://evil|click&gt;" in annotated
    update = next(t for t in texts if "Public update" in t)
    assert update.startswith(":mega: *Public update — Identified* (by <@U0PM>")
    assert "v37 &lt;reverted&gt;" in update
    assert ":eyes: Acknowledged in PagerDuty by Eve." in texts
    # Root edits coalesce into the root post not yet sent: it shows the newest state.
    keyed = [r.coalesce_key for r in rows(engine) if r.coalesce_key]
    assert keyed == [f"incident:{number}:root"]
    root = next(r for r in rows(engine) if r.coalesce_key == f"incident:{number}:root")
    assert "*Public status*\\nIdentified" in str(as_sent(engine, timeline, root, number)["blocks"])


def test_a_request_posts_a_keyed_card_and_its_expiry_edits_it(engine: sa.Engine) -> None:
    repo, timeline = make(engine)
    number = open_incident(repo, timeline)
    with repo.session() as s:
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
            Kind.REMEDIATION_EXPIRED,
            "nexus-bot",
            request_id=7,
            title="Scale Frenly AI to zero",
            requested_by="U0ALICE",
        )
    posted = rows(engine)
    card = next(r for r in posted if r.coalesce_key == card_key(7))
    assert "approval.approve" in str(card.payload["blocks"])
    edit = next(r for r in posted if r.coalesce_key == f"edit:{card_key(7)}")
    assert edit.method == "chat.update"
    assert "expired" in str(edit.payload["blocks"])
    assert "approval.approve" not in str(edit.payload["blocks"])
    assert any("expired: nobody approved it in time" in r.payload["text"] for r in posted)


def test_a_rejected_api_delivery_is_said_with_its_error(engine: sa.Engine) -> None:
    repo, timeline = make(engine)
    number = open_incident(repo, timeline)
    with repo.session() as s:
        timeline.record(
            s,
            number,
            Kind.DELIVERY_PROBLEM,
            "nexus-bot",
            output="statuspage",
            problem="rejected",
            what="Statuspage update of incident #1 (investigating)",
            error="422 <name> is required",
        )
    texts = [r.payload["text"] for r in rows(engine) if r.method == "chat.postMessage"]
    assert (
        ":warning: statuspage: Statuspage update of incident #1 (investigating) was rejected "
        "and will not be retried: 422 &lt;name&gt; is required"
    ) in texts


def test_a_resolved_critical_incident_says_where_its_review_is(engine: sa.Engine) -> None:
    repo, timeline = make(engine)
    number = open_incident(repo, timeline)
    with repo.session() as s:
        timeline.record(s, number, Kind.RESOLVED, "U0LEAD", reason="manual", via="slack")
    texts = [r.payload["text"] for r in rows(engine) if r.method == "chat.postMessage"]
    resolved = next(t for t in texts if t.startswith(":white_check_mark: Resolved by <@U0LEAD>."))
    assert f"`nexus-bot review {number}` prints the draft" in resolved
