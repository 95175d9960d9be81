"""Atlassian Statuspage as a timeline output: each public update mirrored there.

`StatuspageOutput` turns an ``update.posted`` event into one queue row (in the
event's transaction, no I/O) holding only public facts: the incident number
and when it opened (to find its Statuspage counterpart), the public name from
config, the update's status and text, and the Statuspage components to set.
Alert titles, labels, people and notes never reach the row, and a recovery
drill's incident never reaches Statuspage at all.

`StatuspageDelivery` is the queue's `Sender` for those rows (REST API v1,
``Authorization: OAuth <key>``). The NEXUS ↔ Statuspage mapping lives on
Statuspage itself: the incident it creates carries ``metadata.nexus`` =
``{"incident": "<number>", "opened_at": "<ISO time>"}``, and every send first
looks for that marker (unresolved incidents, then incidents newer than the
NEXUS incident), then PATCHes what it found or POSTs a new one. So a create
whose answer was lost (timeout, 5xx after the write) is found on retry
instead of made twice, and neither a restart nor another replica needs local
state. The queue sends one row per incident at a time, claimed once; a send
gives up well within the claim's lease (`SEND_BUDGET_S`), so no second
replica starts on the same row while this one still talks to Statuspage.

One NEXUS incident is one Statuspage incident for life: an update after a
resolution (reopened) PATCHes the same incident back to its new status.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx2
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.notify.email import redact, trim
from bot.notify.retry_after import delay_seconds
from bot.store.models import Incident
from bot.timeline.events import Event, Kind
from bot.timeline.queue import Failed, Result, Retry, Sent, enqueue
from bot.web.model import COMPONENT_STATES, PUBLIC_STATUSES, incident_state

if TYPE_CHECKING:
    from bot.settings import Settings

OUTPUT_NAME = "statuspage"
UPDATE_METHOD = "statuspage.update"
# metadata's top-level values must be objects (Statuspage API): ours is under this key.
MARKER_KEY = "nexus"
NAME_MAX = 255  # Statuspage's limits on an incident's name and an update's body
BODY_MAX = 25_000

REQUEST_TIMEOUT_S = 10.0
# A whole send (find + write) ends well within the delivery lease (60 s by default).
SEND_BUDGET_S = 30.0
LIST_PAGE_SIZE = 100  # the API's maximum
MAX_LIST_PAGES = 5
# A Statuspage incident is made after its NEXUS incident opened; this much clock
# difference between the two is tolerated when deciding the search can stop.
CLOCK_SKEW = timedelta(hours=1)
DEFAULT_RATE_LIMIT_WAIT_S = 5.0
MAX_RATE_LIMIT_WAIT_S = 300.0
# Statuspage ids are short alphanumerics; anything else must not reach a URL path.
_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")


class StatuspageOutput:
    """Enqueues one ``statuspage.update`` row per public update; see the module docstring."""

    name = OUTPUT_NAME

    def __init__(self, settings: Settings) -> None:
        self.status_page = settings.status_page
        # The pacing key: Statuspage limits requests per API key, and one page has one.
        self.page_id = settings.statuspage_page_id
        self.configured = settings.statuspage_api_key is not None and bool(self.page_id)

    def on_event(self, session: Session, event: Event) -> None:
        if event.kind != Kind.UPDATE_POSTED or not self.configured or self.page_id is None:
            return
        status, text = event.fact("status"), event.fact("text")
        if status not in PUBLIC_STATUSES or not isinstance(text, str) or not text.strip():
            return
        incident = session.get(Incident, event.incident_id)
        # A drill is never public: its "updates" rehearse the wording, nothing more.
        if incident is None or incident.drill_run_id is not None:
            return
        payload = {
            "incident": incident.id,
            "opened_at": incident.created_at.isoformat(),
            "name": self.status_page.incident_name[:NAME_MAX],
            "status": status,
            "body": text if len(text) <= BODY_MAX else text[: BODY_MAX - 1] + "…",
            "components": self._component_states(session, incident, status),
        }
        enqueue(
            session,
            output=OUTPUT_NAME,
            key=self.page_id,
            method=UPDATE_METHOD,
            payload=payload,
            incident_id=incident.id,
        )

    def _component_states(
        self, session: Session, incident: Incident, status: str
    ) -> dict[str, str]:
        """{statuspage component id: state} for the incident's component, if mirrored.

        A Statuspage component has one state for the whole page, so it shows the
        worst of every published, unresolved incident on it: resolving one
        incident must not mark a component operational while another is down.
        """
        component = self.status_page.component_for(_service(incident))
        if component is None or not component.statuspage_id:
            return {}
        states = [
            "operational" if status == "resolved" else incident_state(incident.severity, component)
        ]
        others = session.scalars(
            sa.select(Incident).where(
                Incident.id != incident.id,
                Incident.drill_run_id.is_(None),
                Incident.public_status.is_not(None),
                Incident.public_status != "resolved",
            )
        )
        states += [
            incident_state(other.severity, component)
            for other in others
            if self.status_page.component_for(_service(other)) is component
        ]
        return {component.statuspage_id: max(states, key=COMPONENT_STATES.index)}


def _service(incident: Incident) -> str | None:
    service = (incident.labels or {}).get("service")
    return service if isinstance(service, str) else None


@dataclass(frozen=True)
class _Update:
    """A row's payload, checked."""

    incident: int
    opened_at: datetime
    name: str
    status: str
    body: str
    components: dict[str, str]

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> _Update:
        components = {str(k): str(v) for k, v in dict(payload["components"]).items()}
        status = str(payload["status"])
        if status not in PUBLIC_STATUSES or any(
            v not in COMPONENT_STATES for v in components.values()
        ):
            raise ValueError(f"status {status!r} or component states {components!r}")
        return cls(
            int(payload["incident"]),
            datetime.fromisoformat(str(payload["opened_at"])),
            str(payload["name"]),
            status,
            str(payload["body"]),
            components,
        )

    @property
    def marker(self) -> dict[str, str]:
        return {"incident": str(self.incident), "opened_at": self.opened_at.isoformat()}

    @property
    def what(self) -> str:
        return f"Statuspage update of incident #{self.incident} ({self.status})"


