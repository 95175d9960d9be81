"""Fixtures for the store tests: a Repository on the migrated `engine` (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier
from typing import TypeVar

import pytest
import sqlalchemy as sa

from bot.store.repository import Repository

T = TypeVar("T")


@pytest.fixture
def repo(engine: sa.Engine) -> Repository:
    return Repository(engine)


def _race(workers: int, fn: Callable[[int], T]) -> list[T]:
    """Run fn(i) in `workers` threads released at the same instant; re-raise any error."""
    barrier = Barrier(workers)

    def run(i: int) -> T:
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run, i) for i in range(workers)]
        return [f.result() for f in futures]


@pytest.fixture
def race() -> Callable[[int, Callable[[int], T]], list[T]]:
    """``race(n, fn)``: call fn(0..n-1) concurrently, all released together."""
    return _race
