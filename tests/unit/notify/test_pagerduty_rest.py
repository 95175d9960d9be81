"""PagerDutyRest end to end: the real pagerduty client, over TLS, against the fake."""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pagerduty
import pytest

from bot.notify.email import NotifyError
from bot.notify.pagerduty import PagerDutyEvents, PagerDutyRest, pagerduty_from_settings
from bot.settings import Settings
from tests.fakes.pagerduty import FakePagerDuty
from tests.unit.notify.notify_support import FAST

Closing = Callable[[Any], Any]
SECRET_TOKEN = "y_NbAkKc66ryYTWUXYEu-secret"


def _full_text(err: BaseException) -> str:
    """Everything a log line with exc_info would show."""
    return "".join(traceback.format_exception(err)) + repr(err)


def test_set_escalation_level_end_to_end(pd: FakePagerDuty, rest: PagerDutyRest) -> None:
    incident_id = pd.add_incident(title="SSOT sync failure")

    incident = rest.set_escalation_level(incident_id, 3)

    assert incident["id"] == incident_id
    assert incident["escalation_level"] == 3
    assert pd.incident(incident_id).escalation_level == 3
    [request] = pd.requests(method="PUT")
    assert request.path == f"/incidents/{incident_id}"
    assert request.body == {"incident": {"type": "incident_reference", "escalation_level": 3}}
    assert request.header("Authorization") == f"Token token={pd.token}"
    assert request.header("From") == pd.user_email
    assert request.header("Accept") == "application/vnd.pagerduty+json;version=2"


def test_add_note_end_to_end(pd: FakePagerDuty, rest: PagerDutyRest) -> None:
    incident_id = pd.add_incident()

    note = rest.add_note(incident_id, "Escalated to level 2: Engineering manager")

    assert note["content"] == "Escalated to level 2: Engineering manager"
    assert note["user"]["summary"] == pd.user_email
    [stored] = pd.incident(incident_id).notes
    assert stored["id"] == note["id"]
    [request] = pd.requests(method="POST")
    assert request.path == f"/incidents/{incident_id}/notes"
    assert request.body == {"note": {"content": "Escalated to level 2: Engineering manager"}}
    assert request.token == pd.token
    assert request.header("From") == pd.user_email


def test_acknowledge_and_resolve(pd: FakePagerDuty, rest: PagerDutyRest) -> None:
    incident_id = pd.add_incident()

    assert rest.acknowledge(incident_id)["status"] == "acknowledged"
    assert rest.resolve(incident_id)["status"] == "resolved"

    assert pd.incident(incident_id).status == "resolved"
    bodies = [r.body for r in pd.requests(method="PUT")]
    assert bodies == [
        {"incident": {"type": "incident_reference", "status": "acknowledged"}},
        {"incident": {"type": "incident_reference", "status": "resolved"}},
    ]
    # PagerDuty refuses to touch a resolved incident; the 400 says why.
    with pytest.raises(NotifyError, match="Incident Already Resolved") as caught:
        rest.set_escalation_level(incident_id, 2)
    assert caught.value.status == 400
    assert not caught.value.retryable


def test_without_from_header_pagerduty_answers_400(pd: FakePagerDuty, closing: Closing) -> None:
    """What the wrapper prevents: the bare client, no default_from, is refused."""
    incident_id = pd.add_incident()
    client = closing(
        pagerduty.RestApiV2Client(pd.token, base_url=pd.url, verify=pd.client_context())
    )
    with pytest.raises(pagerduty.HttpError) as caught:
        client.rpost(f"/incidents/{incident_id}/notes", json={"content": "hi"})
    response = caught.value.response
    assert response is not None
    assert response.status_code == 400
    assert "From" in response.text
    assert pd.incident(incident_id).notes == []
    [request] = pd.requests()
    assert request.header("From") is None


@pytest.mark.parametrize("from_email", ["", "not-an-email", "two words@example.com"])
def test_missing_or_malformed_from_is_refused_up_front(pd: FakePagerDuty, from_email: str) -> None:
    with pytest.raises(ValueError, match="From must be a PagerDuty user's email"):
        PagerDutyRest(pd.token, from_email, pd.url, verify=pd.ca_file)
    assert pd.requests() == []