class _ApiError(Exception):
    def __init__(self, message: str, *, retryable: bool, after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.after = after


class StatuspageDelivery:
    """The queue's Sender for ``output="statuspage"`` rows. Called from worker threads."""

    # Statuspage allows about one request per second per API key.
    rate: float = 1.0
    burst: int = 2

    def __init__(
        self,
        api_url: str,
        api_key: str,
        page_id: str,
        *,
        timeout: float = REQUEST_TIMEOUT_S,
        budget: float = SEND_BUDGET_S,
        verify: Any = True,
    ) -> None:
        if not _ID.match(page_id):
            raise ValueError(f"not a Statuspage page id: {page_id!r}")
        self.page_id = page_id
        self.budget = budget
        self._api_key = api_key
        self._client = httpx2.Client(
            base_url=api_url.rstrip("/") + "/",
            headers={"Authorization": f"OAuth {api_key}", "Accept": "application/json"},
            timeout=timeout,
            verify=verify,
        )

    def close(self) -> None:
        self._client.close()

    def send(self, method: str, payload: Mapping[str, Any]) -> Result:
        if method != UPDATE_METHOD:
            return Failed(f"Statuspage: unknown method {method!r}")
        try:
            update = _Update.from_payload(payload)
        except (KeyError, TypeError, ValueError) as problem:
            # A row this code cannot read now will not be readable later either.
            return Failed(f"Statuspage {method}: bad payload: {problem!r}")
        # Per call, not per sender: worker threads may share this sender.
        deadline = time.monotonic() + self.budget
        try:
            found = self._find(update, deadline)
            if found is None:
                self._create(update, deadline)
            else:
                self._patch(found, update, deadline)
        except _ApiError as error:
            message = trim(redact(f"Statuspage: {update.what}: {error}", [self._api_key]), 300)
            if error.retryable:
                return Retry(message, after=error.after)
            report = {"output": OUTPUT_NAME, "problem": "rejected", "what": update.what}
            return Failed(message, report={**report, "error": message})
        return Sent()

    # -- find, create, update ---------------------------------------------------

    def _find(self, update: _Update, deadline: float) -> str | None:
        """The id of the Statuspage incident marked as `update`'s NEXUS incident, if any."""
        for incident in self._pages("incidents/unresolved", "per_page", deadline):
            if _marked(incident, update):
                return _incident_id(incident)
        # Resolved already (a reopened incident, or a resolve whose answer was lost):
        # search newest first, down to incidents older than the NEXUS incident.
        cutoff = update.opened_at - CLOCK_SKEW
        for page in range(1, MAX_LIST_PAGES + 1):
            rows = self._list("incidents", {"limit": LIST_PAGE_SIZE, "page": page}, deadline)
            for incident in rows:
                if _marked(incident, update):
                    return _incident_id(incident)
            if len(rows) < LIST_PAGE_SIZE or all(_created(i) < cutoff for i in rows):
                return None
        # Not knowing whether it exists, creating one could make a second: say so.
        raise _ApiError(
            f"no marked incident in the newest {MAX_LIST_PAGES * LIST_PAGE_SIZE}", retryable=False
        )

    def _create(self, update: _Update, deadline: float) -> None:
        incident: dict[str, Any] = {
            "name": update.name,
            "status": update.status,
            "body": update.body,
            "deliver_notifications": True,
            "metadata": {MARKER_KEY: update.marker},
        }
        incident.update(_components(update))
        self._request("POST", self._path("incidents"), deadline, {"incident": incident})

    def _patch(self, statuspage_id: str, update: _Update, deadline: float) -> None:
        incident = {"status": update.status, "body": update.body, **_components(update)}
        path = self._path(f"incidents/{statuspage_id}")
        self._request("PATCH", path, deadline, {"incident": incident})

    # -- HTTP ---------------------------------------------------------------------

    def _path(self, tail: str) -> str:
        return f"pages/{self.page_id}/{tail}"

    def _pages(self, tail: str, size_param: str, deadline: float) -> Iterator[Mapping[str, Any]]:
        for page in range(1, MAX_LIST_PAGES + 1):
            rows = self._list(tail, {size_param: LIST_PAGE_SIZE, "page": page}, deadline)
            yield from rows
            if len(rows) < LIST_PAGE_SIZE:
                return

    def _list(self, tail: str, params: dict[str, int], deadline: float) -> list[Mapping[str, Any]]:
        rows = self._request("GET", self._path(tail), deadline, params=params)
        if not isinstance(rows, list):
            raise _ApiError(f"GET {tail}: expected a list", retryable=True)
        return [row for row in rows if isinstance(row, Mapping)]

    def _request(
        self,
        method: str,
        path: str,
        deadline: float,
        body: Any = None,
        *,
        params: Mapping[str, int] | None = None,
    ) -> Any:
        what = f"{method} {path.split('/', 2)[-1]}"
        if time.monotonic() > deadline:
            raise _ApiError(f"{what}: gave up after {self.budget:.0f}s", retryable=True)
        try:
            response = self._client.request(method, path, json=body, params=params)
        except httpx2.HTTPError as exc:  # refused, reset, timed out: no answer
            raise _ApiError(f"{what}: {type(exc).__name__}: {exc}", retryable=True) from None
        status = response.status_code
        if status == 429:
            wait = delay_seconds(response.headers.get("Retry-After"))
            after = DEFAULT_RATE_LIMIT_WAIT_S if wait is None else min(wait, MAX_RATE_LIMIT_WAIT_S)
            raise _ApiError(f"{what}: HTTP 429", retryable=True, after=after)
        if not response.is_success:
            detail = f"{what}: HTTP {status}: {_detail(response)}"
            raise _ApiError(detail, retryable=status >= 500)
        try:
            return response.json()
        except ValueError:
            # Answered but unreadable: a retry finds (rather than repeats) a write that landed.
            raise _ApiError(f"{what}: HTTP {status}: not JSON", retryable=True) from None


def _components(update: _Update) -> dict[str, Any]:
    if not update.components:
        return {}
    return {"component_ids": list(update.components), "components": dict(update.components)}


def _marked(incident: Mapping[str, Any], update: _Update) -> bool:
    metadata = incident.get("metadata")
    marker = metadata.get(MARKER_KEY) if isinstance(metadata, Mapping) else None
    return isinstance(marker, Mapping) and dict(marker) == update.marker


def _incident_id(incident: Mapping[str, Any]) -> str:
    found = str(incident.get("id", ""))
    if not _ID.match(found):
        raise _ApiError(f"unusable incident id {found[:40]!r}", retryable=False)
    return found


def _created(incident: Mapping[str, Any]) -> datetime:
    """When Statuspage made `incident`; unreadable counts as new, so the search goes on."""
    try:
        created = datetime.fromisoformat(str(incident["created_at"]))
    except (KeyError, ValueError):
        return datetime.max.replace(tzinfo=UTC)
    return created if created.tzinfo is not None else created.replace(tzinfo=UTC)


def _detail(response: httpx2.Response) -> str:
    """Statuspage's words: ``{"error": "..."}`` or ``{"error": [...]}``, else the text."""
    try:
        body = response.json()
    except ValueError:
        return response.text
    error = body.get("error", body.get("message")) if isinstance(body, dict) else None
    if isinstance(error, list):
        return "; ".join(str(e) for e in error)
    return str(error) if error is not None else response.text


def statuspage_output_from_settings(
    settings: Settings,
) -> tuple[StatuspageOutput, StatuspageDelivery | None]:
    """The output (enqueues nothing unless configured) and its sender (None unless configured)."""
    output = StatuspageOutput(settings)
    key, page_id = settings.statuspage_api_key, settings.statuspage_page_id
    if key is None or not page_id:
        return output, None
    return output, StatuspageDelivery(settings.statuspage_api_url, key.get_secret_value(), page_id)
