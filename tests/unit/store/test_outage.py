"""OutageLog: one warning per outage, a line when it ends, repeats only at DEBUG."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
import structlog

from bot.logging import configure_logging
from bot.store.outage import OutageLog


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging("info", json=True, stream=stream)
    yield stream
    structlog.reset_defaults()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def events(stream: io.StringIO) -> list[tuple[str, str, str]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [(line["level"], line["event"], line["worker"]) for line in lines]


def test_one_warning_per_outage_and_one_line_when_it_ends(log_stream: io.StringIO) -> None:
    outage = OutageLog("inbox")
    error = sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused\\nmore"))
    assert not outage.down
    for _ in range(30):
        outage.failed(error)
    assert outage.down
    outage.ok()
    outage.ok()  # nothing more to say
    outage.failed(error)
    assert events(log_stream) == [
        ("warning", "database unavailable: retrying quietly until it is back", "inbox"),
        ("info", "database available again", "inbox"),
        ("warning", "database unavailable: retrying quietly until it is back", "inbox"),
    ]
    first = json.loads(log_stream.getvalue().splitlines()[1])
    assert first["failed_passes"] == 30


def test_repeats_are_debug_lines(log_stream: io.StringIO) -> None:
    configure_logging("debug", json=True, stream=log_stream)
    outage = OutageLog("outbox")
    outage.failed(RuntimeError("gone"))
    outage.failed(RuntimeError("still gone"))
    assert [level for level, _, _ in events(log_stream)] == ["warning", "debug"]
