"""A fake PagerDuty (REST API v2 + Events API v2) over real TLS on 127.0.0.1.

The pagerduty 7.x clients refuse any base URL that is not https://, so the
fake serves https with a certificate signed by `LocalCA`, a throwaway CA made
once per test process; clients trust it with ``verify=fake.ca_file``. Like
tests/fakes/slack.py it runs aiohttp on its own event loop in a background
thread, so sync code, async tests and subprocesses can all reach it::

    with FakePagerDuty() as pd:
        incident = pd.add_incident()
        rest = PagerDutyRest(pd.token, pd.user_email, pd.url, verify=pd.ca_file)
        rest.set_escalation_level(incident, 2)
        assert pd.incident(incident).escalation_level == 2

What it models:

* every request is recorded (`requests`) with its headers and JSON body;
* REST auth: ``Authorization: Token token=<token>``, else 401;
* the From header on writes: missing, or not the email of a known user
  (`users`), is a 400;
* incidents (`add_incident`, `incident`): GET and PUT ``/incidents/{id}``
  (status acknowledged/resolved, escalation_level within the policy's
  `levels`), POST/GET ``/incidents/{id}/notes``; unknown ids are 404;
* Events ``POST /v2/enqueue``: routing key checked (400 "invalid event"),
  trigger/acknowledge/resolve per dedup key (`alerts`, `events`), 202;
* faults on demand: `fail_next` (any status, HTML or custom body),
  `rate_limit_next` (429 with PagerDuty's error body); both take extra
  response ``headers`` (e.g. ``Retry-After``, or PagerDuty's ``ratelimit-reset``).

Status codes and body shapes follow PagerDuty's documentation; the numeric
error codes and wording are close to, not guaranteed identical with, the
real service.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import itertools
import json
import ssl
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.fakes.background import BackgroundServer

DEFAULT_TOKEN = "u+FakePagerDutyToken0001"
DEFAULT_ROUTING_KEY = "R0FAKEPAGERDUTYROUTINGKEY0000001"  # 32 characters, as PagerDuty's
DEFAULT_USER = "nexus-bot@example.com"
_SEVERITIES = ("critical", "error", "warning", "info")


# -- a certificate authority for 127.0.0.1 -------------------------------------


class LocalCA:
    """A CA and one server certificate for 127.0.0.1, ::1 and localhost, as PEM files.

    EC keys keep generation in the milliseconds. The files live in a temporary
    directory removed when the object is collected (or the process exits).
    """

    def __init__(self) -> None:
        now = dt.datetime.now(dt.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "NEXUS test CA")])
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ca_ski, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.IPAddress(ipaddress.ip_address("::1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        self._dir = tempfile.TemporaryDirectory(prefix="nexus-test-ca-")
        root = Path(self._dir.name)
        self.ca_file = root / "ca.pem"
        self.cert_file = root / "server.pem"
        self.key_file = root / "server.key"
        self.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """Trusts this CA only (not the system store), hostname checked."""
        return ssl.create_default_context(cafile=str(self.ca_file))


@functools.cache
def local_ca() -> LocalCA:
    """The CA shared by every fake of this test process."""
    return LocalCA()


# -- recorded state --------------------------------------------------------------


@dataclass
class PagerDutyRequest:
    """One HTTP request to the fake, as received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # decoded JSON, the raw text if not JSON, None if empty
    at: float  # time.monotonic() on arrival
    status: int | None = None  # answered status; None while in flight

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)

    @property
    def token(self) -> str | None:
        """The token of ``Authorization: Token token=…``, if that is the scheme used."""
        auth = self.header("Authorization") or ""
        return auth.removeprefix("Token token=") if auth.startswith("Token token=") else None


@dataclass
class FakeIncident:
    id: str
    title: str
    status: str = "triggered"  # triggered | acknowledged | resolved
    escalation_level: int = 1
    notes: list[dict[str, Any]] = field(default_factory=list)
    number: int = 0


