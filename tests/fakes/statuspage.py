"""A fake Atlassian Statuspage REST API v1 on 127.0.0.1 (plain http, like a local proxy).

Runs aiohttp on its own loop in a background thread (`BackgroundServer`)::

    with FakeStatuspage(components={"cmp1": "operational"}) as sp:
        sender = StatuspageDelivery(sp.url, sp.api_key, sp.page_id)
        ...
        [incident] = sp.incidents()

What it models:

* every request is recorded (`requests`) with its headers, query and JSON body;
* auth: ``Authorization: OAuth <api_key>``, else 401; another page id is 404;
* ``POST /pages/{page}/incidents``, ``PATCH /pages/{page}/incidents/{id}``, with
  the body checked (``{"incident": {...}}``, a name on create, realtime
  statuses only, known component ids and component states, metadata whose
  top-level values are objects, the length limits, no unknown fields: 422);
  an accepted body with ``status`` or ``body`` adds an incident update, and
  ``components`` sets those components' states;
* ``GET /pages/{page}/incidents`` (newest first; ``limit``, ``page``),
  ``GET …/incidents/unresolved`` (``per_page``, ``page``), ``GET …/incidents/{id}``;
* faults on demand: `fail_next` (a status, e.g. 500, with optional headers),
  `rate_limit_next` (429 with ``Retry-After``), and `lose_answer_next`: the
  request takes effect, then the client gets an error status or, with
  `delay`, no answer before its timeout (a create whose answer was lost).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from copy import deepcopy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.background import BackgroundServer

DEFAULT_API_KEY = "fake-statuspage-oauth-key-0001"
DEFAULT_PAGE_ID = "pg0fake0page"
INCIDENT_STATUSES = ("investigating", "identified", "monitoring", "resolved")
COMPONENT_STATUSES = (
    "operational",
    "degraded_performance",
    "partial_outage",
    "major_outage",
    "under_maintenance",
)
_FIELDS = {
    "name",
    "status",
    "body",
    "component_ids",
    "components",
    "deliver_notifications",
    "metadata",
    "impact_override",
}


@dataclass
class StatuspageRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # decoded JSON, the raw text if not JSON, None if empty
    status: int | None = None  # answered status; None while in flight

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)


@dataclass
class FakeIncident:
    id: str
    name: str
    status: str
    created_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)
    component_ids: list[str] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)  # {status, body}, oldest first
    notifications: list[bool] = field(default_factory=list)  # deliver_notifications per write

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
            "metadata": deepcopy(self.metadata),
            "components": [{"id": c} for c in self.component_ids],
            "incident_updates": [dict(u) for u in reversed(self.updates)],
        }


@dataclass
class _Fault:
    remaining: int
    status: int
    headers: dict[str, str]
    apply: bool  # True: the request takes effect before the error answer
    delay: float = 0.0


class FakeStatuspage(BackgroundServer):
    thread_name = "fake-statuspage"

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        page_id: str = DEFAULT_PAGE_ID,
        components: dict[str, str] | None = None,
    ) -> None:
        self.api_key = api_key
        self.page_id = page_id
        self._lock = threading.RLock()
        self._components = dict(components or {})
        self._incidents: dict[str, FakeIncident] = {}
        self._requests: list[StatuspageRequest] = []
        self._faults: list[_Fault] = []
        self._ids = itertools.count(1)
        super().__init__()

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/v1/{tail:.*}", self._handle)
        return app

    @property
    def url(self) -> str:
        """The API base URL (STATUSPAGE_API_URL)."""
        if self._port is None:
            raise RuntimeError("FakeStatuspage not started")
        return f"http://127.0.0.1:{self._port}/v1"

    # -- state -----------------------------------------------------------------

    def add_incident(
        self,
        *,
        name: str = "Earlier incident",
        status: str = "resolved",
        created_at: datetime | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """An incident made by someone else (by hand, another tool)."""
        with self._lock:
            return self._new(name, status, created_at, metadata or {}).id

    def incidents(self) -> list[FakeIncident]:
        """Snapshots, oldest first."""
        with self._lock:
            return [deepcopy(i) for i in self._incidents.values()]

    def components(self) -> dict[str, str]:
        with self._lock:
            return dict(self._components)

    def requests(self, method: str | None = None) -> list[StatuspageRequest]:
        with self._lock:
            return [r for r in self._requests if method is None or r.method == method]

    def writes(self) -> list[tuple[str, str, Any]]:
        """(method, path, body) of every POST and PATCH, in arrival order."""
        return [(r.method, r.path, r.body) for r in self.requests() if r.method != "GET"]

    # -- faults ----------------------------------------------------------------

    def fail_next(
        self, n: int = 1, status: int = 500, headers: dict[str, str] | None = None
    ) -> None:
        """Answer the next `n` requests with `status`, doing nothing."""
        with self._lock:
            self._faults.append(_Fault(n, status, dict(headers or {}), apply=False))

    def rate_limit_next(self, n: int = 1, retry_after: str | None = "2") -> None:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        self.fail_next(n, 429, headers)

    def lose_answer_next(self, n: int = 1, status: int = 500, delay: float = 0.0) -> None:
        """The next `n` writes take effect; then `delay` seconds pass and `status` is answered."""
        with self._lock:
            self._faults.append(_Fault(n, status, {}, apply=True, delay=delay))

    def _take_fault(self, method: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and (not fault.apply or method != "GET"):
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
        record = StatuspageRequest(
            request.method,
            request.path.removeprefix("/v1"),
            dict(request.query),
            dict(request.headers),
            body,
        )
        with self._lock:
            self._requests.append(record)
        fault = self._take_fault(request.method)
        if fault is not None and not fault.apply:
            response = _error(fault.status, "injected fault")
            response.headers.update(fault.headers)
        else:
            response = self._api(record)
            if fault is not None:
                await asyncio.sleep(fault.delay)
                response = _error(fault.status, "injected fault after the write")
        record.status = response.status
        return response

    def _api(self, req: StatuspageRequest) -> web.Response:
        if req.header("Authorization") != f"OAuth {self.api_key}":
            return _error(401, "Could not authenticate")
        parts = req.path.strip("/").split("/")
        if len(parts) < 3 or parts[:1] != ["pages"] or parts[2] != "incidents":
            return _error(404, "The requested resource could not be found.")
        if parts[1] != self.page_id:
            return _error(404, "Page not found")
        rest = parts[3:]
        with self._lock:
            if req.method == "POST" and not rest:
                return self._create(req.body)
            if req.method == "GET" and not rest:
                return self._list(list(reversed(self._incidents.values())), req, "limit")
            if req.method == "GET" and rest == ["unresolved"]:
                open_ones = [i for i in self._incidents.values() if i.status != "resolved"]
                return self._list(list(reversed(open_ones)), req, "per_page")
            incident = self._incidents.get(rest[0]) if len(rest) == 1 else None
            if incident is None:
                return _error(404, "Incident not found")
            if req.method == "GET":
                return web.json_response(incident.as_json())
            if req.method in ("PATCH", "PUT"):
                return self._update(incident, req.body)
        return _error(405, "Method not allowed")

    def _list(self, found: list[FakeIncident], req: StatuspageRequest, size: str) -> web.Response:
        try:
            per_page = min(int(req.query.get(size, "100")), 100)
            page = max(int(req.query.get("page", "1")), 1)
        except ValueError:
            return _error(400, "bad paging")
        chunk = found[(page - 1) * per_page : page * per_page]
        return web.json_response([i.as_json() for i in chunk])

    def _create(self, body: Any) -> web.Response:
        fields, problems = self._checked(body)
        if not problems and not fields.get("name"):
            problems.append("name can't be blank")
        if problems:
            return _error(422, problems)
        incident = self._new(
            fields["name"], fields.get("status", "investigating"), None, fields.get("metadata", {})
        )
        self._apply(incident, fields)
        return web.json_response(incident.as_json(), status=201)

    def _update(self, incident: FakeIncident, body: Any) -> web.Response:
        fields, problems = self._checked(body)
        if problems:
            return _error(422, problems)
        if "name" in fields:
            incident.name = fields["name"]
        if "metadata" in fields:
            incident.metadata = fields["metadata"]
        if "status" in fields:
            incident.status = fields["status"]
        self._apply(incident, fields)
        return web.json_response(incident.as_json())

    def _new(
        self, name: str, status: str, created_at: datetime | None, metadata: dict[str, Any]
    ) -> FakeIncident:
        incident_id = f"inc{next(self._ids):04d}fake"
        incident = FakeIncident(
            incident_id, name, status, created_at or datetime.now(UTC), deepcopy(metadata)
        )
        self._incidents[incident_id] = incident
        return incident

    def _apply(self, incident: FakeIncident, fields: dict[str, Any]) -> None:
        for component_id in [*fields.get("component_ids", []), *fields.get("components", {})]:
            if component_id not in incident.component_ids:
                incident.component_ids.append(component_id)
        self._components.update(fields.get("components", {}))
        if "status" in fields or "body" in fields:
            incident.updates.append(
                {"status": fields.get("status", incident.status), "body": fields.get("body", "")}
            )
        incident.notifications.append(bool(fields.get("deliver_notifications", True)))

    def _checked(self, body: Any) -> tuple[dict[str, Any], list[str]]:
        """The incident's fields and what is wrong with them, as Statuspage would say."""
        fields = body.get("incident") if isinstance(body, dict) else None
        if not isinstance(fields, dict) or set(body) != {"incident"}:
            return {}, ['expected {"incident": {...}}']
        problems = [f"unknown field {name!r}" for name in sorted(set(fields) - _FIELDS)]
        name = fields.get("name")
        if name is not None and (not isinstance(name, str) or not 0 < len(name) <= 255):
            problems.append("name must be 1 to 255 characters")
        if "status" in fields and fields["status"] not in INCIDENT_STATUSES:
            problems.append(f"status {fields['status']!r} is not a realtime incident status")
        body_text = fields.get("body")
        if body_text is not None and (not isinstance(body_text, str) or len(body_text) > 25_000):
            problems.append("body must be a string of at most 25000 characters")
        ids = fields.get("component_ids", [])
        if not isinstance(ids, list) or any(i not in self._components for i in ids):
            problems.append(f"unknown component_ids {ids!r}")
        states = fields.get("components", {})
        if not isinstance(states, dict) or any(
            k not in self._components or v not in COMPONENT_STATUSES for k, v in states.items()
        ):
            problems.append(f"invalid components {states!r}")
        metadata = fields.get("metadata", {})
        if not isinstance(metadata, dict) or any(
            not isinstance(v, dict) for v in metadata.values()
        ):
            problems.append("metadata: all top-level values must be objects")
        notify = fields.get("deliver_notifications", True)
        if not isinstance(notify, bool):
            problems.append("deliver_notifications must be a boolean")
        return fields, problems


def _error(status: int, error: str | list[str]) -> web.Response:
    return web.json_response({"error": error}, status=status)
