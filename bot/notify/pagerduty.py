"""PagerDuty: the REST API v2 (escalation level, notes, status) and the Events API v2.

Thin wrappers over the official `pagerduty` 7.x clients (built on httpx2). They
add what the bot needs around them:

* every failure becomes `NotifyError` with the HTTP status (or None when no
  answer came), a one-line message trimmed to a few hundred characters and
  no credential in it or in its traceback (``raise … from None``: the
  library's own 401 text carries the token's last four characters);
* bounded retries: the library retries HTTP 429 forever and Events 5xx up to
  six times with doubling sleeps; here ``retries`` caps both (and network
  errors), and ``backoff`` is the first wait;
* a per-request ``timeout`` (the library's default is 60 s).

How tests reach a local fake: real TLS, not a transport. The clients refuse a
base URL that is not ``https://`` (`pagerduty.ApiClient.url`), but pass extra
keyword arguments through to `httpx2.Client`, so ``verify`` reaches the real
TLS stack. The fake PagerDuty of the tests (tests/fakes/pagerduty.py) serves
https with a certificate from a CA made for the test run, and ``verify=<CA
file>`` trusts it: the unchanged client over the production code path,
certificate check included. ``verify`` also serves a self-hosted proxy with a
private CA (or set SSL_CERT_FILE, which httpx2 honours when ``verify=True``).
``transport`` (an `httpx2.BaseTransport`) is accepted for callers that cannot
run a server; when given, ``verify`` is ignored, as in httpx2. With
`httpx2.MockTransport`, answer with ``stream=httpx2.ByteStream(...)``: a
response built with ``json=`` never gets ``elapsed`` set, and the pagerduty
client reads it after every request.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self

import httpx2
import pagerduty

from bot.notify.email import NotifyError, redact, trim

if TYPE_CHECKING:
    from bot.settings import Settings

Verify = ssl.SSLContext | str | bool
# PagerDuty object IDs are short upper-case alphanumerics (PT4KHLK, Q0RIJJZL24RC6W);
# anything else must not reach a URL path.
_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")
_SEVERITIES = ("critical", "error", "warning", "info")
_SUMMARY_MAX = 1024  # Events API v2 rejects longer summaries
_DEDUP_KEY_MAX = 255


def _http_options(transport: httpx2.BaseTransport | None, verify: Verify) -> dict[str, Any]:
    if transport is not None:
        return {"transport": transport}
    if isinstance(verify, str):
        # httpx2 deprecates verify=<path>; an SSLContext does the same without a warning.
        return {"verify": ssl.create_default_context(cafile=verify)}
    return {"verify": verify}


def _bound_retries(client: Any, *, timeout: float, retries: int, backoff: float) -> None:
    if retries < 1:
        # In the library 0 means "default", which for 429 is "retry forever".
        raise ValueError("retries must be at least 1")
    client.timeout = timeout
    client.max_network_attempts = retries
    for status in {429, *client.retry}:
        client.retry[status] = retries
    # The library multiplies the timer by sleep_timer_base before each sleep.
    client.sleep_timer = backoff / client.sleep_timer_base


def _response_detail(response: httpx2.Response) -> str:
    """PagerDuty's words: REST {"error": {"message", "errors"}}, Events {"message", "errors"}."""
    try:
        body = response.json()
    except ValueError:
        return response.text
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and "message" in error:
            errors = error.get("errors") or []
            extra = "; ".join(str(e) for e in errors) if isinstance(errors, list) else ""
            return f"{error['message']}: {extra}" if extra else str(error["message"])
    return response.text


