"""The source playbook's communication plan end to end, over real HTTP.

Two bot replicas on one PostgreSQL database, the local Slack fake, a fake
Kubernetes API (for the approval card's preview) and a real SMTP server
(aiosmtpd): default roles on the root, `/incident role`, a public update in
the thread and in the stakeholders' inboxes (one message per recipient list,
threaded), the update-cadence reminder exactly once per interval across the
replicas, resolve → reopen with the ladder starting again, and an expired
approval card edited to say so.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml

from tests.fakes.kubernetes import FakeKubernetes
from tests.fakes.slack import FakeMessage, FakeSlack
from tests.support.bot_process import CHANNEL, REPO_ROOT, BotProcess
from tests.unit.notify.notify_support import BoundController, Recorder

DATA = Path(__file__).resolve().parents[1] / "data"
STAKEHOLDERS = ["cto@nexus.test", "team-leads@nexus.test"]
GONE = "left-the-company@nexus.test"  # refused by the SMTP server: reported once
COMMANDER_EMAIL = "platform-lead@nexus.test"
COMMS_EMAIL = "product@nexus.test"


def communication_config(folder: Path) -> Path:
    config = yaml.safe_load((REPO_ROOT / "config" / "nexus.yaml").read_text())
    config["roles"] = {
        "commander": {"slack": ["U0LEAD"], "email": [COMMANDER_EMAIL]},
        "tech-lead": {"slack": ["U0DEVOPS"], "email": []},
        "comms": {"slack": ["U0PM"], "email": [COMMS_EMAIL]},
        "stakeholders": {"slack": [], "email": [*STAKEHOLDERS, GONE]},
    }
    config["updates"] = {"remind_after": "2s"}
    config["approvals"]["expire_after"] = "10s"
    path = folder / "nexus.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class Stage:
    slack: FakeSlack
    mail: Recorder
    replicas: list[BotProcess]
    database_url: str

    def root(self) -> FakeMessage:
        roots = self.slack.wait_for(lambda: self.slack.roots(CHANNEL), timeout=20)
        assert len(roots) == 1, "one incident, one thread"
        return roots[0]

    def current_root(self) -> FakeMessage:
        message = self.slack.message(CHANNEL, self.root().ts)
        assert message is not None
        return message

    def thread_texts(self) -> list[str]:
        return [m.text or "" for m in self.slack.thread(CHANNEL, self.root().ts)[1:]]

    def wait_reply(self, needle: str, timeout: float = 20) -> str:
        return str(
            self.slack.wait_for(
                lambda: next((t for t in self.thread_texts() if needle in t), None),
                timeout=timeout,
            )
        )

    def events(self, kind: str) -> list[Any]:
        engine = sa.create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                return list(
                    conn.execute(
                        sa.text(
                            "SELECT at, facts FROM timeline_events WHERE kind = :k ORDER BY id"
                        ),
                        {"k": kind},
                    )
                )
        finally:
            engine.dispose()


@pytest.fixture
def stage(postgres_url: str, tmp_path: Path) -> Iterator[Stage]:
    recorder = Recorder(refuse={GONE: "550 5.1.1 No such user"})
    smtp = BoundController(recorder)
    smtp.start()
    config = communication_config(tmp_path)
    try:
        with FakeSlack() as slack, FakeKubernetes() as kube:
            kube.add_deployment("ai", "frenly-ai", replicas=3)
            env = {
                "NEXUS_CONFIG": str(config),
                "SMTP_URL": f"smtp://127.0.0.1:{smtp.port}?starttls=never",
                "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
                "NEXUS_APPROVERS": "U0BOB",
                # Level 2 would come after the test is over: level 1 is what restarts.
                "NEXUS_ESCALATION_DELAYS": "10m,20m,30m",
            }
            replicas = [
                BotProcess(postgres_url, slack.url, slack.token or "", **env) for _ in range(2)
            ]
            replicas[0].start()
            replicas[1].start()  # the schema is migrated by the first
            try:
                yield Stage(slack, recorder, replicas, postgres_url)
            finally:
                for bot in replicas:
                    bot.stop()
                    print(bot.stderr[-15000:])
    finally:
        smtp.stop()


def alert(status: str = "firing") -> dict[str, Any]:
    batch = json.loads((DATA / "alertmanager-frenly-ai.json").read_text())
    batch["status"] = status
    batch["alerts"][0]["status"] = status
    return batch


def blocks_text(message: FakeMessage) -> str:
    return json.dumps(message.blocks)


def test_roles_updates_email_reminders_reopen_and_expiry(stage: Stage) -> None:
    first, second = stage.replicas

    # An Alertmanager alert opens the incident with the default roles on its root.
    assert first.alertmanager(alert()).status_code == 202
    root = stage.root()
    stage.slack.wait_for(lambda: "Incident Commander" in blocks_text(stage.current_root()))
    shown = blocks_text(stage.current_root())
    assert "<@U0LEAD>" in shown and "<@U0DEVOPS>" in shown and "<@U0PM>" in shown

    # `/incident role comms @U…` reassigns; the thread says so and the root shows it.
    answer = first.command("role comms <@U0NEWPM|nina> 1").json()["text"]
    assert "reassigned" in answer
    assert "<@U0NEWPM> *Communications*" in stage.wait_reply(":busts_in_silhouette:")
    stage.slack.wait_for(lambda: "<@U0NEWPM>" in blocks_text(stage.current_root()))
    assert "<@U0PM>" not in blocks_text(stage.current_root())

    # A public update, from the other replica: in the thread and in the inboxes.
    answer = second.command('update identified "Bad anchor v37 reverted" 1').json()["text"]
    assert "update posted (identified)" in answer
    reply = stage.wait_reply("Public update — Identified")
    assert "Bad anchor v37 reverted" in reply
    stage.slack.wait_for(lambda: len(stage.mail.messages) >= 1, timeout=20)
    second.command('update monitoring "Error rate back to normal" 1')
    stage.slack.wait_for(lambda: len(stage.mail.messages) >= 2, timeout=20)
    time.sleep(1)
    updates = [m for m in stage.mail.messages if "Level" not in m.message["Subject"]]
    assert len(updates) == 2, "one message per update per recipient list"
    everyone = sorted([*STAKEHOLDERS, COMMANDER_EMAIL, COMMS_EMAIL])
    for received in updates:
        assert sorted(received.rcpt_tos) == everyone
    identified, monitoring = (u.message for u in updates)
    assert GONE in identified["To"]  # addressed, refused at RCPT by the server
    # The refused address is said once in the thread, although two updates bounced.
    stage.wait_reply(f"was refused for {GONE}")
    time.sleep(1)
    assert sum(GONE in t for t in stage.thread_texts()) == 1
    assert "Identified" in identified["Subject"] and "#1" in identified["Subject"]
    body = identified.get_body(("plain",))
    assert body is not None and "Bad anchor v37 reverted" in body.get_content()
    assert identified.get_body(("html",)) is not None
    assert identified["Message-ID"] != monitoring["Message-ID"]
    assert identified["References"] == monitoring["References"]
    assert identified["In-Reply-To"] == monitoring["In-Reply-To"] == identified["References"]

    # No public update for 2 s on a critical incident: Communications is reminded,
    # exactly once per interval although both replicas sweep every second.
    stage.slack.wait_for(lambda: len(stage.events("update.reminder")) >= 3, timeout=20)
    reminders = stage.events("update.reminder")
    times = [
        row.at if isinstance(row.at, datetime) else datetime.fromisoformat(row.at)
        for row in reminders
    ]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert all(gap >= 1.9 for gap in gaps), gaps
    assert all(facts_of(row)["holders"] == ["U0NEWPM"] for row in reminders)
    assert "<@U0NEWPM>: no public update for" in stage.wait_reply(":alarm_clock:")

    # An approval card that nobody approves expires and is edited: no buttons left.
    requested = first.click(
        "remediation.request.scale-to-zero",
        json.dumps({"p": "frenly-ai-dangerous-edit", "s": "scale-to-zero", "i": 1}),
        user="U0ALICE",
    )
    assert requested.status_code == 200
    card = stage.slack.wait_for(
        lambda: next(
            (
                m
                for m in stage.slack.thread(CHANNEL, root.ts)
                if "approval.approve" in blocks_text(m)
            ),
            None,
        ),
        timeout=20,
    )
    stage.wait_reply("expired: nobody approved it in time", timeout=30)
    edited = stage.slack.wait_for(
        lambda: (lambda m: m if m is not None and "expired" in blocks_text(m) else None)(
            stage.slack.message(CHANNEL, card.ts)
        ),
        timeout=20,
    )
    assert "approval.approve" not in blocks_text(edited)
    assert '"type": "actions"' not in blocks_text(edited)

    # Resolve, then the alert fires again: a reopened line and the ladder from level 1.
    assert "now resolved" in first.command("resolve 1").json()["text"]
    metrics = httpx.get(f"{first.url}/metrics", timeout=10).text
    assert (
        'nexus_incident_time_to_resolve_seconds_count{playbook="frenly-ai-dangerous-edit",'
        'severity="critical"} 1.0'
    ) in metrics
    levels_before = sum("Level 1 — Team lead" in t for t in stage.thread_texts())
    assert levels_before == 1
    assert second.alertmanager(alert()).status_code == 202
    assert "starts again from level 1" in stage.wait_reply("*Reopened*")
    stage.slack.wait_for(
        lambda: sum("Level 1 — Team lead" in t for t in stage.thread_texts()) == 2, timeout=20
    )
    assert len(stage.slack.roots(CHANNEL)) == 1, "still one thread"

    # Communications sets a status page component by hand; others may not.
    refused = stage.slack.response_url("component-alice")
    first.command("component ssot partial", response_url=refused)
    told = stage.slack.wait_for(lambda: stage.slack.responses("component-alice"), timeout=10)
    assert "Only the Communications role" in told[0]["text"]
    allowed = stage.slack.response_url("component-pm")
    second.command("component ssot partial", user="U0PM", response_url=allowed)
    told = stage.slack.wait_for(lambda: stage.slack.responses("component-pm"), timeout=10)
    assert "shown as partial outage" in told[0]["text"]
    time.sleep(1.1)  # the page's one-second cache
    summary = httpx.get(f"{first.url}/status.json", timeout=10).json()
    assert {c["id"]: c["status"] for c in summary["components"]}["ssot"] == "partial_outage"


def facts_of(row: Any) -> dict[str, Any]:
    facts = row.facts
    return facts if isinstance(facts, dict) else json.loads(facts)
