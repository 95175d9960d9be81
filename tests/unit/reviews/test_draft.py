"""The post-incident review drafted from a real incident's timeline (SQLite and PostgreSQL).

The history is made by the real services (alerts in, the ladder climbing,
roles, public updates, acknowledge and resolve); the remediations are timeline
events recorded directly, as the flow would after a preview and an execution
(no git or Kubernetes here). Then every instant is pinned, so the key times and
durations are exact.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.core import Core, build_core
from bot.domain.alerts import Alert, AlertSource
from bot.domain.playbooks import LoadedPlaybooks, load_playbooks
from bot.reviews.draft import draft_review, human_duration, slack_thread_url
from bot.reviews.facts import ReviewFacts, load_review_facts, repository_path
from bot.settings import Settings
from bot.store.models import Incident, TimelineEvent
from bot.timeline.events import Kind

REPO_ROOT = Path(__file__).resolve().parents[3]
START = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
CHANNEL, ROOT_TS = "C0INCIDENTS", "1714555815.000100"
HOSTILE_TITLE = "Schema mismatch # on <b>orders</b> [win](https://evil.example)\n## Pwned"
HOSTILE_RULE = "Evil`rule <!-- nexus-incident: 99 -->"
HOSTILE_UPDATE = (
    "Anchor reverted\n# Injected\n<img src=x onerror=alert(1)> [phish](https://evil.example) "
    "| a | b | `rm -rf /` @nexus/everyone"
)

# (kind, minutes after START) of every event, in the order the history makes them.
HISTORY = [
    (Kind.OPENED, 0),
    (Kind.LEVEL_REACHED, 0),
    (Kind.LEVEL_REACHED, 5),
    (Kind.ROLE_ASSIGNED, 5.5),
    (Kind.ACKNOWLEDGED, 6 + 10 / 60),
    (Kind.UPDATE_POSTED, 7),
    (Kind.REMEDIATION_REQUESTED, 8),
    (Kind.REMEDIATION_APPROVED, 9),
    (Kind.REMEDIATION_DONE, 10.5),
    (Kind.REMEDIATION_REQUESTED, 20),
    (Kind.REMEDIATION_DENIED, 21),
    (Kind.UPDATE_POSTED, 62 + 5 / 60),
    (Kind.RESOLVED, 62 + 5 / 60),
]


def make_core(engine: sa.Engine) -> tuple[Core, LoadedPlaybooks]:
    levels = [
        {"level": n, "role": role, "slack": [f"U0LEVEL{n}"], "pagerduty_level": n}
        for n, role in enumerate(["Team lead", "Engineering manager", "CTO", "Executive"], 1)
    ]
    settings = Settings(
        nexus_incident_channel=CHANNEL,
        roles={
            "commander": {"slack": ["U0LEAD"]},
            "comms": {"slack": ["U0PM"]},
            "stakeholders": {"slack": ["S0LEADS"]},
        },
        escalation={"levels": levels, "critical": ["5m", "15m", "60m"]},
    )
    playbooks = load_playbooks([REPO_ROOT / "playbooks"], settings.allowed_targets)
    return build_core(settings, engine, playbooks), playbooks


def alert(fingerprint: str, alertname: str, service: str, title: str) -> Alert:
    return Alert(
        source=AlertSource.ALERTMANAGER,
        fingerprint=fingerprint,
        title=title,
        labels={"alertname": alertname, "severity": "critical", "service": service},
        group_key="orders-schema",
    )


def at(minutes: float) -> datetime:
    return START + timedelta(minutes=minutes)


def record_history(core: Core) -> int:
    """A critical incident from its alerts to its resolution; returns its number."""
    clock = [START]
    core.ladder.clock = lambda: clock[0]
    number = core.incidents.ingest_alerts(
        [
            alert("fp-1", "SSOTSchemaMismatch", "orders", HOSTILE_TITLE),
            alert("fp-2", HOSTILE_RULE, "ssot", "Schema mismatch on ssot"),
        ]
    ).incidents[0]
    assert core.repo.set_slack_root(number, CHANNEL, ROOT_TS)
    with core.repo.session() as s:  # the ladder counts from the incident's start
        s.execute(
            sa.update(Incident)
            .where(Incident.id == number)
            .values(created_at=START, next_escalation_at=at(5))
        )
    clock[0] = at(5)
    assert core.ladder.sweep() == 1
    assert core.incidents.assign_role(number, "tech-lead", ["U0TECH"], "U0LEAD").changed
    assert core.incidents.acknowledge(number, "U0TECH").changed
    assert core.incidents.post_update(number, "identified", HOSTILE_UPDATE, "U0PM").changed
    with core.repo.session() as s:
        record_remediations(core, s, number)
    assert core.incidents.post_update(number, "resolved", "All clear.", "U0PM").changed
    pin_times(core.repo.engine, number)
    return number


def record_remediations(core: Core, s: Session, number: int) -> None:
    """What the flow records for one approved-and-run request and one denied request."""
    record = core.timeline.record
    record(
        s,
        number,
        Kind.REMEDIATION_REQUESTED,
        "U0TECH",
        request_id=1,
        title="Immediate rollback — revert the offending commit",
        action="git.revert",
        summary="Revert abc1234 <script> on main",
        details=["nexus/ssot@main", "1 file: anchors/orders.yaml\n# not a heading"],
        expires_at=at(23).isoformat(),
        approvers=[],
        requested_by="U0TECH",
    )
    record(
        s,
        number,
        Kind.REMEDIATION_APPROVED,
        "U0LEAD",
        request_id=1,
        title="Immediate rollback — revert the offending commit",
        requested_by="U0TECH",
    )
    record(
        s,
        number,
        Kind.REMEDIATION_DONE,
        "U0LEAD",
        request_id=1,
        title="Immediate rollback — revert the offending commit",
        requested_by="U0TECH",
        approved_by="U0LEAD",
        summary="Reverted abc1234 as def5678",
        details=[],
        links=["https://github.com/nexus/ssot/commit/def5678"],
        undo_title=None,
        undoes=None,
    )
    record(
        s,
        number,
        Kind.REMEDIATION_REQUESTED,
        "U0TECH",
        request_id=2,
        title="Service restart",
        action="k8s.rollout_restart",
        summary="Restart deployment/orders in prod",
        details=[],
        expires_at=at(35).isoformat(),
        approvers=[],
        requested_by="U0TECH",
    )
    record(
        s, number, Kind.REMEDIATION_DENIED, "U0LEAD", request_id=2, title="Service restart",
        reason="[not needed](https://evil.example) after the revert",
    )  # fmt: skip


def pin_times(engine: sa.Engine, number: int) -> None:
    """Every event at its HISTORY instant; the incident row agrees with its events."""
    with Session(engine) as s, s.begin():
        rows = s.scalars(
            sa.select(TimelineEvent)
            .where(TimelineEvent.incident_id == number)
            .order_by(TimelineEvent.id)
        ).all()
        assert [r.kind for r in rows] == [str(kind) for kind, _ in HISTORY]
        for row, (_, minutes) in zip(rows, HISTORY, strict=True):
            row.at = at(minutes)
        incident = s.get_one(Incident, number)
        incident.created_at = START
        incident.acknowledged_at = at(6 + 10 / 60)
        incident.resolved_at = at(62 + 5 / 60)


def review_of(
    engine: sa.Engine, number: int, playbooks: LoadedPlaybooks
) -> tuple[ReviewFacts, str]:
    with Session(engine) as s:
        facts = load_review_facts(s, number, playbooks)
    assert facts is not None
    thread = slack_thread_url(facts.incident.slack_channel, facts.incident.slack_root_ts)
    return facts, draft_review(facts, thread)


def section(text: str, heading: str) -> str:
    """The lines under `heading` up to the next `## ` heading."""
    after = text.split(f"\n{heading}\n", 1)[1]
    return after.split("\n## ", 1)[0].strip()


def test_the_review_tells_the_incident_in_order(engine: sa.Engine) -> None:
    core, playbooks = make_core(engine)
    number = record_history(core)
    facts, text = review_of(engine, number, playbooks)

    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert headings == [
        rf"# Post-incident review: #{number} Schema mismatch \# on \<b\>orders\</b\> "
        r"\[win\](https://evil.example) \#\# Pwned",
        "## Summary",
        "## Key times (UTC)",
        "## Durations",
        "## Escalation",
        "## Remediations",
        "### Request #1: Immediate rollback — revert the offending commit",
        "### Request #2: Service restart",
        "## Public updates",
        "## Alerts",
        "## Slack thread",
        "## Root causes",
        "## Procedures to update",
        "## Monitoring to improve",
        "## Training",
    ]
    assert section(text, "## Summary").splitlines()[1:] == [
        "- **Severity:** critical",
        "- **Services:** orders, ssot",
        "- **Playbook:** `schema-mismatch` — Schema mismatch causing runtime errors",
        "- **Incident Commander:** `@U0LEAD`",
        "- **Technical Lead:** `@U0TECH`",
        "- **Communications:** `@U0PM`",
        "- **Stakeholders:** `@S0LEADS`",
        "- **Final status:** resolved",
    ]
    assert section(text, "## Key times (UTC)").splitlines() == [
        "- Started: 2026-11-27T03:00Z",
        "- Acknowledged: 2026-11-27T03:06Z",
        "- First remediation requested: 2026-11-27T03:08Z",
        "- First remediation approved: 2026-11-27T03:09Z",
        "- First remediation done: 2026-11-27T03:10Z",
        "- Resolved: 2026-11-27T04:02Z",
    ]
    assert section(text, "## Durations").splitlines() == [
        "- Time to acknowledge: 6m 10s",
        "- Time to mitigate: 10m 30s",
        "- Time to resolve: 1h 02m",
    ]
    assert section(text, "## Escalation").splitlines() == [
        "- Level 1 — Team lead, 2026-11-27T03:00Z: the incident opened",
        "- Level 2 — Engineering manager, 2026-11-27T03:05Z: not acknowledged for 5m",
    ]
    assert section(text, "## Remediations").split("\n\n") == [
        "### Request #1: Immediate rollback — revert the offending commit",
        "- Requested by `@U0TECH` at 2026-11-27T03:08Z\n"
        r"- Preview: Revert abc1234 \<script\> on main" + "\n"
        "  - nexus/ssot@\u2060main\n"
        r"  - 1 file: anchors/orders.yaml \# not a heading" + "\n"
        "- Approved by `@U0LEAD` at 2026-11-27T03:09Z\n"
        "- Result: done at 2026-11-27T03:10Z: Reverted abc1234 as def5678\n"
        "  - https://github.com/nexus/ssot/commit/def5678",
        "### Request #2: Service restart",
        "- Requested by `@U0TECH` at 2026-11-27T03:20Z\n"
        "- Preview: Restart deployment/orders in prod\n"
        "- Denied by `@U0LEAD` at 2026-11-27T03:21Z\n"
        r"- Result: denied: \[not needed\](https://evil.example) after the revert",
    ]
    assert section(text, "## Public updates").splitlines() == [
        r"- 2026-11-27T03:07Z **Identified**: Anchor reverted \# Injected \<img src=x "
        r"onerror=alert(1)\> \[phish\](https://evil.example) \| a \| b \| \`rm -rf /\` "
        "@\u2060nexus/everyone",
        "- 2026-11-27T04:02Z **Resolved**: All clear.",
    ]
    assert section(text, "## Alerts").splitlines() == [
        "- Firing: 2, resolved: 0",
        r"- Alert rules that fired: Evil\`rule \<\!-- nexus-incident: 99 --\>, "
        "`SSOTSchemaMismatch`",
    ]
    assert section(text, "## Slack thread") == (
        "[the incident thread](https://slack.com/archives/C0INCIDENTS/p1714555815000100)"
    )
    procedures = section(text, "## Procedures to update")
    assert procedures.startswith("Playbook file: `playbooks/schema-mismatch.yaml`\n\n- [ ] ")
    monitoring = section(text, "## Monitoring to improve").splitlines()
    assert monitoring[0].startswith(r"- [ ] Evil\`rule \<\!-- nexus-incident: 99 --\>: ")
    assert monitoring[1].startswith("- [ ] `SSOTSchemaMismatch`: ")
    body = text.removesuffix(f"\n\n<!-- nexus-incident: {number} -->\n")
    for heading in ("## Root causes", "## Training"):
        items = section(body, heading).splitlines()
        assert items and all(line.startswith("- [ ] ") for line in items)
    # Hostile text: no live HTML, link, code, table or mention, and one marker — ours, last.
    for raw in ("<b>", "<img", "<script", "](https://evil", "`rm", "| a |", "@nexus"):
        assert re.search(r"(?<!\\)" + re.escape(raw), text) is None, raw
    assert text.count("<!--") == 1
    assert text.endswith(f"\n\n<!-- nexus-incident: {number} -->\n")
    assert facts.alerts.alertnames == (HOSTILE_RULE, "SSOTSchemaMismatch")


def test_an_open_incident_without_remediations_says_so(engine: sa.Engine) -> None:
    core, playbooks = make_core(engine)
    number = core.incidents.declare("Frenly AI proposing odd edits", "U0LEAD").incidents[0]
    core.incidents.post_update(number, "resolved", "Done", "U0PM")  # resolved, then …
    core.incidents.change_status(number, "triggered", "U0LEAD")  # … reopened: not over
    facts, text = review_of(engine, number, playbooks)
    assert facts.incident.status == "triggered"
    assert section(text, "## Remediations") == "No remediation was requested."
    assert "- Resolved: —" in text and "- Time to resolve: —" in text
    assert "- Time to mitigate: —" in text
    assert "## Slack thread" not in text  # no thread was posted
    assert section(text, "## Alerts").splitlines()[1] == "- Alert rules that fired: —"
    assert section(text, "## Monitoring to improve").startswith("- [ ] No alert rule fired")


def test_an_unknown_incident_has_no_facts(engine: sa.Engine) -> None:
    _, playbooks = make_core(engine)
    with Session(engine) as s:
        assert load_review_facts(s, 404, playbooks) is None


def test_durations_and_paths_read_as_people_write_them() -> None:
    assert [human_duration(timedelta(seconds=s)) for s in (0, 45, 250, 3720, 3725, 93784)] == [
        "0s",
        "45s",
        "4m 10s",
        "1h 02m",
        "1h 02m",
        "1d 02h",
    ]
    assert human_duration(None) == human_duration(timedelta(seconds=-5)) == "—"
    root = Path("/srv/nexus")
    assert repository_path(Path("playbooks/a.yaml")) == "playbooks/a.yaml"
    assert repository_path(root / "playbooks" / "a.yaml", root) == "playbooks/a.yaml"
    assert repository_path(Path("/etc/nexus/playbooks/a.yaml"), root) == "playbooks/a.yaml"
    assert slack_thread_url("C0X", "1.2") == "https://slack.com/archives/C0X/p12"
    assert slack_thread_url("C0X", "1.2)](https://evil") is None
    assert slack_thread_url(None, "1.2") is None