class _Client:
    """Shared error mapping: the one place a library exception becomes NotifyError."""

    def __init__(self, client: Any, secrets: list[str]) -> None:
        self._client = client
        self._secrets = secrets

    def close(self) -> None:
        """Close pooled connections (the client keeps them alive between calls)."""
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except pagerduty.Error as exc:
            response: httpx2.Response | None = exc.response
            if response is not None:
                raise self._http_error(what, response, str(exc.msg)) from None
            # No HTTP answer (connection refused, TLS failure, timeout) after retries.
            cause = exc.__cause__ or exc
            detail = f"{type(cause).__name__}: {cause}"
            raise self._error(what, detail, None, not _untrusted(cause)) from None
        except httpx2.HTTPError as exc:
            raise self._error(what, f"{type(exc).__name__}: {exc}", None, True) from None

    def _http_error(self, what: str, response: httpx2.Response, msg: str) -> NotifyError:
        status = response.status_code
        if response.is_success:  # answered, but not with what the API promises
            return self._error(what, f"unexpected answer: {msg}", status, False)
        detail = f"HTTP {status}: {_response_detail(response)}"
        return self._error(what, detail, status, status == 429 or status >= 500)

    def _error(self, what: str, detail: str, status: int | None, retryable: bool) -> NotifyError:
        # Redact before trimming: a cut could leave half a secret behind.
        message = trim(redact(f"PagerDuty {what}: {detail}", self._secrets), 300)
        return NotifyError(message, status=status, retryable=retryable)