def test_from_who_is_not_a_pagerduty_user(pd: FakePagerDuty, closing: Closing) -> None:
    incident_id = pd.add_incident()
    rest = closing(
        PagerDutyRest(pd.token, "stranger@example.com", pd.url, verify=pd.ca_file, **FAST)
    )

    with pytest.raises(NotifyError) as caught:
        rest.add_note(incident_id, "hello")

    assert caught.value.status == 400
    assert "Requester User Not Found" in str(caught.value)
    assert f"/incidents/{incident_id}/notes" in str(caught.value)


def test_bad_token_is_401_and_the_token_never_shows(pd: FakePagerDuty, closing: Closing) -> None:
    incident_id = pd.add_incident()
    rest = closing(PagerDutyRest(SECRET_TOKEN, pd.user_email, pd.url, verify=pd.ca_file, **FAST))

    with pytest.raises(NotifyError) as caught:
        rest.set_escalation_level(incident_id, 2)

    err = caught.value
    assert err.status == 401
    assert not err.retryable
    assert "HTTP 401" in str(err)
    text = _full_text(err)
    assert SECRET_TOKEN not in text
    assert SECRET_TOKEN[-4:] not in text  # the library's own message has the last four
    [request] = pd.requests()
    assert request.token == SECRET_TOKEN  # it was sent, once: 401 is not retried


def test_a_server_echoing_the_token_is_redacted(pd: FakePagerDuty, closing: Closing) -> None:
    incident_id = pd.add_incident()
    rest = closing(PagerDutyRest(SECRET_TOKEN, pd.user_email, pd.url, verify=pd.ca_file, **FAST))
    echo = {"error": {"message": f"token {SECRET_TOKEN} is revoked", "code": 2001}}
    pd.fail_next(1, 400, body=json.dumps(echo))

    with pytest.raises(NotifyError) as caught:
        rest.add_note(incident_id, "x")

    assert SECRET_TOKEN not in _full_text(caught.value)
    assert "token [redacted] is revoked" in str(caught.value)


def test_unknown_incident_is_404(rest: PagerDutyRest) -> None:
    with pytest.raises(NotifyError, match=r"PUT /incidents/PNOPE404 .*HTTP 404: Not Found") as c:
        rest.set_escalation_level("PNOPE404", 2)
    assert c.value.status == 404
    assert not c.value.retryable


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retryable_notify_errors(
    pd: FakePagerDuty, rest: PagerDutyRest, status: int
) -> None:
    incident_id = pd.add_incident()
    pd.fail_next(1, status)

    with pytest.raises(NotifyError) as caught:
        rest.add_note(incident_id, "x")

    err = caught.value
    assert err.status == status
    assert err.retryable
    assert f"HTTP {status}" in str(err)
    assert len(str(err)) <= 300  # the HTML page is trimmed to one line
    assert "\n" not in str(err)
    assert pd.incident(incident_id).notes == []


def test_rate_limit_is_retried_then_succeeds(pd: FakePagerDuty, rest: PagerDutyRest) -> None:
    incident_id = pd.add_incident()
    pd.rate_limit_next(2)

    rest.set_escalation_level(incident_id, 2)

    assert [r.status for r in pd.requests()] == [429, 429, 200]
    assert pd.incident(incident_id).escalation_level == 2


def test_rate_limit_retries_are_bounded(pd: FakePagerDuty, rest: PagerDutyRest) -> None:
    """The library alone would retry a 429 forever."""
    incident_id = pd.add_incident()
    pd.rate_limit_next(100)

    with pytest.raises(NotifyError, match="Rate Limit Exceeded") as caught:
        rest.set_escalation_level(incident_id, 2)

    assert caught.value.status == 429
    assert caught.value.retryable
    assert len(pd.requests()) == 3  # the call and retries=2


def test_escalation_level_beyond_the_policy(pd: FakePagerDuty, rest: PagerDutyRest) -> None:
    incident_id = pd.add_incident()
    with pytest.raises(NotifyError, match="Escalation Level is not valid"):
        rest.set_escalation_level(incident_id, pd.levels + 1)
    with pytest.raises(NotifyError, match="escalation level must be >= 1"):
        rest.set_escalation_level(incident_id, 0)


@pytest.mark.parametrize("bad_id", ["../users/PABC", "P1?x=1", "", "P 1"])
def test_incident_id_cannot_change_the_path(
    pd: FakePagerDuty, rest: PagerDutyRest, bad_id: str
) -> None:
    with pytest.raises(NotifyError, match="not an incident id"):
        rest.add_note(bad_id, "x")
    assert pd.requests() == []


