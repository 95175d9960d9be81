"""`nexus-bot audit verify` and `nexus-bot db upgrade` as real processes on real databases."""

from __future__ import annotations

import sqlalchemy as sa

from bot.store.db import make_engine, upgrade_database
from bot.store.repository import Repository
from tests.support.cli import nexus_bot


def test_db_upgrade_then_verify_an_empty_log(database_url: str) -> None:
    upgraded = nexus_bot(database_url, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "latest schema" in upgraded.stdout
    verified = nexus_bot(database_url, "audit", "verify")
    assert verified.returncode == 0
    assert "audit chain ok: 0 rows verified" in verified.stdout


def test_verify_names_the_first_tampered_row(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade_database(engine)
    repo = Repository(engine)
    entries = [repo.audit("U1", "test.event", detail={"n": n}) for n in range(5)]
    assert nexus_bot(database_url, "audit", "verify").returncode == 0

    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE audit_log SET actor = 'mallory' WHERE id = :id"),
            {"id": entries[2].id},
        )
    engine.dispose()
    result = nexus_bot(database_url, "audit", "verify")
    assert result.returncode == 1
    assert f"BROKEN at row {entries[2].id}" in result.stdout
    assert "Traceback" not in result.stderr


def test_verify_against_an_unreachable_database_is_a_clear_error() -> None:
    result = nexus_bot("postgresql://nobody@127.0.0.1:9/none", "audit", "verify")
    assert result.returncode == 1
    assert "database unavailable" in result.stdout
    assert "Traceback" not in result.stderr


def test_bad_database_url_is_a_config_error() -> None:
    result = nexus_bot("mysql://x@y/z", "audit", "verify")
    assert result.returncode == 2
    assert "environment variable DATABASE_URL" in result.stderr


def test_unknown_subcommand_exits_2() -> None:
    result = nexus_bot("sqlite:///unused.db", "audit", "shred")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
