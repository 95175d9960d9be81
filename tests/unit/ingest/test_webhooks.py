"""Regressions for issue 10 (items 6, 7, 9) over real HTTP against `nexus-bot serve`.

Whatever a webhook acknowledges with 202 the inbox worker must be able to
apply, on SQLite and PostgreSQL; what it cannot take is a short 400. One bot
per database serves the module (conftest.py): each test has its own group
key, fingerprints and PagerDuty incident ids.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from bot.ingest.http import MAX_DEPTH, MAX_REASON_CHARS
from tests.unit.ingest.conftest import Bot

DATA = Path(__file__).resolve().parents[2] / "data"


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


def unique() -> str:
    return uuid.uuid4().hex[:10]


def batch(size: int, prefix: str) -> dict[str, Any]:
    """An Alertmanager batch of `size` alerts in group `prefix`, fingerprints `prefix`-n."""
    body = load("alertmanager-frenly-ai.json")
    template = body["alerts"][0]
    body["groupKey"] = f'{{}}/{{run="{prefix}"}}:{{alertname="FrenlyAIDangerousEdit"}}'
    body["alerts"] = []
    for n in range(size):
        alert = copy.deepcopy(template)
        alert["fingerprint"] = f"{prefix}-{n:04d}"
        alert["labels"]["instance"] = f"node-{n}"
        body["alerts"].append(alert)
    return body


def alerts_of(bot: Bot, prefix: str, status: str | None = None) -> object:
    query = "SELECT count(*) FROM alerts WHERE fingerprint LIKE :p"
    if status:
        query += f" AND status = '{status}'"
    return bot.scalar(query, p=f"{prefix}-%")


def annotation(bot: Bot, fingerprint: str, name: str) -> str:
    stored = bot.scalar("SELECT annotations FROM alerts WHERE fingerprint = :f", f=fingerprint)
    annotations = json.loads(stored) if isinstance(stored, str) else stored
    assert isinstance(annotations, dict)
    return str(annotations[name])


def pagerduty_event(incident_id: str) -> dict[str, Any]:
    event = load("pagerduty-incident-triggered.json")
    event["event"]["data"]["id"] = incident_id
    event["event"]["data"]["incident_key"] = f"run/{incident_id}"
    return event


@pytest.mark.parametrize("bad", ["\ud800", "\udfff", "\x00", "before\x00after\ud800"])
def test_one_unstorable_annotation_does_not_hold_up_the_batch_or_its_group(
    bot: Bot, bad: str
) -> None:
    run = unique()
    first = batch(100, run)
    first["alerts"][99]["annotations"]["description"] = bad
    # json.dumps escapes both: a plain ASCII body saying "\ud800" or "\u0000".
    assert "\\u" in json.dumps(first)
    answer = bot.process.alertmanager(first)
    assert answer.status_code == 202, answer.text
    assert answer.json()["alerts"] == 100
    resolved = batch(100, run)
    for alert in resolved["alerts"]:
        alert["status"] = "resolved"
        alert["endsAt"] = "2026-11-20T10:30:00Z"
    assert bot.process.alertmanager(resolved).status_code == 202  # same group, behind it
    assert bot.settled(timeout=15) == []
    assert alerts_of(bot, run) == 100
    assert alerts_of(bot, run, "resolved") == 100  # the later batch was not held up
    kept = annotation(bot, f"{run}-0099", "description")
    assert "\ufffd" in kept and "\x00" not in kept
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in kept)
    if bad.startswith("before"):
        assert kept == "before\ufffdafter\ufffd"


def test_unstorable_text_in_a_pagerduty_title_and_keys_is_applied(bot: Bot) -> None:
    incident = f"Q{unique().upper()}"
    event = pagerduty_event(incident)
    event["event"]["data"]["title"] = "Schema mismatch \ud800 on\x00 orders-api"
    event["event"]["data"]["custom_details"] = {"k\x00ey": "v\udc00", "\ud800": "x"}
    answer = bot.process.pagerduty(event, webhook_id=f"wh-{incident}")
    assert answer.status_code == 202, answer.text
    assert bot.settled() == []
    title = bot.scalar("SELECT title FROM incidents WHERE pagerduty_incident_id = :i", i=incident)
    assert title == "Schema mismatch \ufffd on\ufffd orders-api"


def test_raw_surrogate_bytes_are_applied_too(bot: Bot) -> None:
    """json.loads(bytes) decodes with surrogatepass: UTF-8-encoded surrogates get through."""
    run = unique()
    body = batch(2, run)
    body["alerts"][1]["annotations"]["description"] = "\ud800"
    raw = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    assert b"\xed\xa0\x80" in raw
    answer = bot.process.alertmanager(raw)
    assert answer.status_code == 202, answer.text
    assert bot.settled() == []
    assert annotation(bot, f"{run}-0001", "description") == "\ufffd"


def test_utf16_with_an_escaped_nul_is_applied(bot: Bot) -> None:
    run = unique()
    body = batch(1, run)
    body["alerts"][0]["annotations"]["description"] = "a\x00b"
    answer = bot.process.alertmanager(json.dumps(body).encode("utf-16"))
    assert answer.status_code == 202, answer.text
    assert bot.settled() == []
    assert annotation(bot, f"{run}-0000", "description") == "a\ufffdb"


HUGE_INT = "9" * 5000


@pytest.mark.parametrize(
    "raw",
    [
        b'{"version": "4", "alerts": [], "x": ' + HUGE_INT.encode() + b"}",
        b'{"version": "4", "alerts": [{"labels": {"n": -' + HUGE_INT.encode() + b"}}]}",
    ],
    ids=["top-level", "label"],
)
def test_a_number_over_the_int_digit_limit_is_400_not_500(bot: Bot, raw: bytes) -> None:
    for answer in (bot.process.alertmanager(raw), bot.process.pagerduty(raw)):
        assert answer.status_code == 400, answer.text
        reason = answer.json()["error"]
        assert "more than 4300 digits" in reason and len(reason) <= MAX_REASON_CHARS
    assert bot.settled() == []


@pytest.mark.parametrize(
    "number", [b"1e400", b"NaN", b"-Infinity", b"1" * 5000 + b".5"], ids=lambda n: n[:10]
)
def test_numbers_json_cannot_hold_are_400(bot: Bot, number: bytes) -> None:
    raw = b'{"version": "4", "alerts": [{"labels": {"v": ' + number + b"}}]}"
    for answer in (bot.process.alertmanager(raw), bot.process.pagerduty(raw)):
        assert answer.status_code == 400, answer.text
        assert "number is out of range" in answer.json()["error"]
    assert bot.settled() == []


def test_numbers_in_labels_that_json_can_hold_are_applied(bot: Bot) -> None:
    """Label values become strings; the severity thresholds convert them back to floats."""
    run = unique()
    body = batch(3, run)
    body["alerts"][0]["labels"]["error_rate_percent"] = 1e308
    body["alerts"][1]["labels"]["error_rate_percent"] = int("9" * 4300)
    body["alerts"][2]["labels"]["performance_degradation_percent"] = "9" * 50_000 + "%"
    for alert in body["alerts"]:
        del alert["labels"]["severity"]  # so classification reads the numbers
    del body["commonLabels"]["severity"]
    answer = bot.process.alertmanager(body)
    assert answer.status_code == 202, answer.text
    assert bot.settled() == []
    assert alerts_of(bot, run) == 3
    warning = "SELECT count(*) FROM alerts WHERE fingerprint LIKE :p AND severity = 'warning'"
    assert bot.scalar(warning, p=f"{run}-%") == 3


@pytest.mark.parametrize("digits", [4300, 4301, 8192])
def test_a_pull_request_label_past_the_int_digit_limit_is_applied(bot: Bot, digits: int) -> None:
    """The frenly-ai playbook turns the `pr` label into an int for github.close_pr, later,
    in the worker: a label of more digits than int() takes makes that step invalid,
    not the batch unappliable."""
    run = unique()
    body = batch(1, run)
    body["alerts"][0]["labels"]["pr"] = "9" * digits
    answer = bot.process.alertmanager(body)
    assert answer.status_code == 202, answer.text
    assert bot.settled() == []
    assert alerts_of(bot, run) == 1
    playbook = bot.scalar(
        "SELECT i.playbook_id FROM incidents i JOIN alerts a ON a.incident_id = i.id "
        "WHERE a.fingerprint = :f",
        f=f"{run}-0000",
    )
    assert playbook == "frenly-ai-dangerous-edit"


def test_nesting_deeper_than_the_limit_is_400(bot: Bot) -> None:
    run = unique()
    # The label value starts at depth 4: body, alerts, alert, labels.
    too_deep = json.loads("[" * (MAX_DEPTH - 3) + "]" * (MAX_DEPTH - 3))
    body = batch(1, run)
    body["alerts"][0]["labels"]["v"] = too_deep
    answer = bot.process.alertmanager(body)
    assert answer.status_code == 400, answer.text
    assert f"nested more than {MAX_DEPTH} levels" in answer.json()["error"]
    body["alerts"][0]["labels"]["v"] = too_deep[0]  # one level less: the limit itself
    answer = bot.process.alertmanager(body)
    assert answer.status_code == 202, answer.text
    assert bot.settled() == []
    assert alerts_of(bot, run) == 1


def incompressible(length: int) -> str:
    """CJK text PostgreSQL cannot squeeze under its ~2.7 kB btree entry limit."""
    return "".join(chr(0x4E00 + (n * 7919) % 20000) for n in range(length))


def test_a_group_key_too_long_to_index_is_applied_as_one_group(bot: Bot) -> None:
    run = unique()
    body = batch(3, run)
    body["groupKey"] = run + incompressible(20_000)
    answer = bot.process.alertmanager(body)
    assert answer.status_code == 202, answer.text
    assert bot.settled() == []
    assert alerts_of(bot, run) == 3
    incidents = "SELECT count(DISTINCT incident_id) FROM alerts WHERE fingerprint LIKE :p"
    assert bot.scalar(incidents, p=f"{run}-%") == 1
    more = batch(4, run)
    more["groupKey"] = body["groupKey"]
    assert bot.process.alertmanager(more).status_code == 202  # the same group again
    assert bot.settled() == []
    assert alerts_of(bot, run) == 4
    assert bot.scalar(incidents, p=f"{run}-%") == 1  # …and the same incident


def test_a_pagerduty_incident_id_too_long_to_index_is_400(bot: Bot) -> None:
    event = pagerduty_event(incompressible(5000))
    answer = bot.process.pagerduty(event, webhook_id=f"wh-{unique()}")
    assert answer.status_code == 400, answer.text
    assert "incident id is 5000 characters" in answer.json()["error"]
    assert bot.settled() == []


def test_a_400_reason_never_echoes_a_500_kb_field(bot: Bot) -> None:
    field = "Z" * 500_000
    body = batch(1, unique())
    body["alerts"][0]["status"] = field
    answer = bot.process.alertmanager(body)
    assert answer.status_code == 400
    reason = answer.json()["error"]
    assert reason.startswith("alerts[0].status must be 'firing' or 'resolved', got 'ZZZ")
    assert len(reason) == MAX_REASON_CHARS and reason.endswith("…")
    assert len(answer.content) < 1000

    event = pagerduty_event(f"Q{unique()}")
    event["event"]["resource_type"] = "Y" * 500_000
    answer = bot.process.pagerduty(event)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("PagerDuty event resource_type 'YYY")
    assert len(answer.json()["error"]) == MAX_REASON_CHARS

    unreadable = b'{"version": "4", "alerts": [], "' + b"X" * 500_000 + b"}"
    answer = bot.process.alertmanager(unreadable)
    assert answer.status_code == 400 and "malformed JSON" in answer.json()["error"]
    assert len(answer.json()["error"]) <= MAX_REASON_CHARS

    answer = bot.process.alertmanager({"version": "W" * 500_000, "alerts": []})
    assert answer.status_code == 400 and len(answer.json()["error"]) == MAX_REASON_CHARS

    # The rejections are logged, with their reasons…
    reasons = [
        "alerts[0].status must be 'firing' or 'resolved', got 'ZZZ",
        "PagerDuty event resource_type 'YYY",
        "malformed JSON",
        "unsupported Alertmanager webhook version 'WWW",
    ]
    deadline = time.monotonic() + 10
    while not all(reason in bot.log() for reason in reasons):
        assert time.monotonic() < deadline, f"not logged: {reasons}"
        time.sleep(0.05)
    log = bot.log()
    for letter in "ZYXW":
        assert letter * 1000 not in log  # …but not the field
