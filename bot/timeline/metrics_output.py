"""Incident durations as Prometheus histograms, fed by the timeline like any output.

`IncidentDurationMetrics` (output name "metrics") observes, per severity and
playbook, how long incidents took to be acknowledged and to be resolved,
counted from `created_at` to the event (a reopened incident keeps its first
`created_at`); recovery drills are left out. It sends nothing, so it enqueues
nothing: `on_event` runs inside the transaction that records the event, and an
observation made there would count an acknowledgement that a rollback then
undid. So observations wait in `session.info` and are made once the
transaction commits; a rollback, of the transaction or of a savepoint around
the event, drops them.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from prometheus_client import Histogram
from sqlalchemy.orm import Session, SessionTransaction

from bot.metrics import REGISTRY
from bot.store.models import Incident
from bot.timeline.events import Event, Kind

# Incidents are acknowledged in minutes and resolved in minutes to days: from
# 30 s (a page answered at once) to a day, with room at both ends.
INCIDENT_DURATION_BUCKETS = (
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    14400,
    28800,
    86400,
)
TIME_TO_ACKNOWLEDGE = Histogram(
    "nexus_incident_time_to_acknowledge_seconds",
    "Time from an incident's creation to its acknowledgement, by severity and playbook.",
    ["severity", "playbook"],
    buckets=INCIDENT_DURATION_BUCKETS,
    registry=REGISTRY,
)
TIME_TO_RESOLVE = Histogram(
    "nexus_incident_time_to_resolve_seconds",
    "Time from an incident's creation to its resolution, by severity and playbook.",
    ["severity", "playbook"],
    buckets=INCIDENT_DURATION_BUCKETS,
    registry=REGISTRY,
)
_HISTOGRAMS: dict[str, Histogram] = {
    Kind.ACKNOWLEDGED: TIME_TO_ACKNOWLEDGE,
    Kind.RESOLVED: TIME_TO_RESOLVE,
}

_PENDING_KEY = "nexus_metrics_pending"
_LISTENING_KEY = "nexus_metrics_listening"


@dataclass(frozen=True)
class _Pending:
    """An observation waiting for its transaction; `made_in` is the innermost one."""

    histogram: Histogram
    severity: str
    playbook: str
    seconds: float
    made_in: SessionTransaction


class IncidentDurationMetrics:
    """Timeline output: time to acknowledge and to resolve, observed after commit."""

    name = "metrics"

    def on_event(self, session: Session, event: Event) -> None:
        histogram = _HISTOGRAMS.get(event.kind)
        if histogram is None:
            return
        incident = session.get(Incident, event.incident_id)
        # A drill's timings are its scorecard's: in MTTA/MTTR they would skew real ones.
        if incident is None or incident.drill_run_id is not None:
            return
        # A clock step backwards between replicas must not subtract from the sum.
        seconds = max(0.0, (event.at - incident.created_at).total_seconds())
        observe_after_commit(
            session,
            histogram,
            severity=incident.severity,
            playbook=incident.playbook_id,
            seconds=seconds,
        )


def observe_after_commit(
    session: Session, histogram: Histogram, *, severity: str, playbook: str, seconds: float
) -> None:
    """Observe `seconds` once the session's outer transaction commits; never if it rolls back."""
    made_in = session.get_nested_transaction() or session.get_transaction()
    if made_in is None:  # outside any transaction nothing can roll it back
        histogram.labels(severity=severity, playbook=playbook).observe(seconds)
        return
    pending: list[_Pending] = session.info.setdefault(_PENDING_KEY, [])
    pending.append(_Pending(histogram, severity, playbook, seconds, made_in))
    _listen(session)


def _listen(session: Session) -> None:
    """Attach the commit and rollback listeners to `session`, once for its lifetime."""
    if session.info.get(_LISTENING_KEY):
        return
    session.info[_LISTENING_KEY] = True
    sa.event.listen(session, "after_commit", _observe_pending)
    sa.event.listen(session, "after_soft_rollback", _drop_rolled_back)
    sa.event.listen(session, "after_transaction_end", _drop_unobserved)


def _observe_pending(session: Session) -> None:
    # after_commit also fires when a savepoint is released: only the outer
    # commit makes the events durable.
    if session.get_nested_transaction() is not None:
        return
    for item in session.info.pop(_PENDING_KEY, []):
        item.histogram.labels(severity=item.severity, playbook=item.playbook).observe(item.seconds)


def _drop_rolled_back(session: Session, rolled_back: SessionTransaction) -> None:
    """A savepoint (or the transaction) rolled back: forget what was observed inside it."""
    pending: list[_Pending] | None = session.info.get(_PENDING_KEY)
    if pending:
        pending[:] = [item for item in pending if not _inside(item.made_in, rolled_back)]


def _drop_unobserved(session: Session, transaction: SessionTransaction) -> None:
    """The outer transaction ended: what it did not commit (rollback, close) never happened."""
    if transaction.parent is None:
        session.info.pop(_PENDING_KEY, None)


def _inside(transaction: SessionTransaction | None, outer: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is outer:
            return True
        transaction = transaction.parent
    return False
