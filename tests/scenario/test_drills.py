"""Recovery drills end to end: `nexus-bot drill run … --wait` against a running bot,
fake Slack, GitHub, Kubernetes and PagerDuty over HTTP, a real SMTP server and a
bare git repository, and a check that nothing real changed."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.scenario.drill_support import REVIEWS, Drill, drill_stage
from tests.support.bot_process import CHANNEL, REPO_ROOT


@pytest.fixture
def drill(database_url: str, tmp_path: Path) -> Iterator[Drill]:
    with drill_stage(database_url, tmp_path) as stage:
        yield stage


@pytest.fixture
def sqlite_drill(sqlite_url: str, tmp_path: Path) -> Iterator[Drill]:
    with drill_stage(sqlite_url, tmp_path) as stage:
        yield stage


def test_ai_malfunction_drill_end_to_end(drill: Drill) -> None:
    cli = drill.run("ai-malfunction", "--wait", "--json")
    incident = drill.incident_of(1)

    root = drill.slack.wait_for(lambda: drill.slack.roots(CHANNEL), timeout=30)[0]
    assert "DRILL" in (root.text or "") + json.dumps(root.blocks, ensure_ascii=False)
    drill.wait_reply(incident, "remediation.request.scale-to-zero")

    drill.acknowledge(incident)
    drill.request_and_approve(incident, "frenly-ai-dangerous-edit", "close-pr")
    drill.request_and_approve(incident, "frenly-ai-dangerous-edit", "scale-to-zero")

    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 0, (out, err)
    [run] = json.loads(out)
    card = run["scorecard"]
    assert run["passed"] is True and card["passed"] is True and card["ended"] == "completed"
    steps = {s["step_id"]: s for s in card["steps"]}
    assert set(steps) == {"close-pr", "scale-to-zero"}
    for step in steps.values():
        assert step["would_work"] is True, step
        assert step["requested_by"] == "U0ALICE" and step["approved_by"] == "U0BOB"
        assert step["time_to_request_seconds"] is not None
        assert step["time_to_approve_seconds"] is not None
        assert step["checks"], step
    assert card["acknowledged_by"] == "U0CAROL"
    assert card["time_to_acknowledge_seconds"] is not None
    assert {"U0ALICE", "U0BOB", "U0CAROL"} <= set(card["participants"])

    # Posted in the thread, filed as a `drill` issue, the incident resolved.
    drill.wait_reply(incident, "scorecard")
    issues = drill.slack.wait_for(lambda: drill.github.issues(REVIEWS), timeout=30)
    assert [i for i in issues if "drill" in i.labels]
    assert drill.bot.scalar(f"SELECT status FROM incidents WHERE id = {incident}") == "resolved"
    # Every message of the drill's thread says so.
    for message in drill.thread_of(incident):
        assert "DRILL" in (message.text or "") + json.dumps(message.blocks, ensure_ascii=False)

    drill.assert_nothing_real_changed()
    # No public trace: the status page does not know the drill.
    status = httpx.get(f"{drill.bot.url}/status.json", timeout=10).json()
    assert "drill" not in json.dumps(status).lower()


def test_drill_nobody_answers_is_a_finding(sqlite_drill: Drill, tmp_path: Path) -> None:
    drill = sqlite_drill
    """A drill nobody acknowledges fails at its deadline, with the finding in the scorecard."""
    drill.bot.stop()
    config = yaml.safe_load(Path(drill.bot.env["NEXUS_CONFIG"]).read_text())
    config["drills"]["timeout"] = "3s"
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump(config))
    drill.bot.env["NEXUS_CONFIG"] = str(path)
    drill.bot.start()
    cli = drill.run("schema-mismatch", "--wait")
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 1, (out, err)
    assert "FAILED" in out and "Nobody acknowledged the drill" in out
    assert 'Step "Immediate rollback' in out and "not finished" in out
    history = subprocess.run(
        [sys.executable, "-m", "bot", "drill", "history", "--json"],
        cwd=REPO_ROOT,
        env=drill.bot.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    [run] = json.loads(history.stdout)["runs"]
    assert run["passed"] is False and run["scorecard"]["ended"] == "timed_out"
    drill.assert_nothing_real_changed(rehearsed=False)