def test_unreachable_api_is_a_retryable_error(closed_port: int, closing: Closing) -> None:
    rest = closing(
        PagerDutyRest(SECRET_TOKEN, "bot@example.com", f"https://127.0.0.1:{closed_port}", **FAST)
    )
    with pytest.raises(NotifyError, match="ConnectError") as caught:
        rest.acknowledge("PABC123")
    assert caught.value.status is None
    assert caught.value.retryable
    assert SECRET_TOKEN not in _full_text(caught.value)


def test_certificate_is_verified(pd: FakePagerDuty, closing: Closing) -> None:
    """Without the test CA the fake's certificate is rejected: TLS is real."""
    incident_id = pd.add_incident()
    rest = closing(PagerDutyRest(pd.token, pd.user_email, pd.url, verify=True, **FAST))

    with pytest.raises(NotifyError, match="CERTIFICATE_VERIFY_FAILED") as caught:
        rest.add_note(incident_id, "x")

    assert not caught.value.retryable  # a trust problem does not pass by waiting
    assert pd.requests() == []  # nothing reached the HTTP layer


def test_http_urls_are_refused(pd: FakePagerDuty) -> None:
    with pytest.raises(ValueError, match="https://"):
        PagerDutyRest(pd.token, pd.user_email, "http://127.0.0.1:1")
    with pytest.raises(ValueError, match="https://"):
        PagerDutyEvents(pd.routing_key, "http://127.0.0.1:1")


def test_repr_has_no_token(rest: PagerDutyRest, pd: FakePagerDuty) -> None:
    assert pd.token not in repr(rest)


@pytest.fixture
def clean_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting from the environment, no config/nexus.yaml in the working directory."""
    for name in list(os.environ):
        if name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.mark.usefixtures("clean_settings")
def test_factory_from_settings(closing: Closing) -> None:

    assert pagerduty_from_settings(Settings()) == (None, None)
    # A token without From is not enough for REST (disabled_features says so).
    rest, events = pagerduty_from_settings(Settings(pagerduty_api_token="t"))
    assert (rest, events) == (None, None)

    settings = Settings(
        pagerduty_api_token="t0ken",
        pagerduty_from_email="bot@example.com",
        pagerduty_routing_key="R" * 32,
        pagerduty_api_url="https://api.eu.pagerduty.com",
        pagerduty_events_url="https://events.eu.pagerduty.com",
    )
    rest, events = pagerduty_from_settings(settings)
    assert isinstance(rest, PagerDutyRest)
    assert isinstance(events, PagerDutyEvents)
    closing(rest)
    closing(events)
    assert "https://api.eu.pagerduty.com" in repr(rest)
    assert "https://events.eu.pagerduty.com" in repr(events)


def test_an_httpx2_transport_replaces_the_network(closing: Closing) -> None:
    """The other way in: no server, no TLS; ``verify`` is then ignored, as in httpx2."""
    seen: list[httpx2.Request] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        body = json.dumps({"incident": {"id": "PABC123", "status": "resolved"}}).encode()
        # A streamed body, as a real transport gives: with json=/content= httpx2 never
        # sets response.elapsed, which the pagerduty client reads after every call.
        return httpx2.Response(
            200, headers={"Content-Type": "application/json"}, stream=httpx2.ByteStream(body)
        )

    rest = closing(
        PagerDutyRest(
            "tok", "bot@example.com", transport=httpx2.MockTransport(answer), verify=False
        )
    )

    assert rest.resolve("PABC123")["status"] == "resolved"
    [request] = seen
    assert str(request.url) == "https://api.pagerduty.com/incidents/PABC123"
    assert request.headers["From"] == "bot@example.com"


@pytest.mark.usefixtures("clean_settings")
def test_factory_clients_reach_the_fake_with_the_ca_bundle_setting(
    pd: FakePagerDuty, closing: Closing
) -> None:
    settings = Settings(
        pagerduty_api_token=pd.token,
        pagerduty_from_email=pd.user_email,
        pagerduty_routing_key=pd.routing_key,
        pagerduty_api_url=pd.url,
        pagerduty_events_url=pd.events_url,
        pagerduty_ca_bundle=pd.ca_file,
    )
    rest, events = pagerduty_from_settings(settings)
    assert rest is not None
    assert events is not None
    closing(rest)
    closing(events)
    incident_id = pd.add_incident()

    rest.set_escalation_level(incident_id, 2)
    events.trigger("k-settings", "s", "src")

    assert pd.incident(incident_id).escalation_level == 2
    assert "k-settings" in pd.alerts()
