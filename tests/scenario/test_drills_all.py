"""`nexus-bot drill run --all`: the playbook's five test scenarios rehearsed through a
running bot (git, GitHub, Kubernetes fakes and a bare repository), nothing real changed.

SQLite only: the PostgreSQL path of a drill is covered by test_drills.py, and this
one is long (eight approvals)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scenario.drill_support import Drill, drill_stage
from tests.support.bot_process import CHANNEL


@pytest.fixture
def drill(sqlite_url: str, tmp_path: Path) -> Iterator[Drill]:
    with drill_stage(sqlite_url, tmp_path) as stage:
        yield stage


# Each scenario's playbook and the steps its drill expects (config/nexus.yaml).
SCENARIOS = {
    "schema-mismatch": ("schema-mismatch", ["revert-commit"]),
    "build-failure": ("ssot-build-failure", ["remove-ssot-change", "revert-commit"]),
    "ai-malfunction": ("frenly-ai-dangerous-edit", ["close-pr", "scale-to-zero"]),
    "data-loss": ("lost-canonical-files", ["restore-from-git"]),
    "performance-issues": ("performance-degradation", ["disable-ssot-integration", "rollout-undo"]),
}


def test_drill_run_all_rehearses_the_five_scenarios(drill: Drill) -> None:
    drill.kube.set_image("ai", "frenly-ai", "registry.example/app:2.0")  # something to undo
    cli = drill.run("--all", "--wait", "--json")
    runs = {}
    for run_id in range(1, 6):
        incident = drill.incident_of(run_id)
        scenario = drill.bot.scalar(f"SELECT scenario FROM drill_runs WHERE id = {run_id}")
        runs[scenario] = incident
    assert set(runs) == set(SCENARIOS)
    for scenario, incident in runs.items():
        playbook, steps = SCENARIOS[scenario]
        drill.acknowledge(incident)
        for step in steps:
            drill.request_and_approve(incident, playbook, step)

    out, err = cli.communicate(timeout=180)
    scorecards = {run["scenario"]: run["scorecard"] for run in json.loads(out)}
    assert set(scorecards) == set(SCENARIOS)
    for scenario, card in scorecards.items():
        outcome = {s["step_id"]: (s["would_work"], s["reason"]) for s in card["steps"]}
        assert all(works for works, _ in outcome.values()), (scenario, outcome)
        assert card["passed"] is True, (scenario, card["findings"])
    assert cli.returncode == 0, err
    # Five DRILL threads, one per scenario (their roots go first); each scorecard is
    # queued for its thread (posting them all takes Slack's pace: ~50 s here).
    roots = drill.slack.wait_for(lambda: len(drill.slack.roots(CHANNEL)) == 5, timeout=30)
    assert roots
    for incident in runs.values():
        queued = drill.bot.scalar(
            "SELECT count(*) FROM outbox WHERE output = 'slack' "
            f"AND incident_id = {incident} AND payload LIKE '%DRILL scorecard%'"
        )
        assert queued == 1, incident
    drill.assert_nothing_real_changed()
    # data-loss's restore verified with the validation Job: created as a dry run only.
    assert drill.kube.creates(dry_run=True)
    assert (
        drill.kube.deployment("ai", "frenly-ai")["spec"]["template"]["spec"]["containers"][0][
            "image"
        ]
        == "registry.example/app:2.0"
    )
    assert drill.kube.configmap("nexus", "ssot-config")["data"] == {"enabled": "true"}
