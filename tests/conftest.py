"""Shared fixtures: real databases (SQLite file, PostgreSQL) and external tools.

PostgreSQL and promtool tests skip with a reason on a developer machine that
lacks them, and fail instead when CI=true: CI must never go green by skipping.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.postgres import drop_database

IN_CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REPO_ROOT = Path(__file__).resolve().parent.parent


def unavailable(reason: str) -> None:
    """Skip outside CI, fail inside it."""
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def kubectl() -> str:
    """kubectl with kustomize v4+ (tests/support/kustomize.py), for the manifest tests."""
    from tests.support.kustomize import find_kubectl

    path = find_kubectl()
    if path is None:
        unavailable("kubectl not installed (on PATH or in the venv; .ci/run installs it)")
    assert path is not None
    return path


def _postgres_reachable() -> str | None:
    try:
        engine = sa.create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:  # any driver error means "not here"
        return f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {type(exc).__name__}"
    return None


@pytest.fixture(scope="session")
def postgres_server() -> str:
    problem = _postgres_reachable()
    if problem:
        unavailable(problem)
    return POSTGRES_ADMIN_URL


@pytest.fixture(scope="session")
def postgres_template(postgres_server: str) -> Iterator[str]:
    """A database migrated once per test process, copied for each `engine` test.

    Running the migrations took longer than many tests themselves; CREATE
    DATABASE ... TEMPLATE copies the result. Nothing stays connected to it
    (PostgreSQL refuses to copy a database in use).
    """
    from bot.store.db import make_engine, upgrade_database

    name = f"nexus_template_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    migrated = make_engine(postgres_server.rsplit("/", 1)[0] + f"/{name}")
    upgrade_database(migrated)
    migrated.dispose()
    try:
        yield name
    finally:
        drop_database(admin, name)
        admin.dispose()


@pytest.fixture
def postgres_url(postgres_server: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards: empty, or for
    a test that uses `engine`, a copy of the migrated template."""
    name = f"nexus_test_{uuid.uuid4().hex[:12]}"
    template = ""
    if "engine" in request.fixturenames:
        template = f' TEMPLATE "{request.getfixturevalue("postgres_template")}"'
    admin = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"{template}'))
    url = postgres_server.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        drop_database(admin, name)
        admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per test process, copied for each `engine` test."""
    from bot.store.db import make_engine, upgrade_database

    path = tmp_path_factory.mktemp("sqlite-template") / "migrated.db"
    migrated = make_engine(f"sqlite:///{path}")
    upgrade_database(migrated)
    migrated.dispose()
    # Everything into the main file (closing the last connection does it too):
    # the copy takes that file alone.
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'nexus-test.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Runs the test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'nexus-test.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def engine(database_url: str, request: pytest.FixtureRequest) -> Iterator[sa.Engine]:
    """An engine on a fresh database of each kind, migrated to the latest schema
    (a copy of a template migrated once: see `postgres_template`)."""
    from bot.store.db import make_engine

    if database_url.startswith("sqlite:///"):
        target = Path(database_url.removeprefix("sqlite:///"))
        if not target.exists():
            shutil.copyfile(request.getfixturevalue("sqlite_template"), target)
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        unavailable("promtool not installed (Debian package 'prometheus'; .ci/run installs it)")
    assert path is not None
    return path