def _untrusted(exc: BaseException) -> bool:
    """A certificate the CA bundle rejects: a configuration problem, not a passing one."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _check_id(incident_id: str) -> str:
    if not _ID.match(incident_id):
        raise NotifyError(f"PagerDuty: not an incident id: {trim(repr(incident_id), 80)}")
    return incident_id


class PagerDutyRest(_Client):
    """Incident updates through the REST API v2, acting as the user `from_email`.

    PagerDuty requires the From header (a user's email) on writes made with an
    account-level token; the client sends it on every request.
    """

    def __init__(
        self,
        api_token: str,
        from_email: str,
        base_url: str = "https://api.pagerduty.com",
        *,
        transport: httpx2.BaseTransport | None = None,
        verify: Verify = True,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 1.0,
    ) -> None:
        if not api_token:
            raise ValueError("PagerDuty REST API: an API token is required")
        if "@" not in from_email or any(c.isspace() for c in from_email):
            raise ValueError(
                f"PagerDuty REST API: From must be a PagerDuty user's email, got {from_email!r}"
            )
        if not base_url.startswith("https://"):
            raise ValueError(f"PagerDuty REST API: expected an https:// URL, got {base_url!r}")
        client = pagerduty.RestApiV2Client(
            api_token,
            default_from=from_email,
            base_url=base_url.rstrip("/"),
            **_http_options(transport, verify),
        )
        _bound_retries(client, timeout=timeout, retries=retries, backoff=backoff)
        super().__init__(client, [api_token])
        self.from_email = from_email

    def __repr__(self) -> str:
        return f"PagerDutyRest({self._client.url!r}, from_email={self.from_email!r})"

    def set_escalation_level(self, incident_id: str, level: int) -> dict[str, Any]:
        """Move the incident to escalation policy level `level` (1-based); returns it."""
        if level < 1:
            raise NotifyError(f"PagerDuty: escalation level must be >= 1, got {level}")
        return self._update(incident_id, f"escalation level {level}", {"escalation_level": level})

    def acknowledge(self, incident_id: str) -> dict[str, Any]:
        return self._update(incident_id, "acknowledge", {"status": "acknowledged"})

    def resolve(self, incident_id: str) -> dict[str, Any]:
        return self._update(incident_id, "resolve", {"status": "resolved"})

    def add_note(self, incident_id: str, content: str) -> dict[str, Any]:
        """Append a note to the incident's timeline; returns the created note."""
        path = f"/incidents/{_check_id(incident_id)}/notes"
        note = self._call(
            f"POST {path}", lambda: self._client.rpost(path, json={"content": content})
        )
        return dict(note)

    def _update(self, incident_id: str, what: str, fields: dict[str, Any]) -> dict[str, Any]:
        path = f"/incidents/{_check_id(incident_id)}"
        body = {"type": "incident_reference", **fields}
        # rput wraps the body as {"incident": {...}} and unwraps the answer.
        incident = self._call(f"PUT {path} ({what})", lambda: self._client.rput(path, json=body))
        return dict(incident)


class PagerDutyEvents(_Client):
    """Alerts through the Events API v2, identified by their dedup key."""

    def __init__(
        self,
        routing_key: str,
        base_url: str = "https://events.pagerduty.com",
        *,
        transport: httpx2.BaseTransport | None = None,
        verify: Verify = True,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 1.0,
    ) -> None:
        if not routing_key:
            raise ValueError("PagerDuty Events API: a routing key is required")
        if not base_url.startswith("https://"):
            raise ValueError(f"PagerDuty Events API: expected an https:// URL, got {base_url!r}")
        client = pagerduty.EventsApiV2Client(
            routing_key, base_url=base_url.rstrip("/"), **_http_options(transport, verify)
        )
        _bound_retries(client, timeout=timeout, retries=retries, backoff=backoff)
        super().__init__(client, [routing_key])

    def __repr__(self) -> str:
        return f"PagerDutyEvents({self._client.url!r})"

    def trigger(
        self,
        dedup_key: str,
        summary: str,
        source: str,
        severity: str = "critical",
        custom_details: dict[str, Any] | None = None,
    ) -> str:
        """Open (or re-trigger) the alert `dedup_key`; returns the dedup key PagerDuty kept."""
        if severity not in _SEVERITIES:
            raise NotifyError(f"PagerDuty: severity must be one of {_SEVERITIES}, got {severity!r}")
        line = " ".join(summary.split()) or "(no summary)"
        if len(line) > _SUMMARY_MAX:
            line = line[: _SUMMARY_MAX - 1] + "…"
        key = self._check_key(dedup_key)
        return str(
            self._call(
                f"trigger {key}",
                lambda: self._client.trigger(
                    line,
                    source,
                    dedup_key=key,
                    severity=severity,
                    custom_details=dict(custom_details or {}),
                ),
            )
        )

    def acknowledge(self, dedup_key: str) -> str:
        key = self._check_key(dedup_key)
        return str(self._call(f"acknowledge {key}", lambda: self._client.acknowledge(key)))

    def resolve(self, dedup_key: str) -> str:
        key = self._check_key(dedup_key)
        return str(self._call(f"resolve {key}", lambda: self._client.resolve(key)))

    @staticmethod
    def _check_key(dedup_key: str) -> str:
        if not dedup_key or len(dedup_key) > _DEDUP_KEY_MAX:
            raise NotifyError(
                f"PagerDuty: dedup key must be 1-{_DEDUP_KEY_MAX} characters, got {len(dedup_key)}"
            )
        return dedup_key


def pagerduty_from_settings(
    settings: Settings,
    *,
    verify: Verify | None = None,
    retries: int = 2,
    backoff: float = 1.0,
) -> tuple[PagerDutyRest | None, PagerDutyEvents | None]:
    """The clients the settings allow: REST needs token and From, Events a routing key.

    `disabled_features` already tells the operator which one is missing.
    ``verify`` defaults to PAGERDUTY_CA_BUNDLE, else the system trust store.
    ``retries``/``backoff``: the clients' own retrying (the delivery queue asks
    for the least, its backoff being the retry policy).
    """
    if verify is None:
        verify = settings.pagerduty_ca_bundle or True
    rest = None
    if settings.pagerduty_api_token is not None and settings.pagerduty_from_email:
        rest = PagerDutyRest(
            settings.pagerduty_api_token.get_secret_value(),
            settings.pagerduty_from_email,
            settings.pagerduty_api_url,
            verify=verify,
            retries=retries,
            backoff=backoff,
        )
    events = None
    if settings.pagerduty_routing_key is not None:
        events = PagerDutyEvents(
            settings.pagerduty_routing_key.get_secret_value(),
            settings.pagerduty_events_url,
            verify=verify,
            retries=retries,
            backoff=backoff,
        )
    return rest, events
