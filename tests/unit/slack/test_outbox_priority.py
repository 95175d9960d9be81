"""Drill messages go after real ones: the worker, over HTTP to the fake Slack, on both databases.

A paced channel sends every due real-incident row (priority 0) before a
drill's (priority 1), even when the drill's were enqueued first; each
incident's own rows still go in id order.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from bot.domain.playbooks import load_playbooks
from bot.settings import Settings
from bot.slack.outbox import enqueue_root_post, enqueue_thread_reply
from bot.slack.outbox_rows import PRIORITY_DRILL
from bot.slack.thread_output import SlackThreadOutput
from bot.store.repository import Repository
from bot.timeline.events import Kind
from bot.timeline.recorder import Timeline
from tests.fakes.slack import FakeSlack
from tests.unit.slack.outbox_support import drain, make_worker, section

REPO_ROOT = Path(__file__).resolve().parents[3]


def posted(slack: FakeSlack) -> list[str]:
    """Texts in the order Slack accepted them."""
    return [str(c.params.get("text")) for c in slack.calls("chat.postMessage", ok=True)]


async def test_a_real_incidents_rows_overtake_a_drills_enqueued_before(
    engine: sa.Engine, repo: Repository, slack: FakeSlack, new_incident: Callable[[], int]
) -> None:
    drill, real = new_incident(), new_incident()
    with repo.session() as s:
        enqueue_root_post(s, drill, "C1", "drill root", section("d"), priority=PRIORITY_DRILL)
        for n in (1, 2):
            enqueue_thread_reply(s, drill, "C1", f"drill reply {n}", priority=PRIORITY_DRILL)
        enqueue_root_post(s, real, "C1", "real root", section("r"))
        for n in (1, 2):
            enqueue_thread_reply(s, real, "C1", f"real reply {n}")

    # A burst lets one pass send several rows: after the real root the pass must
    # not hand the drill's root the slot the real incident's reply is due for.
    await drain(make_worker(engine, slack, rate_per_channel=50, burst=3), engine)

    assert posted(slack) == [
        "real root",
        "real reply 1",
        "real reply 2",
        "drill root",
        "drill reply 1",
        "drill reply 2",
    ]
    for root_text in ("real root", "drill root"):
        (root,) = [m for m in slack.roots("C1") if m.text == root_text]
        kind = root_text.split()[0]
        assert [m.text for m in slack.thread("C1", root.ts)] == [
            f"{kind} reply 1",
            f"{kind} reply 2",
        ]


async def test_through_the_output_a_drill_sharing_the_incident_channel_waits(
    engine: sa.Engine, slack: FakeSlack
) -> None:
    # No drill channel: drills open in the incident channel, one pacing key for both.
    settings = Settings(nexus_incident_channel="C0INCIDENTS")
    playbooks = load_playbooks([REPO_ROOT / "playbooks"], settings.allowed_targets)
    repo = Repository(engine)
    timeline = Timeline([SlackThreadOutput(settings, repo, playbooks)])
    numbers = {}
    for name, run_id in (("drill", 1), ("real", None)):
        with repo.session() as s:
            incident, _ = repo.open_or_reopen(
                s,
                key=name,
                source="alertmanager",
                title=f"{name} incident",
                severity="warning",
                playbook_id="no-such-playbook",  # root and intro only
                labels={},
                drill_run_id=run_id,
            )
            timeline.record(
                s, incident.id, Kind.OPENED, "alertmanager", playbook_id="x", routes=["slack"]
            )
            timeline.record(s, incident.id, Kind.NOTE_ADDED, "U0BOB", text=f"{name} note")
            numbers[name] = incident.id

    await drain(make_worker(engine, slack, rate_per_channel=50, burst=3), engine)

    texts = posted(slack)
    assert len(texts) == 6, texts
    assert [("DRILL" in t) for t in texts] == [False] * 3 + [True] * 3
    real, drill = texts[:3], texts[3:]
    assert "real incident" in real[0] and real[2] == ":memo: Note from <@U0BOB>: real note"
    assert "🧪 DRILL — drill incident" in drill[0]
    assert drill[1].startswith("DRILL · :test_tube: Scenario")
    assert drill[2] == "DRILL · :memo: Note from <@U0BOB>: drill note"
