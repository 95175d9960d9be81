"""`nexus-bot incidents` as a real process on real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from bot.store.repository import Repository
from tests.support.cli import nexus_bot

START = datetime(2024, 5, 1, 9, 30, 15, tzinfo=UTC)


def open_incident(repo: Repository, n: int, title: str, severity: str = "critical") -> int:
    incident, created = repo.open_incident(
        key=f"test:{n}",
        source="alertmanager",
        title=title,
        severity=severity,
        playbook_id="schema-mismatch",
        labels={"service": "ssot"},
        now=START + timedelta(minutes=n),
    )
    assert created
    return incident.id


def test_an_empty_database_lists_nothing(database_url: str) -> None:
    text = nexus_bot(database_url, "incidents")
    assert (text.returncode, text.stdout) == (0, "No incidents.\n"), text.stderr
    opened = nexus_bot(database_url, "incidents", "--open")
    assert (opened.returncode, opened.stdout) == (0, "No open incidents.\n")
    as_json = nexus_bot(database_url, "incidents", "--json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout) == []


def test_lists_newest_first_as_text_and_json(database_url: str, engine: sa.Engine) -> None:
    repo = Repository(engine)
    first = open_incident(repo, 1, "SSOT sync broken", "warning")
    second = open_incident(repo, 2, "Schema mismatch on orders")
    third = open_incident(repo, 3, "Frenly AI edited prod", "info")
    assert repo.set_incident_status(first, "resolved", "U0ALICE", now=START + timedelta(hours=1))
    assert repo.set_incident_status(
        second, "acknowledged", "U0BOB", now=START + timedelta(minutes=4)
    )
    assert repo.set_slack_root(second, "C0INCIDENTS", "1714555815.000100")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE incidents SET escalation_level = 3, public_status = 'identified',"
                " roles = :roles WHERE id = :id"
            ),
            {"roles": json.dumps({"commander": ["U0CAROL"], "comms": ["S0PRODUCT"]}), "id": second},
        )

    text = nexus_bot(database_url, "incidents")
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines() == [
        f"#{third}  info      triggered     L1  -              "
        "2024-05-01 09:33Z  Frenly AI edited prod",
        f"#{second}  critical  acknowledged  L3  identified     "
        "2024-05-01 09:32Z  Schema mismatch on orders",
        f"#{first}  warning   resolved      L1  -              2024-05-01 09:31Z  SSOT sync broken",
    ]

    listed = json.loads(nexus_bot(database_url, "incidents", "--json").stdout)
    assert [item["id"] for item in listed] == [third, second, first]
    assert listed[1] == {
        "id": second,
        "title": "Schema mismatch on orders",
        "severity": "critical",
        "status": "acknowledged",
        "playbook": "schema-mismatch",
        "escalation_level": 3,
        "public_status": "identified",
        "roles": {"commander": ["U0CAROL"], "comms": ["S0PRODUCT"]},
        "created_at": "2024-05-01T09:32:15Z",
        "acknowledged_at": "2024-05-01T09:34:15Z",
        "resolved_at": None,
        "slack_thread": {"channel": "C0INCIDENTS", "ts": "1714555815.000100"},
    }
    assert listed[2]["resolved_at"] == "2024-05-01T10:30:15Z"
    assert listed[2]["slack_thread"] is None and listed[0]["public_status"] is None


def test_open_and_limit_narrow_the_list(database_url: str, engine: sa.Engine) -> None:
    repo = Repository(engine)
    numbers = [open_incident(repo, n, f"incident {n}") for n in range(1, 6)]
    assert repo.set_incident_status(numbers[4], "resolved", "U0ALICE")

    opened = json.loads(nexus_bot(database_url, "incidents", "--open", "--json").stdout)
    assert [item["id"] for item in opened] == numbers[3::-1]

    limited = nexus_bot(database_url, "incidents", "--limit", "2")
    assert limited.returncode == 0
    assert [line.split()[0] for line in limited.stdout.splitlines()] == [
        f"#{numbers[4]}",
        f"#{numbers[3]}",
    ]
    # The cut is said on stderr, so stdout stays one line per incident.
    assert "the newest 2 of 5" in limited.stderr

    both = json.loads(nexus_bot(database_url, "incidents", "--open", "--limit=1", "--json").stdout)
    assert [item["id"] for item in both] == [numbers[3]]


def test_hostile_titles_cannot_reach_the_terminal(database_url: str, engine: sa.Engine) -> None:
    # Titles come from alerts, i.e. from outside: escape sequences, forged lines, bidi tricks.
    hostile = "db down\x1b[2J\x1b]0;owned\x07\nforged #99 line\u202etxt"
    number = open_incident(Repository(engine), 1, hostile)

    text = nexus_bot(database_url, "incidents")
    assert text.returncode == 0
    assert len(text.stdout.splitlines()) == 1
    assert "\x1b" not in text.stdout and "\x07" not in text.stdout and "\u202e" not in text.stdout
    assert "db down?[2J?]0;owned??forged #99 line?txt" in text.stdout

    as_json = nexus_bot(database_url, "incidents", "--json")
    assert "\x1b" not in as_json.stdout  # JSON escapes it as \u001b ...
    [listed] = json.loads(as_json.stdout)
    assert (listed["id"], listed["title"]) == (number, hostile)  # ... and gives it back intact


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--limit", "0"], "from 1 to 10000"),
        (["--limit", "-3"], "from 1 to 10000"),
        (["--limit", "abc"], "from 1 to 10000"),
        (["--limit", "1e3"], "from 1 to 10000"),
        (["--limit", "12345678901234567890"], "from 1 to 10000"),
        (["--limit", "\u0663"], "from 1 to 10000"),  # a non-ASCII digit
        (["--limit"], "expected one argument"),
        (["--open", "--open=yes"], "ignored explicit argument"),
        (["--all"], "unrecognized arguments"),
        (["7"], "unrecognized arguments"),
        (["--json\x1b[31m"], "unrecognized arguments"),
    ],
)
def test_bad_options_exit_2_with_a_reason(sqlite_url: str, args: list[str], says: str) -> None:
    result = nexus_bot(sqlite_url, "incidents", *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert says in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def test_an_unreachable_database_exits_2_and_prints_no_json() -> None:
    result = nexus_bot("postgresql://nobody@127.0.0.1:9/none", "incidents", "--json")
    assert result.returncode == 2
    assert result.stdout == ""  # a script must not read "[]" (no incidents) from an outage
    assert "database unavailable" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_database_url_is_a_config_error() -> None:
    result = nexus_bot("mysql://x@y/z", "incidents")
    assert result.returncode == 2
    assert "environment variable DATABASE_URL" in result.stderr


def test_a_database_not_yet_migrated_is_migrated_first(sqlite_url: str) -> None:
    # Like `audit verify` and `inbox status`: a fresh file is brought to the latest schema.
    result = nexus_bot(sqlite_url, "incidents", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    assert nexus_bot(sqlite_url, "incidents").stdout == "No incidents.\n"
