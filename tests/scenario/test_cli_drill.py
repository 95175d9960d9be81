"""`nexus-bot drill list | run | history` as real `python -m bot` processes.

No bot is running in these tests: `drill run` only records runs and their
synthetic alerts (what a running bot would apply); `--wait` must notice that
nobody applies them and say so instead of hanging.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from tests.support.bot_process import free_port
from tests.support.cli import REPO_ROOT, nexus_bot

FIVE = ["schema-mismatch", "build-failure", "ai-malfunction", "data-loss", "performance-issues"]


def run_with_config(
    database_url: str, config: Path, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "DATABASE_URL": database_url, "NEXUS_CONFIG": str(config)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def count(database_url: str, table: str) -> int:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def json_out(proc: subprocess.CompletedProcess[str]) -> Any:
    """stdout is one JSON document: no log line may precede or follow it."""
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def test_list_shows_the_five_scenarios_and_three_schedules(sqlite_url: str) -> None:
    text = nexus_bot(sqlite_url, "drill", "list")
    assert text.returncode == 0, text.stderr
    assert "Traceback" not in text.stderr
    for scenario in FIVE:
        assert f"  {scenario}" in text.stdout
    assert text.stdout.count("last: never run") == 5
    assert "playbook frenly-ai-dangerous-edit; steps close-pr, scale-to-zero" in text.stdout
    for schedule in ("weekly", "monthly", "quarterly"):
        assert f"  {schedule}" in text.stdout

    document = json_out(nexus_bot(sqlite_url, "drill", "list", "--json"))
    assert [s["id"] for s in document["scenarios"]] == FIVE
    assert all(s["last_run"] is None and s["last_result"] is None for s in document["scenarios"])
    ai = document["scenarios"][2]
    assert ai["steps"] == ["close-pr", "scale-to-zero"]
    schedules = document["schedules"]
    assert [(s["id"], s["run"]) for s in schedules] == [
        ("weekly", "rotation"),
        ("monthly", "all"),
        ("quarterly", "review"),
    ]
    for schedule in schedules:
        upcoming = datetime.fromisoformat(schedule["next_run"])
        assert upcoming.tzinfo is not None and upcoming.hour == 10
        assert schedule["timezone"] == "UTC"
    assert datetime.fromisoformat(schedules[0]["next_run"]).weekday() == 1  # Tuesday
    monthly = datetime.fromisoformat(schedules[1]["next_run"])
    assert monthly.weekday() == 2 and monthly.day <= 7


def test_list_without_schedules_firing(sqlite_url: str, tmp_path: Path) -> None:
    config = tmp_path / "nexus.yaml"
    config.write_text(yaml.safe_dump({"drills": {"enabled": False}}))
    proc = run_with_config(sqlite_url, config, "drill", "list", "--json")
    document = json_out(proc)
    assert [s["next_run"] for s in document["schedules"]] == [None, None, None]
    text = run_with_config(sqlite_url, config, "drill", "list")
    assert "Schedules (disabled: drills.enabled is false)" in text.stdout


def test_history_is_empty_then_shows_a_run(sqlite_url: str) -> None:
    database_url = sqlite_url  # on PostgreSQL: test_drills.py runs `drill run --wait` there
    empty = nexus_bot(database_url, "drill", "history")
    assert empty.returncode == 0, empty.stderr
    assert "No drills yet" in empty.stdout
    assert json_out(nexus_bot(database_url, "drill", "history", "--json")) == {
        "runs": [],
        "missed": [],
    }

    started = nexus_bot(database_url, "drill", "run", "ai-malfunction")
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == "Drill run 1 started: ai-malfunction (rehearsal mode)"
    assert count(database_url, "drill_runs") == 1
    assert count(database_url, "inbox") == 1  # its synthetic alert, for a bot to apply

    history = nexus_bot(database_url, "drill", "history")
    assert history.returncode == 0, history.stderr
    [line] = history.stdout.splitlines()
    assert line.startswith("run 1 ") and "ai-malfunction" in line
    assert "cli" in line and "running" in line and "no incident" in line
    [run] = json_out(nexus_bot(database_url, "drill", "history", "--json"))["runs"]
    assert (run["run"], run["scenario"], run["state"]) == (1, "ai-malfunction", "running")
    assert run["trigger"] == "cli" and run["started_by"].startswith("cli:")
    assert run["scorecard"] is None and run["incident"] is None
    # The scenario is not "never run" before it finished.
    listed = json_out(nexus_bot(database_url, "drill", "list", "--json"))
    assert listed["scenarios"][2]["last_run"] is None


def test_run_all_json_starts_five_runs_in_one_batch(sqlite_url: str) -> None:
    runs = json_out(nexus_bot(sqlite_url, "drill", "run", "--all", "--json"))
    assert [r["scenario"] for r in runs] == FIVE
    assert len({r["batch"] for r in runs}) == 1
    assert all(r["state"] == "running" and r["trigger"] == "cli" for r in runs)
    assert count(sqlite_url, "drill_runs") == 5
    assert count(sqlite_url, "inbox") == 5


def test_run_an_unknown_scenario_exits_2_and_writes_nothing(sqlite_url: str) -> None:
    assert nexus_bot(sqlite_url, "drill", "list").returncode == 0  # the database exists
    proc = nexus_bot(sqlite_url, "drill", "run", "fire-alarm")
    assert proc.returncode == 2
    assert "unknown drill scenario fire-alarm" in proc.stderr
    assert "known: " + ", ".join(FIVE) in proc.stderr
    assert proc.stdout == ""
    assert count(sqlite_url, "drill_runs") == 0
    assert count(sqlite_url, "inbox") == 0


@pytest.mark.parametrize(
    "scenario",
    ["../x", "A B", "$(rm -rf /)", "a" * 500, "ai-malfunction\n", "ai\nmalfunction", "-x"],
)
def test_hostile_scenario_ids_are_refused_by_the_parser(sqlite_url: str, scenario: str) -> None:
    assert nexus_bot(sqlite_url, "drill", "list").returncode == 0
    proc = nexus_bot(sqlite_url, "drill", "run", scenario)
    assert proc.returncode == 2
    assert "usage: nexus-bot drill run" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr) < 2000  # a 500-character id is not echoed whole
    assert count(sqlite_url, "drill_runs") == 0
    assert count(sqlite_url, "inbox") == 0


@pytest.mark.parametrize(
    "args",
    [("fire-alarm", "--all"), ("ai-malfunction", "--all"), ()],
    ids=["unknown-and-all", "scenario-and-all", "neither"],
)
def test_run_needs_exactly_one_of_a_scenario_or_all(sqlite_url: str, args: tuple[str]) -> None:
    assert nexus_bot(sqlite_url, "drill", "list").returncode == 0
    proc = nexus_bot(sqlite_url, "drill", "run", *args)
    assert proc.returncode == 2
    assert "usage: nexus-bot drill run" in proc.stderr
    assert count(sqlite_url, "drill_runs") == 0


def test_wait_without_a_running_bot_gives_up_and_the_run_stays(
    sqlite_url: str, tmp_path: Path
) -> None:
    config = yaml.safe_load((REPO_ROOT / "config" / "nexus.yaml").read_text())
    config["drills"]["timeout"] = "2s"
    path = tmp_path / "nexus.yaml"
    path.write_text(yaml.safe_dump(config))

    began = time.monotonic()
    proc = run_with_config(sqlite_url, path, "drill", "run", "ai-malfunction", "--wait")
    took = time.monotonic() - began
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "is `nexus-bot serve` running on this database?" in proc.stderr
    assert "The drill stays recorded" in proc.stderr
    assert "Drill run 1 started: ai-malfunction" in proc.stdout
    # Gives up at the 2 s drill timeout, not after the 120 s more it grants a bot
    # that applied the alert; the rest is two process starts on a busy CI machine.
    assert took < 60, took

    history = json_out(run_with_config(sqlite_url, path, "drill", "history", "--json"))
    [run] = history["runs"]
    assert run["scenario"] == "ai-malfunction" and run["state"] in ("running", "finished")
    assert count(sqlite_url, "inbox") == 1  # still waiting for a bot to apply it


def test_wait_json_keeps_stdout_clean(sqlite_url: str, tmp_path: Path) -> None:
    config = yaml.safe_load((REPO_ROOT / "config" / "nexus.yaml").read_text())
    config["drills"]["timeout"] = "1s"
    path = tmp_path / "nexus.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = run_with_config(sqlite_url, path, "drill", "run", "data-loss", "--wait", "--json")
    assert proc.returncode == 2
    assert proc.stdout == ""  # neither the "started" line nor a log line
    assert "nexus-bot serve" in proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("drill", "list"),
        ("drill", "list", "--json"),
        ("drill", "history"),
        ("drill", "run", "ai-malfunction"),
        ("drill", "run", "--all", "--wait", "--json"),
    ],
)
def test_an_unreachable_database_exits_2(args: tuple[str, ...]) -> None:
    closed = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"
    began = time.monotonic()
    proc = nexus_bot(closed, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "error: database unavailable" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert time.monotonic() - began < 30
