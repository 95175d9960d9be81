"""Incident use cases on the composed core, on real SQLite and PostgreSQL.

Each use case is one transaction that writes the state change, its timeline
events and the deliveries the outputs enqueue for them; these tests read all
three back from the database.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bot.core import Core, build_core
from bot.domain.alerts import Alert, AlertSource
from bot.domain.playbooks import load_playbooks
from bot.settings import Settings
from bot.store.models import Incident, OutboxMessage, utcnow
from bot.timeline.recorder import read_timeline

REPO_ROOT = Path(__file__).resolve().parents[3]


def make_core(engine: sa.Engine, **overrides: Any) -> Core:
    settings = Settings(
        nexus_incident_channel="C0INCIDENTS",
        smtp_url="smtp://127.0.0.1:9",
        roles={
            "commander": {"slack": ["U0LEAD"], "email": ["lead@nexus.test"]},
            "comms": {"slack": ["U0PM"]},
            "stakeholders": {"email": ["leads@nexus.test"]},
        },
        **overrides,
    )
    playbooks = load_playbooks([REPO_ROOT / "playbooks"], settings.allowed_targets)
    return build_core(settings, engine, playbooks)


def critical(fingerprint: str = "fp-1", status: str = "firing") -> Alert:
    return Alert(
        source=AlertSource.GENERIC,
        fingerprint=fingerprint,
        title="SSOT sync failed",
        labels={"severity": "critical", "service": "ssot"},
        group_key="ssot-sync",
        status=status,
    )


def kinds(core: Core, number: int) -> list[str]:
    with core.repo.session() as s:
        return [e.kind for e in read_timeline(s, number)]


def slack_texts(engine: sa.Engine) -> list[str]:
    query = sa.select(OutboxMessage.payload).where(OutboxMessage.output == "slack")
    with engine.connect() as conn:
        return [
            str(p.get("text", "")) for p in conn.execute(query.order_by(OutboxMessage.id)).scalars()
        ]


def test_a_new_incident_gets_the_default_roles_and_one_opened_event(engine: sa.Engine) -> None:
    core = make_core(engine)
    number = core.incidents.ingest_alerts([critical()]).incidents[0]
    incident = core.repo.get_incident(number)
    assert incident is not None
    assert incident.roles == {
        "commander": ["U0LEAD"],
        "tech-lead": [],
        "comms": ["U0PM"],
        "stakeholders": [],
    }
    assert kinds(core, number) == ["opened", "level.reached"]
    # The same batch again: an alerts.added event, no second opening.
    core.incidents.ingest_alerts([critical()])
    assert kinds(core, number) == ["opened", "level.reached", "alerts.added"]
    texts = slack_texts(engine)
    assert sum("Playbook:" in t for t in texts) == 1


def test_roles_are_reassigned_once_and_unknown_roles_refused(engine: sa.Engine) -> None:
    core = make_core(engine)
    number = core.incidents.ingest_alerts([critical()]).incidents[0]
    assert core.incidents.assign_role(number, "comms", ["U0NEWPM"], "U0ALICE").changed
    again = core.incidents.assign_role(number, "comms", ["U0NEWPM"], "U0ALICE")
    assert not again.changed and again.message == "Nothing changed."
    refused = core.incidents.assign_role(number, "stakeholders", ["U0X"], "U0ALICE")
    assert not refused.changed and "Unknown role" in refused.message
    assert "There is no incident #999" in core.incidents.assign_role(999, "comms", [], "U").message
    with core.repo.session() as s:
        events = [e for e in read_timeline(s, number) if e.kind == "role.assigned"]
    assert len(events) == 1
    assert dict(events[0].facts) == {"role": "comms", "holders": ["U0NEWPM"], "previous": ["U0PM"]}
    assert any("made <@U0NEWPM> *Communications*" in t for t in slack_texts(engine))


def test_a_public_update_is_public_emailed_and_resolved_resolves(engine: sa.Engine) -> None:
    core = make_core(engine)
    number = core.incidents.ingest_alerts([critical()]).incidents[0]
    assert core.incidents.post_update(number, "identified", "Bad anchor v37", "U0PM").changed
    assert not core.incidents.post_update(number, "fixed", "x", "U0PM").changed
    assert not core.incidents.post_update(number, "monitoring", "  ", "U0PM").changed
    assert core.incidents.post_update(number, "resolved", "All good", "U0PM").changed
    incident = core.repo.get_incident(number)
    assert incident is not None
    assert (incident.status, incident.public_status) == ("resolved", "resolved")
    with core.repo.session() as s:
        events = read_timeline(s, number)
    assert [e.kind for e in events][-3:] == ["update.posted", "update.posted", "resolved"]
    assert [e.public for e in events if e.kind == "update.posted"] == [True, True]
    with engine.connect() as conn:
        emails = conn.execute(
            sa.select(OutboxMessage.payload).where(OutboxMessage.output == "email")
        ).scalars()
        recipients = [sorted(p["to"]) for p in emails]
    # One message per update, to the union of the roles' addresses; not per alert.
    assert recipients == [["lead@nexus.test", "leads@nexus.test"]] * 2


def test_a_note_is_internal(engine: sa.Engine) -> None:
    core = make_core(engine)
    number = core.incidents.ingest_alerts([critical()]).incidents[0]
    assert core.incidents.add_note(number, "looked at the <b>logs</b>", "U0BOB").changed
    with core.repo.session() as s:
        note = next(e for e in read_timeline(s, number) if e.kind == "note.added")
    assert note.public is False
    assert any("&lt;b&gt;logs&lt;/b&gt;" in t for t in slack_texts(engine))


def test_all_alerts_resolved_then_firing_again_reopens(engine: sa.Engine) -> None:
    core = make_core(engine)
    number = core.incidents.ingest_alerts([critical()]).incidents[0]
    core.incidents.ingest_alerts([critical(status="resolved")])
    assert core.repo.get_incident(number).status == "resolved"  # type: ignore[union-attr]
    core.incidents.ingest_alerts([critical()])
    assert core.repo.get_incident(number).status == "triggered"  # type: ignore[union-attr]
    assert kinds(core, number)[-3:] == ["resolved", "reopened", "level.reached"]
    assert any("*Reopened*" in t for t in slack_texts(engine))


def test_update_reminders_once_per_interval_across_two_replicas(engine: sa.Engine) -> None:
    replicas = [make_core(engine, updates={"remind_after": "30s"}) for _ in range(2)]
    number = replicas[0].incidents.ingest_alerts([critical()]).incidents[0]
    assert sum(core.incidents.remind_updates() for core in replicas) == 0  # not yet due
    with engine.begin() as conn:
        conn.execute(
            sa.update(Incident)
            .where(Incident.id == number)
            .values(created_at=utcnow() - timedelta(minutes=1))
        )
    assert sum(core.incidents.remind_updates() for core in replicas) == 1
    assert sum(core.incidents.remind_updates() for core in replicas) == 0  # same interval
    reminders = [t for t in slack_texts(engine) if ":alarm_clock:" in t]
    assert len(reminders) == 1 and "<@U0PM>" in reminders[0]
    # A public update restarts the clock; warning incidents are never reminded.
    replicas[1].incidents.post_update(number, "investigating", "Looking", "U0PM")
    assert sum(core.incidents.remind_updates() for core in replicas) == 0


def test_delivery_problems_are_reported_once_per_address(engine: sa.Engine) -> None:
    core = make_core(engine)
    number = core.incidents.ingest_alerts([critical()]).incidents[0]
    report = {"output": "email", "problem": "refused", "what": "update", "recipients": {}}
    with core.repo.session() as s:
        gone = {**report, "recipients": {"gone@nexus.test": "550 No such user"}}
        core.report_delivery_problem(s, number, "email", gone)
        core.report_delivery_problem(s, number, "email", gone)  # the next update bounces too
        both = {"gone@nexus.test": "550 No such user", "left@nexus.test": "550 Gone"}
        core.report_delivery_problem(s, number, "email", {**report, "recipients": both})
        core.report_delivery_problem(s, None, "email", gone)  # no incident: nowhere to say it
    with core.repo.session() as s:
        problems = [e for e in read_timeline(s, number) if e.kind == "delivery.problem"]
    assert [sorted(p.fact("recipients")) for p in problems] == [
        ["gone@nexus.test"],
        ["left@nexus.test"],
    ]
    warnings = [t for t in slack_texts(engine) if "was refused" in t]
    assert len(warnings) == 2 and "gone@nexus.test (550 No such user)" in warnings[0]
    assert json.dumps(problems[0].facts)  # facts stay JSON
