"""Property (issue 10, item 7): every body a webhook takes is either refused or applied.

Arbitrary JSON, and mostly-valid Alertmanager and PagerDuty payloads full of
arbitrary text (lone surrogates and NUL included), sent in the encodings
json.loads accepts, to a real `nexus-bot serve` over HTTP on SQLite and on
PostgreSQL. Each answer must be a 400 with a short reason, or a 202 whose inbox
row the real inbox worker then applies — never a row that fails (it would be
retried for minutes, hold up its group, and end as `failed`) and never a 5xx.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from bot.incidents.pagerduty import HANDLED
from bot.ingest.http import MAX_REASON_CHARS
from tests.unit.ingest.conftest import Bot

# Arbitrary text: any code point, lone surrogates and NUL included (st.text
# leaves surrogates out, so characters are drawn one by one).
CHARACTER = st.one_of(
    st.characters(),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    st.sampled_from(["\x00", "\ufeff", '"', "\\", "\u2028", "<", "&", "*", "`", "%"]),
)


def texts(min_size: int = 0, max_size: int = 12) -> st.SearchStrategy[str]:
    return st.lists(CHARACTER, min_size=min_size, max_size=max_size).map("".join)


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts()
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(texts(), children, max_size=4)
    ),
    max_leaves=16,
)

# --- Alertmanager ---------------------------------------------------------------

TIMES = st.sampled_from(
    [
        "2026-11-20T10:02:11.000Z",
        "2026-11-20T10:02:11+14:00",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "",
    ]
)
# Labels that steer the real playbooks, to which the arbitrary labels are added.
KNOWN_LABELS = st.sampled_from(
    [
        {},
        {"alertname": "FrenlyAIDangerousEdit", "severity": "critical", "repo": "nexus/ssot"},
        {"alertname": "ServiceDown", "namespace": "ai", "deployment": "frenly-ai"},
        {"alertname": "HighErrorRate", "error_rate_percent": "7.5", "service": "orders-api"},
        {"incident_key": "ssot-performance/x", "performance_degradation_percent": "1e999"},
        {"incident_key": "frenly-ai/pr-318", "pr": "318", "namespace": "ai"},
    ]
)
LABEL_VALUES = texts() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | JSON
LABELS = st.builds(
    lambda known, extra: {**known, **extra},
    KNOWN_LABELS,
    st.dictionaries(texts(max_size=8), LABEL_VALUES, max_size=4),
)
ANNOTATIONS = st.dictionaries(
    st.sampled_from(["summary", "description", "title", "runbook"]) | texts(max_size=8),
    texts(max_size=40) | LABEL_VALUES,
    max_size=4,
)
AM_ALERT = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["firing", "resolved"]),
        "labels": LABELS,
        "annotations": ANNOTATIONS,
        "startsAt": TIMES,
        "endsAt": TIMES,
    },
    optional={"fingerprint": texts(max_size=20), "generatorURL": texts(max_size=20)},
)
ALERTMANAGER = st.fixed_dictionaries(
    {
        "version": st.just("4"),
        "groupKey": texts(max_size=30),
        "status": st.sampled_from(["firing", "resolved"]),
        "receiver": texts(),
        "groupLabels": LABELS,
        "commonLabels": LABELS,
        "commonAnnotations": ANNOTATIONS,
        "externalURL": texts(),
        "alerts": st.lists(AM_ALERT, max_size=4),
    }
)

# --- PagerDuty --------------------------------------------------------------------


def pagerduty_event(
    event_type: str,
    incident_id: str,
    title: str,
    service: str,
    urgency: str | None,
    details: Any,
    assignees: list[str],
    agent: str,
    content: str,
    created_at: str,
    url: str | None,
    priority: str,
) -> dict[str, Any]:
    incident = {
        "id": incident_id,
        "type": "incident",
        "title": title,
        "html_url": url,
        "incident_key": f"ssot-schema-mismatch/{title}",
        "created_at": created_at,
        "service": {"id": "PSVC001", "summary": service},
        "urgency": urgency,
        "priority": {"summary": priority},
        "assignees": [{"summary": name} for name in assignees],
        "custom_details": details,
    }
    data: dict[str, Any] = incident
    if event_type in ("incident.annotated", "incident.status_update_published"):
        data = {"type": "incident_note", "incident": incident, "content": content}
    elif event_type.startswith("incident.responder."):
        data = {"type": "incident_responder", "incident": incident, "user": {"summary": agent}}
    return {
        "event": {
            "id": "01DZY7S0AAXTXQ2F1JKY8RT3OQ",
            "event_type": event_type,
            "resource_type": "incident",
            "agent": {"summary": agent},
            "data": data,
        }
    }


PAGERDUTY = st.builds(
    pagerduty_event,
    event_type=st.sampled_from([*sorted(HANDLED), "incident.workflow.started"]),
    # A few ids, so later events find the incident earlier ones opened.
    incident_id=st.sampled_from(["Q1PROPERTY", "Q2PROPERTY"]) | texts(min_size=1, max_size=16),
    title=texts(max_size=40),
    service=texts(),
    urgency=st.sampled_from(["high", "low", None]) | texts(),
    details=st.none() | st.dictionaries(texts(max_size=8), LABEL_VALUES, max_size=4),
    assignees=st.lists(texts(), max_size=3),
    agent=texts(),
    content=texts(max_size=40),
    created_at=TIMES,
    url=st.none() | texts(max_size=20),
    priority=texts(),
)

# --- the wire -------------------------------------------------------------------


def ascii_json(value: Any) -> bytes:
    return json.dumps(value).encode()  # surrogates and NUL as \u escapes


def utf8_json(value: Any) -> bytes:
    # Surrogates as UTF-8-style bytes: json.loads(bytes) decodes with surrogatepass.
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def utf8_bom_json(value: Any) -> bytes:
    return b"\xef\xbb\xbf" + utf8_json(value)


def utf16_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-16", "surrogatepass")


Encoder = Callable[[Any], bytes]
# Mostly as senders do; the rest as json.loads also reads them.
ENCODING = st.sampled_from([ascii_json, ascii_json, utf8_json, utf8_bom_json, utf16_json])

ISSUE_BATCH: dict[str, Any] = {
    "version": "4",
    "groupKey": '{}:{alertname="Issue10"}',
    "alerts": [
        {
            "labels": {"alertname": "Issue10", "instance": f"node-{n}"},
            "annotations": {"summary": "ok"},
            "fingerprint": f"issue10-{n}",
        }
        for n in range(100)
    ],
}


def with_annotation(text: str) -> dict[str, Any]:
    body = copy.deepcopy(ISSUE_BATCH)
    body["alerts"][99]["annotations"]["description"] = text
    return body


def deliver(bot: Bot, endpoint: str, body: bytes) -> Any:
    if endpoint == "alertmanager":
        return bot.process.alertmanager(body)
    return bot.process.pagerduty(body, webhook_id=f"wh-{uuid.uuid4().hex}")


def refused_or_applied(bot: Bot, endpoint: str, payload: Any, encode: Encoder) -> None:
    answer = deliver(bot, endpoint, encode(payload))
    assert answer.status_code in (202, 400), (answer.status_code, answer.text[:500])
    event(f"{endpoint}: {answer.status_code}")  # --hypothesis-show-statistics
    if answer.status_code == 400:
        reason = answer.json()["error"]
        assert 0 < len(reason) <= MAX_REASON_CHARS
    assert bot.settled() == [], (endpoint, encode.__name__, repr(payload)[:2000])


PROPERTY = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@settings(PROPERTY, max_examples=40)
@given(endpoint=st.sampled_from(["alertmanager", "pagerduty"]), payload=JSON, encode=ENCODING)
def test_any_json_is_refused_or_applied(
    bot: Bot, endpoint: str, payload: Any, encode: Encoder
) -> None:
    refused_or_applied(bot, endpoint, payload, encode)


@settings(PROPERTY, max_examples=60)
@given(payload=ALERTMANAGER, encode=ENCODING)
@example(payload=with_annotation("\ud800"), encode=ascii_json)
@example(payload=with_annotation("\x00"), encode=ascii_json)
@example(payload=with_annotation("a\ud800\x00b"), encode=utf16_json)
def test_alertmanager_batches_are_refused_or_applied(
    bot: Bot, payload: Any, encode: Encoder
) -> None:
    refused_or_applied(bot, "alertmanager", payload, encode)


@settings(PROPERTY, max_examples=60)
@given(payload=PAGERDUTY, encode=ENCODING)
def test_pagerduty_events_are_refused_or_applied(bot: Bot, payload: Any, encode: Encoder) -> None:
    refused_or_applied(bot, "pagerduty", payload, encode)
