"""Fixtures for the Slack tests: the fake Slack over HTTP, a migrated database, workers."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from bot.store.db import make_engine, upgrade_database
from bot.store.repository import Repository
from tests.fakes.slack import FakeSlack

_keys = itertools.count()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def repo(engine: sa.Engine) -> Repository:
    return Repository(engine)


@pytest.fixture
def new_incident(repo: Repository) -> Callable[[], int]:
    def create() -> int:
        incident, _ = repo.open_incident(
            key=f"test-{next(_keys)}",
            source="alertmanager",
            title="SSOT error rate",
            severity="critical",
            playbook_id="ssot-error-rate",
            labels={},
        )
        return incident.id

    return create


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[sa.Engine]:
    """For tests about timing only: one backend is enough."""
    engine = make_engine(sqlite_url)
    upgrade_database(engine)
    yield engine
    engine.dispose()