@dataclass
class FakeAlert:
    """What the Events API did with one dedup key."""

    dedup_key: str
    status: str  # triggered | acknowledged | resolved
    summary: str
    source: str
    severity: str
    custom_details: dict[str, Any]
    actions: list[str] = field(default_factory=list)  # event_action, in order


@dataclass
class _Fault:
    kind: str  # fail | ratelimit
    remaining: int
    status: int
    body: str | None
    api: str | None  # rest | events | None (both)
    headers: dict[str, str] = field(default_factory=dict)  # added to the answer


class FakePagerDuty(BackgroundServer):
    thread_name = "fake-pagerduty"

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        routing_key: str = DEFAULT_ROUTING_KEY,
        users: tuple[str, ...] = (DEFAULT_USER,),
        levels: int = 4,
        ca: LocalCA | None = None,
    ) -> None:
        """`levels`: how many levels the incidents' escalation policy has."""
        self.token = token
        self.routing_key = routing_key
        self.users = tuple(users)
        self.levels = levels
        self.ca = ca or local_ca()

        self._lock = threading.RLock()
        self._requests: list[PagerDutyRequest] = []
        self._incidents: dict[str, FakeIncident] = {}
        self._alerts: dict[str, FakeAlert] = {}
        self._events: list[dict[str, Any]] = []
        self._faults: list[_Fault] = []
        self._ids = itertools.count(1)

        super().__init__()

    # -- lifecycle -----------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    def _ssl_context(self) -> ssl.SSLContext:
        return self.ca.server_context()

    @property
    def url(self) -> str:
        """REST API base URL (PAGERDUTY_API_URL)."""
        if self._port is None:
            raise RuntimeError("FakePagerDuty not started")
        return f"https://127.0.0.1:{self._port}"

    @property
    def events_url(self) -> str:
        """Events API base URL (PAGERDUTY_EVENTS_URL); same server, other paths."""
        return self.url

    @property
    def ca_file(self) -> str:
        return str(self.ca.ca_file)

    def client_context(self) -> ssl.SSLContext:
        """For clients that take an SSLContext (the bare pagerduty client, httpx2)."""
        return self.ca.client_context()

    @property
    def user_email(self) -> str:
        return self.users[0]

    # -- state -----------------------------------------------------------------

    def add_incident(
        self,
        incident_id: str | None = None,
        *,
        title: str = "SSOT sync failure",
        status: str = "triggered",
        escalation_level: int = 1,
    ) -> str:
        with self._lock:
            number = next(self._ids)
            incident_id = incident_id or f"PFAKE{number:03d}"
            self._incidents[incident_id] = FakeIncident(
                incident_id, title, status, escalation_level, number=number
            )
        return incident_id

    def incident(self, incident_id: str) -> FakeIncident:
        """A snapshot (notes copied) of the incident."""
        with self._lock:
            found = self._incidents[incident_id]
            return replace(found, notes=[dict(n) for n in found.notes])

    def alerts(self) -> dict[str, FakeAlert]:
        with self._lock:
            return {k: replace(v, actions=list(v.actions)) for k, v in self._alerts.items()}

    def events(self) -> list[dict[str, Any]]:
        """Accepted Events API bodies, in arrival order."""
        with self._lock:
            return [dict(e) for e in self._events]

    def requests(
        self, *, method: str | None = None, path: str | None = None
    ) -> list[PagerDutyRequest]:
        """Recorded requests (faulted ones included), optionally filtered; path is a prefix."""
        with self._lock:
            return [
                r
                for r in self._requests
                if (method is None or r.method == method)
                and (path is None or r.path.startswith(path))
            ]

    # -- faults ----------------------------------------------------------------

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        *,
        body: str | None = None,
        api: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next `n` requests (of `api`: "rest" or "events") with `status`.

        The default body is an HTML error page, as a load balancer would send.
        """
        with self._lock:
            self._faults.append(_Fault("fail", n, status, body, api, dict(headers or {})))

    def rate_limit_next(
        self, n: int = 1, *, api: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        """Answer the next `n` requests with 429, as PagerDuty's rate limiter does.

        PagerDuty's REST API says how long to wait in ``ratelimit-reset`` (seconds);
        pass it, or ``Retry-After``, in `headers`.
        """
        with self._lock:
            self._faults.append(_Fault("ratelimit", n, 429, None, api, dict(headers or {})))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, api: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.api in (None, api):
                    fault.remaining -= 1
                    return fault
        return None

    # -- HTTP ------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.text()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw
        record = PagerDutyRequest(
            request.method, request.path, dict(request.headers), body, time.monotonic()
        )
        with self._lock:
            self._requests.append(record)
        api = "events" if request.path.startswith("/v2/") else "rest"
        fault = self._take_fault(api)
        if fault is not None:
            response = _fault_response(fault, api)
        elif api == "events":
            response = self._events_api(record)
        else:
            response = self._rest_api(record)
        record.status = response.status
        return response

    def _rest_api(self, req: PagerDutyRequest) -> web.Response:
        if req.token != self.token:
            return _rest_error(401, 2006, "Unauthorized")
        parts = req.path.strip("/").split("/")
        if req.method in ("PUT", "POST", "DELETE"):
            sender = req.header("From")
            if not sender:
                return _rest_error(
                    400,
                    2001,
                    "Invalid Input Provided",
                    ['A "From" header with a valid user email is required for this request'],
                )
            if sender not in self.users:
                return _rest_error(
                    400, 2001, "Invalid Input Provided", ["Requester User Not Found"]
                )
        if not parts or parts[0] != "incidents" or len(parts) not in (2, 3):
            return _rest_error(404, 2100, "Not Found")
        with self._lock:
            incident = self._incidents.get(parts[1])
            if incident is None:
                return _rest_error(404, 2100, "Not Found")
            if len(parts) == 2 and req.method == "GET":
                return web.json_response({"incident": self._incident_json(incident)})
            if len(parts) == 2 and req.method == "PUT":
                return self._update_incident(incident, req.body)
            if parts[2] == "notes" and req.method == "POST":
                return self._add_note(incident, req)
            if parts[2] == "notes" and req.method == "GET":
                return web.json_response({"notes": list(incident.notes)})
        return _rest_error(404, 2100, "Not Found")

    def _update_incident(self, incident: FakeIncident, body: Any) -> web.Response:
        wrapped = body.get("incident") if isinstance(body, dict) else None
        if not isinstance(wrapped, dict) or wrapped.get("type") not in (
            "incident",
            "incident_reference",
        ):
            return _rest_error(400, 2001, "Invalid Input Provided", ["Incident type is required"])
        if incident.status == "resolved":
            return _rest_error(400, 2001, "Invalid Input Provided", ["Incident Already Resolved"])
        status = wrapped.get("status")
        level = wrapped.get("escalation_level")
        if status is not None and status not in ("acknowledged", "resolved"):
            return _rest_error(400, 2001, "Invalid Input Provided", [f"Invalid status {status}"])
        if level is not None and (
            not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= self.levels
        ):
            return _rest_error(
                400, 2001, "Invalid Input Provided", ["Escalation Level is not valid"]
            )
        if status is not None:
            incident.status = status
        if level is not None:
            incident.escalation_level = level
            incident.status = "triggered"  # reassigning re-triggers, as PagerDuty does
        return web.json_response({"incident": self._incident_json(incident)})

    def _add_note(self, incident: FakeIncident, req: PagerDutyRequest) -> web.Response:
        wrapped = req.body.get("note") if isinstance(req.body, dict) else None
        content = wrapped.get("content") if isinstance(wrapped, dict) else None
        if not isinstance(content, str) or not content.strip():
            return _rest_error(400, 2001, "Invalid Input Provided", ["Content is required"])
        if len(content) > 25_000:
            return _rest_error(400, 2001, "Invalid Input Provided", ["Content is too long"])
        note = {
            "id": f"PNOTE{len(incident.notes) + 1:03d}{incident.id}",
            "user": {
                "id": "PUSER01",
                "type": "user_reference",
                "summary": req.header("From"),
                "self": f"{self.url}/users/PUSER01",
                "html_url": "https://nexus-test.pagerduty.com/users/PUSER01",
            },
            "channel": {"summary": "The PagerDuty website or APIs"},
            "content": content,
            "created_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        incident.notes.append(note)
        return web.json_response({"note": note}, status=201)

    def _incident_json(self, incident: FakeIncident) -> dict[str, Any]:
        return {
            "id": incident.id,
            "type": "incident",
            "summary": f"[#{incident.number}] {incident.title}",
            "title": incident.title,
            "incident_number": incident.number,
            "status": incident.status,
            "urgency": "high",
            "escalation_level": incident.escalation_level,
            "self": f"{self.url}/incidents/{incident.id}",
            "html_url": f"https://nexus-test.pagerduty.com/incidents/{incident.id}",
        }

    def _events_api(self, req: PagerDutyRequest) -> web.Response:
        if req.method != "POST" or req.path != "/v2/enqueue":
            return web.json_response({"status": "not found"}, status=404)
        event = req.body if isinstance(req.body, dict) else {}
        problems = self._event_problems(event)
        if problems:
            return web.json_response(
                {
                    "status": "invalid event",
                    "message": "Event object is invalid",
                    "errors": problems,
                },
                status=400,
            )
        action = event["event_action"]
        key = event.get("dedup_key") or uuid.uuid4().hex
        with self._lock:
            self._events.append(event)
            alert = self._alerts.get(key)
            if action == "trigger":
                payload = event["payload"]
                if alert is None or alert.status == "resolved":
                    alert = FakeAlert(
                        key,
                        "triggered",
                        payload["summary"],
                        payload["source"],
                        payload["severity"],
                        dict(payload.get("custom_details") or {}),
                    )
                    self._alerts[key] = alert
                alert.actions.append(action)
            elif alert is not None and alert.status != "resolved":
                # Acknowledging or resolving an unknown key is silently accepted.
                alert.status = "acknowledged" if action == "acknowledge" else "resolved"
                alert.actions.append(action)
        return web.json_response(
            {"status": "success", "message": "Event processed", "dedup_key": key}, status=202
        )

    def _event_problems(self, event: dict[str, Any]) -> list[str]:
        routing_key = event.get("routing_key")
        if not isinstance(routing_key, str) or len(routing_key) != 32:
            return ["Length of 'routing_key' is incorrect (should be 32 characters)"]
        if routing_key != self.routing_key:
            return ["Invalid routing key"]
        action = event.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            return ["'event_action' is invalid (must be one of: trigger, acknowledge, resolve)"]
        if action != "trigger":
            return [] if event.get("dedup_key") else ["'dedup_key' is missing or blank"]
        payload = event.get("payload")
        if not isinstance(payload, dict):
            return ["'payload' is missing or blank"]
        problems = [
            f"'payload.{name}' is missing or blank"
            for name in ("summary", "source")
            if not payload.get(name)
        ]
        if payload.get("severity") not in _SEVERITIES:
            problems.append(
                "'payload.severity' is invalid (must be one of critical, error, warning, info)"
            )
        if len(str(payload.get("summary", ""))) > 1024:
            problems.append("'payload.summary' is too long (max 1024 characters)")
        return problems


def _rest_error(
    status: int, code: int, message: str, errors: list[str] | None = None
) -> web.Response:
    error: dict[str, Any] = {"message": message, "code": code}
    if errors:
        error["errors"] = errors
    return web.json_response({"error": error}, status=status)


def _fault_response(fault: _Fault, api: str) -> web.Response:
    if fault.kind == "ratelimit":
        if api == "events":
            body = {
                "status": "throttle event",
                "message": "Requests for this service are arriving too quickly. "
                "Please retry later.",
            }
            response = web.json_response(body, status=429)
        else:
            response = _rest_error(429, 2020, "Rate Limit Exceeded")
    elif fault.body is not None:
        content_type = "application/json" if fault.body.startswith("{") else "text/plain"
        response = web.Response(status=fault.status, text=fault.body, content_type=content_type)
    else:
        page = f"<html><body><h1>{fault.status} Server Error</h1></body></html>"
        response = web.Response(status=fault.status, text=page, content_type="text/html")
    response.headers.update(fault.headers)
    return response
