"""`nexus-bot review ID` as a real process on real databases (SQLite and PostgreSQL).

It prints exactly the draft the bot files as a GitHub issue: the test drafts
the same incident in-process and compares the two texts byte for byte.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from tests.support.bot_process import REPO_ROOT
from tests.unit.reviews.test_draft import make_core, record_history, review_of


def run_review(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    # The shipped config and playbooks, nothing from the developer's environment.
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "SMTP_", "NEXUS_"))}
    env = {
        **clean,
        "DATABASE_URL": database_url,
        "NEXUS_CONFIG": str(REPO_ROOT / "config" / "nexus.yaml"),
    }
    return subprocess.run(
        [sys.executable, "-m", "bot", "review", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_prints_the_draft_of_the_incident(database_url: str, engine: sa.Engine) -> None:
    core, playbooks = make_core(engine)
    number = record_history(core)
    _, expected = review_of(engine, number, playbooks)
    for given in (str(number), f"#{number}"):
        result = run_review(database_url, given)
        assert result.returncode == 0, result.stderr
        assert result.stdout == expected
        assert result.stderr == ""
    # The link to the playbook is a repository path, as the CLI was configured.
    assert "Playbook file: `playbooks/schema-mismatch.yaml`" in result.stdout
    assert "(https://slack.com/archives/C0INCIDENTS/p1714555815000100)" in result.stdout


def test_an_unknown_incident_exits_1(database_url: str, engine: sa.Engine) -> None:
    result = run_review(database_url, "404")
    assert result.returncode == 1
    assert result.stderr == "error: there is no incident #404\n"
    assert result.stdout == ""


@pytest.mark.parametrize("given", ["abc", "0", "#1234567890", "-1", ""])
def test_a_bad_id_exits_2(sqlite_url: str, given: str) -> None:
    result = run_review(sqlite_url, given)
    assert result.returncode == 2
    assert "incident number" in result.stderr
    assert result.stdout == ""


def test_an_unreachable_database_exits_2() -> None:
    result = run_review("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2", "1")
    assert result.returncode == 2
    assert "database unavailable" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""
