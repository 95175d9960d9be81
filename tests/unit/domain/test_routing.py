"""Severity and routes, as the source playbook's "Alert Thresholds" and "Alert Channels" say.

critical: any service down or SSOT sync failure; warning: performance degradation
strictly above 20 % or error rate strictly above 5 %; info: anything else.
critical → PagerDuty + Slack + email, warning → Slack + email, info → Slack.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.alerts import Alert, AlertSource, Severity
from bot.domain.routing import Route, classify, highest, routes_for
from bot.settings import SeverityThresholds

DEFAULT = SeverityThresholds()


def alert(
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    source: AlertSource = AlertSource.ALERTMANAGER,
    urgency: str | None = None,
) -> Alert:
    return Alert(
        source=source,
        fingerprint="f",
        title="t",
        labels=labels or {},
        annotations=annotations or {},
        urgency=urgency,
    )


def severity_of(a: Alert, thresholds: SeverityThresholds = DEFAULT) -> Severity:
    return classify(a, thresholds).severity


# --- thresholds ---------------------------------------------------------------


def test_shipped_defaults_are_the_source_playbook_thresholds() -> None:
    assert DEFAULT.error_rate_percent == 5.0
    assert DEFAULT.performance_degradation_percent == 20.0
    assert DEFAULT.critical_alertnames == ["ServiceDown", "SSOTSyncFailure"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", Severity.INFO),
        ("4.9999", Severity.INFO),
        ("5", Severity.INFO),
        ("5.0", Severity.INFO),
        ("5.0001", Severity.WARNING),
        ("6", Severity.WARNING),
        ("100", Severity.WARNING),
        ("5%", Severity.INFO),
        ("5.0001%", Severity.WARNING),
        (" 7 % ", Severity.WARNING),
        ("7%", Severity.WARNING),
    ],
)
def test_error_rate_boundary(value: str, expected: Severity) -> None:
    assert severity_of(alert({"error_rate_percent": value})) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("19.99", Severity.INFO),
        ("20", Severity.INFO),
        ("20%", Severity.INFO),
        ("20.0", Severity.INFO),
        ("20.5", Severity.WARNING),
        ("20.5%", Severity.WARNING),
        ("75", Severity.WARNING),
    ],
)
def test_performance_degradation_boundary(value: str, expected: Severity) -> None:
    assert severity_of(alert({"performance_degradation_percent": value})) is expected


def test_threshold_values_are_also_read_from_annotations() -> None:
    assert severity_of(alert(annotations={"error_rate_percent": "7%"})) is Severity.WARNING
    assert (
        severity_of(alert(annotations={"performance_degradation_percent": "21"}))
        is Severity.WARNING
    )


def test_label_beats_annotation_of_the_same_name() -> None:
    a = alert({"error_rate_percent": "1"}, annotations={"error_rate_percent": "50"})
    assert severity_of(a) is Severity.INFO


def test_reason_names_the_crossed_threshold() -> None:
    result = classify(alert({"error_rate_percent": "7%"}), DEFAULT)
    assert result.reason == "error rate 7% > 5%"
    result = classify(alert({"performance_degradation_percent": "20.5"}), DEFAULT)
    assert result.reason == "performance degradation 20.5% > 20%"


@pytest.mark.parametrize("alertname", ["ServiceDown", "SSOTSyncFailure"])
def test_service_down_and_ssot_sync_failure_are_critical(alertname: str) -> None:
    result = classify(alert({"alertname": alertname}), DEFAULT)
    assert result.severity is Severity.CRITICAL
    assert alertname in result.reason


def test_other_alertnames_are_not_critical_by_name() -> None:
    assert severity_of(alert({"alertname": "servicedown"})) is Severity.INFO
    assert severity_of(alert({"alertname": "ServiceDownish"})) is Severity.INFO


def test_critical_alertname_beats_thresholds() -> None:
    a = alert({"alertname": "ServiceDown", "error_rate_percent": "1"})
    assert severity_of(a) is Severity.CRITICAL


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("critical", Severity.CRITICAL),
        ("CRITICAL", Severity.CRITICAL),
        (" page ", Severity.CRITICAL),
        ("warning", Severity.WARNING),
        ("warn", Severity.WARNING),
        ("info", Severity.INFO),
        ("none", Severity.INFO),
    ],
)
def test_explicit_severity_label_is_honoured(word: str, expected: Severity) -> None:
    result = classify(alert({"severity": word}), DEFAULT)
    assert result.severity is expected
    assert result.reason.startswith("severity label")


def test_explicit_severity_label_wins_over_thresholds_and_alertname() -> None:
    assert severity_of(alert({"severity": "info", "error_rate_percent": "99"})) is Severity.INFO
    assert severity_of(alert({"severity": "info", "alertname": "ServiceDown"})) is Severity.INFO
    assert (
        severity_of(alert({"severity": "critical", "error_rate_percent": "0"})) is Severity.CRITICAL
    )


def test_unknown_severity_word_falls_back_to_thresholds() -> None:
    assert severity_of(alert({"severity": "apocalyptic"})) is Severity.INFO
    assert (
        severity_of(alert({"severity": "apocalyptic", "error_rate_percent": "9"}))
        is Severity.WARNING
    )


@pytest.mark.parametrize(
    ("urgency", "expected"), [("high", Severity.CRITICAL), ("low", Severity.WARNING)]
)
def test_pagerduty_urgency_is_honoured(urgency: str, expected: Severity) -> None:
    result = classify(alert(source=AlertSource.PAGERDUTY, urgency=urgency), DEFAULT)
    assert result.severity is expected
    assert result.reason == f"PagerDuty urgency {urgency!r}"


def test_urgency_only_counts_for_pagerduty_alerts() -> None:
    assert severity_of(alert(urgency="high")) is Severity.INFO


def test_pagerduty_severity_label_beats_urgency() -> None:
    a = alert({"severity": "info"}, source=AlertSource.PAGERDUTY, urgency="high")
    assert severity_of(a) is Severity.INFO


@pytest.mark.parametrize(
    "garbage", ["", "abc", "NaN", "seven", "7 percent", "%", "5,5", "0x10", "--6", "1e"]
)
def test_garbage_numbers_are_ignored(garbage: str) -> None:
    a = alert({"error_rate_percent": garbage, "performance_degradation_percent": garbage})
    assert severity_of(a) is Severity.INFO


def test_custom_thresholds_are_used() -> None:
    strict = SeverityThresholds(
        error_rate_percent=1,
        performance_degradation_percent=50,
        critical_alertnames=["DatabaseDown"],
    )
    assert severity_of(alert({"error_rate_percent": "1.5"}), strict) is Severity.WARNING
    assert severity_of(alert({"error_rate_percent": "1"}), strict) is Severity.INFO
    assert severity_of(alert({"performance_degradation_percent": "40"}), strict) is Severity.INFO
    assert (
        severity_of(alert({"performance_degradation_percent": "50.1"}), strict) is Severity.WARNING
    )
    assert severity_of(alert({"alertname": "DatabaseDown"}), strict) is Severity.CRITICAL
    assert severity_of(alert({"alertname": "ServiceDown"}), strict) is Severity.INFO


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(threshold=st.floats(min_value=0, max_value=100, allow_nan=False), rate=finite)
def test_error_rate_warns_exactly_when_strictly_above_threshold(
    threshold: float, rate: float
) -> None:
    thresholds = SeverityThresholds(error_rate_percent=threshold)
    got = severity_of(alert({"error_rate_percent": repr(rate)}), thresholds)
    assert got is (Severity.WARNING if rate > threshold else Severity.INFO)


@given(rate=finite, percent_sign=st.booleans())
def test_error_rate_at_or_below_five_is_never_warning(rate: float, percent_sign: bool) -> None:
    text = repr(rate) + ("%" if percent_sign else "")
    got = severity_of(alert({"error_rate_percent": text}))
    assert (got is Severity.WARNING) == (rate > 5)


@given(degradation=finite)
def test_degradation_warns_exactly_when_strictly_above_20(degradation: float) -> None:
    got = severity_of(alert({"performance_degradation_percent": repr(degradation)}))
    assert (got is Severity.WARNING) == (degradation > 20)


# --- routes -------------------------------------------------------------------

EXPECTED_ROUTES = {
    (Severity.CRITICAL, AlertSource.ALERTMANAGER): [Route.PAGERDUTY, Route.SLACK, Route.EMAIL],
    (Severity.CRITICAL, AlertSource.GENERIC): [Route.PAGERDUTY, Route.SLACK, Route.EMAIL],
    (Severity.CRITICAL, AlertSource.SLACK): [Route.PAGERDUTY, Route.SLACK, Route.EMAIL],
    (Severity.CRITICAL, AlertSource.PAGERDUTY): [Route.SLACK, Route.EMAIL],
    (Severity.WARNING, AlertSource.ALERTMANAGER): [Route.SLACK, Route.EMAIL],
    (Severity.WARNING, AlertSource.GENERIC): [Route.SLACK, Route.EMAIL],
    (Severity.WARNING, AlertSource.SLACK): [Route.SLACK, Route.EMAIL],
    (Severity.WARNING, AlertSource.PAGERDUTY): [Route.SLACK, Route.EMAIL],
    (Severity.INFO, AlertSource.ALERTMANAGER): [Route.SLACK],
    (Severity.INFO, AlertSource.GENERIC): [Route.SLACK],
    (Severity.INFO, AlertSource.SLACK): [Route.SLACK],
    (Severity.INFO, AlertSource.PAGERDUTY): [Route.SLACK],
}


def test_every_severity_and_source_is_covered() -> None:
    assert set(EXPECTED_ROUTES) == {(s, src) for s in Severity for src in AlertSource}


@pytest.mark.parametrize(("severity", "source"), sorted(EXPECTED_ROUTES))
def test_routes(severity: Severity, source: AlertSource) -> None:
    assert routes_for(severity, source) == EXPECTED_ROUTES[(severity, source)]


@given(severity=st.sampled_from(Severity))
def test_pagerduty_alert_is_never_routed_back_to_pagerduty(severity: Severity) -> None:
    assert Route.PAGERDUTY not in routes_for(severity, AlertSource.PAGERDUTY)


def test_routes_for_returns_a_fresh_list() -> None:
    routes = routes_for(Severity.CRITICAL, AlertSource.ALERTMANAGER)
    routes.clear()
    assert routes_for(Severity.CRITICAL, AlertSource.ALERTMANAGER) == [
        Route.PAGERDUTY,
        Route.SLACK,
        Route.EMAIL,
    ]


@pytest.mark.parametrize(
    ("severities", "expected"),
    [
        ([Severity.INFO, Severity.CRITICAL, Severity.WARNING], Severity.CRITICAL),
        ([Severity.INFO, Severity.WARNING], Severity.WARNING),
        ([Severity.INFO], Severity.INFO),
        ([], Severity.INFO),
    ],
)
def test_an_incident_is_as_severe_as_its_most_severe_alert(
    severities: list[Severity], expected: Severity
) -> None:
    assert highest(severities) is expected
