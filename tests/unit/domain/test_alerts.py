"""Parsing Alertmanager, PagerDuty and generic payloads into `Alert`s.

A parser returns alerts or raises `PayloadError` with a readable reason; hostile
input never produces any other exception.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.domain.alerts import (
    MAX_LABELS,
    MAX_TEXT,
    AlertSource,
    AlertStatus,
    PayloadError,
    detect_source,
    parse_alertmanager,
    parse_alerts,
    parse_generic,
    parse_pagerduty,
)

Payload = Callable[[str], Any]


def am(*alerts: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"version": "4", "groupKey": "g", "alerts": list(alerts), **top}


def pd(data: Any = None, **event: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_type": "incident.triggered",
        "resource_type": "incident",
        "data": {"id": "PINC1", "type": "incident", "title": "t"} if data is None else data,
    }
    return {"event": {**base, **event}}


# --- the two samples ----------------------------------------------------------


def test_alertmanager_sample(payload: Payload) -> None:
    (alert,) = parse_alertmanager(payload("alertmanager-frenly-ai.json"))
    assert alert.source is AlertSource.ALERTMANAGER
    assert alert.status is AlertStatus.FIRING
    assert alert.fingerprint == "7c1f0e5a9b3d2c41"
    assert alert.title == "Frenly AI opened a PR that rewrites SSOT anchors without validation"
    assert alert.labels["alertname"] == "FrenlyAIDangerousEdit"
    assert alert.labels["repo"] == "nexus/ssot"
    assert alert.labels["pr"] == "318"
    assert alert.annotations["description"].startswith("PR #318")
    assert alert.starts_at == datetime(2026, 11, 20, 10, 2, 11, tzinfo=UTC)
    assert alert.ends_at is None  # 0001-01-01 means "no end yet"
    assert alert.group_key == '{}/{team="platform"}:{alertname="FrenlyAIDangerousEdit"}'
    assert alert.url is not None
    assert alert.url.startswith("http://prometheus.nexus.internal:9090/graph")
    assert alert.pagerduty_incident_id is None


def test_pagerduty_sample(payload: Payload) -> None:
    alert = parse_pagerduty(payload("pagerduty-incident-triggered.json"))
    assert alert.source is AlertSource.PAGERDUTY
    assert alert.status is AlertStatus.FIRING
    assert alert.title == "Schema mismatch: orders-api rejects SSOT anchor v37"
    assert alert.fingerprint == "Q1NEXUS7SCHEMA"
    assert alert.group_key == "Q1NEXUS7SCHEMA"
    assert alert.pagerduty_incident_id == "Q1NEXUS7SCHEMA"
    assert alert.pagerduty_event_type == "incident.triggered"
    assert alert.urgency == "high"
    assert alert.url == "https://nexus.pagerduty.com/incidents/Q1NEXUS7SCHEMA"
    assert alert.labels == {
        "service": "SSOT Sync",
        "pagerduty_service_id": "PSVC001",
        "incident_key": "ssot-schema-mismatch/orders-api",
        "priority": "P1",
        "urgency": "high",
    }
    assert alert.starts_at == datetime(2026, 11, 20, 9, 14, 3, tzinfo=UTC)


def test_pagerduty_acknowledged_is_still_firing(payload: Payload) -> None:
    alert = parse_pagerduty(payload("pagerduty-incident-acknowledged.json"))
    assert alert.status is AlertStatus.FIRING
    assert alert.pagerduty_event_type == "incident.acknowledged"


def test_pagerduty_resolved(payload: Payload) -> None:
    alert = parse_pagerduty(payload("pagerduty-incident-resolved.json"))
    assert alert.status is AlertStatus.RESOLVED
    assert alert.pagerduty_event_type == "incident.resolved"
    assert alert.group_key == "Q1NEXUS7SCHEMA"


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("alertmanager-frenly-ai.json", AlertSource.ALERTMANAGER),
        ("alertmanager-ssot-group.json", AlertSource.ALERTMANAGER),
        ("pagerduty-incident-triggered.json", AlertSource.PAGERDUTY),
        ("pagerduty-incident-resolved.json", AlertSource.PAGERDUTY),
        ("generic-info.json", AlertSource.GENERIC),
        ("generic-batch.json", AlertSource.GENERIC),
    ],
)
def test_source_is_detected(payload: Payload, name: str, source: AlertSource) -> None:
    body = payload(name)
    assert detect_source(body) is source
    assert {a.source for a in parse_alerts(body)} == {source}


# --- Alertmanager -------------------------------------------------------------


def test_alertmanager_batch_with_resolved_alert(payload: Payload) -> None:
    alerts = parse_alertmanager(payload("alertmanager-ssot-group.json"))
    assert [a.status for a in alerts] == [
        AlertStatus.FIRING,
        AlertStatus.FIRING,
        AlertStatus.RESOLVED,
    ]
    assert alerts[2].ends_at == datetime(2026, 11, 20, 10, 58, 12, tzinfo=UTC)
    assert alerts[0].ends_at is None
    # +01:00 is normalised to UTC
    assert alerts[1].starts_at == datetime(2026, 11, 20, 10, 0, 30, tzinfo=UTC)
    assert {a.group_key for a in alerts} == {'{}:{alertname="SSOTCanonicalFilesMissing"}'}


def test_alertmanager_common_labels_are_merged_alert_labels_win(payload: Payload) -> None:
    alerts = parse_alertmanager(payload("alertmanager-ssot-group.json"))
    for a in alerts:
        assert a.labels["team"] == "platform"  # only in commonLabels
        assert a.labels["repo"] == "nexus/ssot"
        assert a.annotations["runbook"] == "playbooks/lost-canonical-files.yaml"
    assert alerts[0].labels["commit"] == "9fceb02"
    assert "commit" not in alerts[1].labels
    body = am({"labels": {"team": "ssot"}}, commonLabels={"team": "platform", "env": "prod"})
    (only,) = parse_alertmanager(body)
    assert only.labels == {"team": "ssot", "env": "prod"}


def test_alertmanager_title_falls_back_to_alertname_then_default() -> None:
    (a, b, c) = parse_alertmanager(
        am(
            {"annotations": {"title": "by title"}, "labels": {"alertname": "X"}},
            {"labels": {"alertname": "X"}},
            {},
        )
    )
    assert (a.title, b.title, c.title) == ("by title", "X", "Alertmanager alert")


def test_alertmanager_fingerprint_is_derived_when_absent() -> None:
    first, second, third = parse_alertmanager(
        am({"labels": {"a": "1"}}, {"labels": {"a": "1"}}, {"labels": {"a": "2"}})
    )
    assert first.fingerprint == second.fingerprint != third.fingerprint
    assert len(first.fingerprint) == 16


def test_alertmanager_version_may_be_a_number() -> None:
    assert len(parse_alertmanager({"version": 4, "alerts": [{}]})) == 1


def test_alertmanager_naive_time_is_utc_and_z_is_understood() -> None:
    (a,) = parse_alertmanager(am({"startsAt": "2026-11-20T10:00:00", "endsAt": ""}))
    assert a.starts_at == datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    assert a.ends_at is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "Alertmanager payload must be a JSON object"),
        ("alerts", "Alertmanager payload must be a JSON object"),
        ({"version": "3", "alerts": []}, "unsupported Alertmanager webhook version '3'"),
        ({}, "Alertmanager payload needs an 'alerts' list"),
        ({"alerts": {"a": 1}}, "Alertmanager payload needs an 'alerts' list"),
        ({"alerts": "x"}, "Alertmanager payload needs an 'alerts' list"),
        ({"alerts": [1]}, "alerts[0] must be a JSON object"),
        ({"alerts": [{}, "x"]}, "alerts[1] must be a JSON object"),
        ({"alerts": [], "groupKey": 5}, "groupKey must be a string"),
        ({"alerts": [{"labels": ["a"]}]}, "alerts[0].labels must be an object of strings"),
        ({"alerts": [{"labels": "a=b"}]}, "alerts[0].labels must be an object of strings"),
        ({"alerts": [{"annotations": 5}]}, "alerts[0].annotations must be an object of strings"),
        ({"alerts": [], "commonLabels": []}, "commonLabels must be an object of strings"),
        ({"alerts": [{"status": "pending"}]}, "alerts[0].status must be 'firing' or 'resolved'"),
        ({"alerts": [{"startsAt": "yesterday"}]}, "alerts[0].startsAt is not an RFC 3339 time"),
        ({"alerts": [{"startsAt": 1700000000}]}, "alerts[0].startsAt must be an RFC 3339"),
        ({"alerts": [{"endsAt": "2026-13-01T00:00:00Z"}]}, "alerts[0].endsAt is not an RFC"),
        (
            {"alerts": [{"startsAt": "9999-12-31T23:00:00-05:00"}]},
            "alerts[0].startsAt is out of range",
        ),
    ],
)
def test_malformed_alertmanager_payloads(body: Any, message: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_alertmanager(body)
    assert message in str(caught.value)


# --- PagerDuty ----------------------------------------------------------------


def test_pagerduty_incident_nested_in_data_and_custom_details() -> None:
    body = pd(
        {
            "type": "incident_note",
            "incident": {"id": "PINC2", "summary": "from summary", "urgency": "low"},
            "custom_details": {"alertname": "SSOTSchemaMismatch", "service": "ignored"},
        },
        event_type="incident.annotated",
    )
    alert = parse_pagerduty(body)
    assert alert.pagerduty_incident_id == "PINC2"
    assert alert.title == "from summary"
    assert alert.urgency == "low"
    assert alert.labels["alertname"] == "SSOTSchemaMismatch"
    assert alert.labels["urgency"] == "low"


def test_pagerduty_title_falls_back_to_incident_id() -> None:
    alert = parse_pagerduty(pd({"id": "PX", "type": "incident"}))
    assert alert.title == "PagerDuty incident PX"
    assert alert.labels == {}
    assert alert.urgency is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "PagerDuty payload must be a JSON object"),
        ({}, "PagerDuty payload 'event' must be a JSON object"),
        ({"event": []}, "PagerDuty payload 'event' must be a JSON object"),
        (pd(event_type=None), "PagerDuty event needs an 'event_type' string"),
        (pd(event_type=""), "PagerDuty event needs an 'event_type' string"),
        (pd(event_type=7), "PagerDuty event needs an 'event_type' string"),
        (pd(resource_type="service"), "resource_type 'service' is not 'incident'"),
        (pd(resource_type=None), "resource_type None is not 'incident'"),
        (
            {"event": {"event_type": "x", "resource_type": "incident"}},
            "PagerDuty event 'data' must be a JSON object",
        ),
        (pd(data=[1]), "PagerDuty event 'data' must be a JSON object"),
        (pd(data={"type": "incident"}), "PagerDuty incident needs an 'id'"),
        (pd(data={"type": "incident", "id": ""}), "PagerDuty incident needs an 'id'"),
        (pd(data={"type": "incident", "id": 42}), "PagerDuty incident needs an 'id'"),
        (pd(data={"incident": ["x"]}), "PagerDuty event incident must be a JSON object"),
        (
            pd(data={"type": "incident", "id": "P", "created_at": "soon"}),
            "data.created_at is not an RFC 3339 time",
        ),
    ],
)
def test_malformed_pagerduty_payloads(body: Any, message: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_pagerduty(body)
    assert message in str(caught.value)


def test_pagerduty_missing_event_type_in_sample(payload: Payload) -> None:
    body = payload("pagerduty-incident-triggered.json")
    del body["event"]["event_type"]
    with pytest.raises(PayloadError, match="event_type"):
        parse_pagerduty(body)
    body = payload("pagerduty-incident-triggered.json")
    del body["event"]["data"]["id"]
    with pytest.raises(PayloadError, match="needs an 'id'"):
        parse_pagerduty(body)


# --- generic ------------------------------------------------------------------


def test_generic_single_object(payload: Payload) -> None:
    (alert,) = parse_generic(payload("generic-info.json"))
    assert alert.source is AlertSource.GENERIC
    assert alert.title == "orders-api v1.4.2 deployed"
    assert alert.group_key == "deploy/orders-api/1.4.2"
    assert alert.labels == {"service": "orders-api", "change": "deploy"}
    assert alert.starts_at == datetime(2026, 11, 20, 13, 0, tzinfo=UTC)


def test_generic_list_severity_and_status(payload: Payload) -> None:
    alerts = parse_generic(payload("generic-batch.json"))
    assert len(alerts) == 3
    assert alerts[0].labels["severity"] == "warning"
    assert "severity" not in alerts[1].labels
    assert alerts[2].status is AlertStatus.RESOLVED


def test_generic_severity_does_not_override_a_severity_label() -> None:
    (alert,) = parse_generic({"title": "t", "severity": "info", "labels": {"severity": "critical"}})
    assert alert.labels["severity"] == "critical"


def test_generic_fingerprint_depends_on_content() -> None:
    a, b, c = parse_generic([{"title": "x"}, {"title": "x"}, {"title": "y"}])
    assert a.fingerprint == b.fingerprint != c.fingerprint


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (42, "alert.body: Input should be a valid dictionary"),
        ({}, "alert.title: Field required"),
        ({"title": ""}, "alert.title: String should have at least 1 character"),
        ({"title": "x" * 513}, "alert.title: String should have at most 512 characters"),
        ({"title": "x", "bogus": 1}, "alert.bogus: Extra inputs are not permitted"),
        ({"title": "x", "status": "pending"}, "alert.status: Input should be 'firing'"),
        ({"title": "x", "labels": []}, "alert.labels: Input should be a valid dictionary"),
        ([{"title": "x"}, {"title": 5}], "[1].title: Input should be a valid string"),
        ({"title": "x", "starts_at": "now"}, "alert.starts_at is not an RFC 3339 time"),
    ],
)
def test_malformed_generic_payloads(body: Any, message: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_generic(body)
    assert message in str(caught.value)


# --- parse_alerts -------------------------------------------------------------


def test_parse_alerts_with_explicit_source(payload: Payload) -> None:
    body = payload("pagerduty-incident-triggered.json")
    assert parse_alerts(body, "pagerduty")[0].source is AlertSource.PAGERDUTY
    with pytest.raises(PayloadError, match="needs an 'alerts' list"):
        parse_alerts(body, "alertmanager")
    with pytest.raises(PayloadError, match=r"alert\.title: Field required"):
        parse_alerts(body, AlertSource.GENERIC)


@pytest.mark.parametrize("body", [[], {"version": "4", "alerts": []}])
def test_parse_alerts_refuses_an_empty_payload(body: Any) -> None:
    with pytest.raises(PayloadError, match="payload holds no alerts"):
        parse_alerts(body)


def test_parse_alerts_refuses_slack_as_a_payload_format() -> None:
    with pytest.raises(PayloadError, match="source 'slack' has no payload format"):
        parse_alerts({"title": "x"}, AlertSource.SLACK)


# --- hostile input ------------------------------------------------------------


def test_too_many_labels_are_rejected() -> None:
    labels = {f"l{i}": "v" for i in range(10_000)}
    with pytest.raises(PayloadError, match=r"alerts\[0\]\.labels has 10000 entries; at most 256"):
        parse_alertmanager(am({"labels": labels}))
    with pytest.raises(PayloadError, match="commonAnnotations has 10000 entries"):
        parse_alertmanager(am({}, commonAnnotations=labels))
    with pytest.raises(PayloadError, match="labels has 10000 entries"):
        parse_generic({"title": "x", "labels": labels})
    with pytest.raises(PayloadError, match="custom_details has 10000 entries"):
        parse_pagerduty(pd({"id": "P", "type": "incident", "custom_details": labels}))


def test_exactly_max_labels_are_accepted() -> None:
    labels = {f"l{i}": "v" for i in range(MAX_LABELS)}
    (alert,) = parse_alertmanager(am({"labels": labels}))
    assert len(alert.labels) == MAX_LABELS


def test_huge_strings_are_clipped() -> None:
    huge = "x" * 1_000_000
    (alert,) = parse_alertmanager(
        am(
            {
                "labels": {"big": huge, "k" * 10_000: "v"},
                "annotations": {"summary": huge},
                "fingerprint": huge,
            }
        )
    )
    assert len(alert.labels["big"]) == MAX_TEXT
    assert "k" * 256 in alert.labels
    assert max(len(k) for k in alert.labels) == 256
    assert len(alert.annotations["summary"]) == MAX_TEXT
    assert len(alert.title) == 512
    assert len(alert.fingerprint) == 128
    pd_alert = parse_pagerduty(pd({"id": "P", "type": "incident", "title": huge}))
    assert len(pd_alert.title) == 512


def test_nested_objects_become_json_text() -> None:
    (alert,) = parse_alertmanager(
        am({"labels": {"obj": {"b": [1, 2], "a": None}, "list": [1, "x"], "n": None, "i": 3}})
    )
    assert alert.labels["obj"] == '{"a": null, "b": [1, 2]}'
    assert alert.labels["list"] == '[1, "x"]'
    assert alert.labels["n"] == ""
    assert alert.labels["i"] == "3"


def test_non_string_keys_become_strings() -> None:
    (alert,) = parse_alertmanager(am({"labels": {1: "one", None: "none", 2.5: True}}))
    assert alert.labels == {"1": "one", "None": "none", "2.5": "True"}


def test_nested_mixed_keys_and_deep_nesting_give_payload_errors() -> None:
    with pytest.raises(PayloadError, match=r"alerts\[0\]\.labels\.a is nested too deeply"):
        parse_alertmanager(am({"labels": {"a": {1: "x", "b": "y"}}}))
    deep: list[Any] = []
    cursor = deep
    for _ in range(100_000):
        cursor.append([])
        cursor = cursor[0]
    with pytest.raises(PayloadError, match="nested too deeply"):
        parse_alertmanager(am({"labels": {"a": deep}}))
    with pytest.raises(PayloadError, match="nested too deeply"):
        parse_generic({"title": "x", "annotations": {"a": deep}})


def test_parsers_do_not_modify_their_input(payload: Payload) -> None:
    body = payload("alertmanager-ssot-group.json")
    before = copy.deepcopy(body)
    parse_alertmanager(body)
    assert body == before


offsets = st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=14))])
time_strings = st.datetimes(timezones=offsets).map(datetime.isoformat)
json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | time_strings
)
# Keys are mostly strings, as in JSON; integers too, as a decoded YAML file or a caller may have.
json_keys = st.text(max_size=10) | st.integers()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_keys, inner, max_size=4),
    max_leaves=20,
)
alert_keys = st.sampled_from(
    ["labels", "annotations", "status", "startsAt", "endsAt", "fingerprint", "generatorURL"]
)
alertmanager_like = st.fixed_dictionaries(
    {"alerts": st.lists(st.dictionaries(alert_keys, json_values, max_size=5), max_size=3)},
    optional={
        "version": st.sampled_from(["4", 4, "3", None]),
        "groupKey": json_values,
        "commonLabels": json_values,
        "commonAnnotations": json_values,
    },
)
incident_keys = st.sampled_from(
    [
        "id",
        "type",
        "title",
        "summary",
        "service",
        "priority",
        "urgency",
        "incident_key",
        "custom_details",
        "created_at",
        "html_url",
        "incident",
    ]
)
pagerduty_like = st.fixed_dictionaries(
    {
        "event": st.fixed_dictionaries(
            {},
            optional={
                "event_type": st.sampled_from(["incident.triggered", "incident.resolved", ""])
                | json_values,
                "resource_type": st.sampled_from(["incident", "service"]) | json_values,
                "data": st.dictionaries(incident_keys, json_values, max_size=8) | json_values,
            },
        )
    }
)
generic_like = st.dictionaries(
    st.sampled_from(["title", "severity", "status", "key", "labels", "annotations", "starts_at"]),
    json_values,
    max_size=7,
)
anything = json_values | alertmanager_like | pagerduty_like | generic_like | st.lists(generic_like)


def _returns_alerts_or_payload_error(parse: Callable[[Any], Any], body: Any) -> None:
    try:
        result = parse(body)
    except PayloadError as exc:
        assert str(exc)
        return
    alerts = result if isinstance(result, list) else [result]
    for alert in alerts:
        assert alert.title
        assert all(isinstance(v, str) for v in alert.labels.values())


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(body=anything | alertmanager_like)
def test_parse_alertmanager_never_raises_anything_else(body: Any) -> None:
    _returns_alerts_or_payload_error(parse_alertmanager, body)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(body=anything | pagerduty_like)
def test_parse_pagerduty_never_raises_anything_else(body: Any) -> None:
    _returns_alerts_or_payload_error(parse_pagerduty, body)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(body=anything | generic_like)
def test_parse_generic_never_raises_anything_else(body: Any) -> None:
    _returns_alerts_or_payload_error(parse_generic, body)


@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow])
@given(body=anything, source=st.sampled_from([None, "alertmanager", "pagerduty", "generic"]))
def test_parse_alerts_never_raises_anything_else(body: Any, source: str | None) -> None:
    _returns_alerts_or_payload_error(lambda b: parse_alerts(b, source), body)
