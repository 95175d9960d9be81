"""Repository behaviour on both SQLite and PostgreSQL, including races."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from bot.store.audit import verify_audit_chain
from bot.store.models import Alert, Incident
from bot.store.repository import AlertRecord, Repository

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
Race = Callable[..., list[Any]]


def _open(repo: Repository, key: str = "grp-1", **kw: Any) -> tuple[Incident, bool]:
    args: dict[str, Any] = {
        "source": "alertmanager",
        "title": "API latency high",
        "severity": "critical",
        "playbook_id": "latency",
        "labels": {"service": "api"},
    }
    args.update(kw)
    return repo.open_incident(key, **args)


def _alert(fp: str, status: str = "firing", **kw: Any) -> AlertRecord:
    return AlertRecord(
        source=kw.pop("source", "alertmanager"),
        fingerprint=fp,
        status=status,
        severity="critical",
        title=f"alert {fp}",
        labels={"fp": fp},
        annotations={"summary": "s"},
        starts_at=T0,
        **kw,
    )


# -- incidents -------------------------------------------------------------


def test_open_incident_is_idempotent_by_key(repo: Repository) -> None:
    first, created = _open(
        repo, pagerduty_incident_id="PD1", pagerduty_url="https://pd/PD1", now=T0
    )
    assert created is True
    assert (first.status, first.escalation_level, first.created_at) == ("triggered", 1, T0)
    again, created_again = _open(repo, title="different title")
    assert created_again is False
    assert again.id == first.id
    assert again.title == "API latency high"
    assert [e.action for e in repo.timeline(first.id)] == ["incident.opened"]


def test_eight_threads_racing_on_one_key_create_one_incident(
    repo: Repository, engine: sa.Engine, race: Race
) -> None:
    results = race(8, lambda _i: _open(repo, "storm"))
    assert len({incident.id for incident, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Incident)).scalar() == 1
    assert verify_audit_chain(engine).ok


def test_resolved_incident_with_same_key_is_reopened(repo: Repository) -> None:
    incident, _ = _open(repo)
    assert repo.set_incident_status(incident.id, "acknowledged", "U1")
    assert repo.set_incident_status(incident.id, "resolved", "U1")
    reopened, created = _open(repo)
    assert created is False
    assert reopened.id == incident.id
    assert reopened.status == "triggered"
    assert (reopened.resolved_at, reopened.acknowledged_by) == (None, None)
    actions = [e.action for e in repo.timeline(incident.id)]
    assert actions == [
        "incident.opened",
        "incident.acknowledged",
        "incident.resolved",
        "incident.reopened",
    ]


def test_lookups(repo: Repository) -> None:
    incident, _ = _open(repo, pagerduty_incident_id="PDX")
    other, _ = _open(repo, "grp-2")
    assert repo.set_slack_root(incident.id, "C123", "1700000000.000100")
    assert not repo.set_slack_root(9999, "C123", "1")
    assert repo.get_incident(incident.id).slack_root_ts == "1700000000.000100"  # type: ignore[union-attr]
    assert repo.get_incident(9999) is None
    assert repo.get_incident_by_key("grp-2").id == other.id  # type: ignore[union-attr]
    assert repo.get_incident_by_key("nope") is None
    assert repo.get_incident_by_pagerduty_id("PDX").id == incident.id  # type: ignore[union-attr]
    assert repo.get_incident_by_root("C123", "1700000000.000100").id == incident.id  # type: ignore[union-attr]
    assert repo.get_incident_by_root("C999", "1700000000.000100") is None
    repo.set_incident_status(other.id, "resolved", "U1")
    assert [i.id for i in repo.list_open_incidents()] == [incident.id]
    third, _ = _open(repo, "grp-3")
    assert [i.id for i in repo.list_open_incidents()] == [third.id, incident.id]
    assert [i.id for i in repo.list_open_incidents(limit=1)] == [third.id]


def test_status_compare_and_set(repo: Repository) -> None:
    incident, _ = _open(repo)
    ack = {"triggered"}
    assert repo.set_incident_status(incident.id, "acknowledged", "U1", expected=ack, now=T0)
    assert not repo.set_incident_status(incident.id, "acknowledged", "U2", expected=ack)
    row = repo.get_incident(incident.id)
    assert row is not None
    assert (row.status, row.acknowledged_by, row.acknowledged_at) == ("acknowledged", "U1", T0)
    # Without `expected`, re-setting the current status is not a change.
    assert not repo.set_incident_status(incident.id, "acknowledged", "U3")
    assert not repo.set_incident_status(9999, "acknowledged", "U3")
    assert repo.set_incident_status(incident.id, "resolved", "U2", now=T0 + timedelta(hours=1))
    row = repo.get_incident(incident.id)
    assert row is not None
    assert row.resolved_at == T0 + timedelta(hours=1)
    timeline = repo.timeline(incident.id)
    assert [(e.action, e.actor) for e in timeline[1:]] == [
        ("incident.acknowledged", "U1"),
        ("incident.resolved", "U2"),
    ]
    with pytest.raises(ValueError, match="unknown incident status"):
        repo.set_incident_status(incident.id, "closed", "U1")


def test_concurrent_acks_have_one_winner(repo: Repository, race: Race) -> None:
    incident, _ = _open(repo)
    wins = race(
        6, lambda i: repo.set_incident_status(incident.id, "acknowledged", f"U{i}", {"triggered"})
    )
    assert sum(wins) == 1
    assert len([e for e in repo.timeline(incident.id) if e.action == "incident.acknowledged"]) == 1


# -- alerts and deliveries ----------------------------------------------------


def test_record_alerts_upserts(repo: Repository, engine: sa.Engine) -> None:
    incident, _ = _open(repo)
    assert repo.record_alerts(incident.id, [_alert("a"), _alert("b")], now=T0) == 2
    later = T0 + timedelta(minutes=5)
    batch = [_alert("a", "resolved", ends_at=later), _alert("c")]
    assert repo.record_alerts(incident.id, batch, now=later) == 1
    assert repo.alert_counts(incident.id) == {"firing": 2, "resolved": 1}
    with engine.connect() as conn:
        a = conn.execute(sa.select(Alert.__table__).where(Alert.fingerprint == "a")).one()
    assert (a.status, a.occurrences, a.ends_at) == ("resolved", 2, later)
    assert (a.first_seen_at, a.last_seen_at) == (T0, later)
    assert repo.record_alerts(incident.id, []) == 0


def test_record_alerts_same_fingerprint_other_source_is_new(repo: Repository) -> None:
    incident, _ = _open(repo)
    assert repo.record_alerts(incident.id, [_alert("x")]) == 1
    assert repo.record_alerts(incident.id, [_alert("x", source="generic")]) == 1


def test_record_alerts_duplicates_within_a_batch_collapse(repo: Repository) -> None:
    incident, _ = _open(repo)
    assert repo.record_alerts(incident.id, [_alert("d"), _alert("d", "resolved")]) == 1
    assert repo.alert_counts(incident.id) == {"firing": 0, "resolved": 1}


def test_record_alerts_large_batch_is_statement_batched(
    repo: Repository, engine: sa.Engine
) -> None:
    incident, _ = _open(repo)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        assert repo.record_alerts(incident.id, [_alert(f"fp-{i}") for i in range(500)]) == 500
        upserts = [s for s in statements if s.lstrip().upper().startswith("INSERT INTO ALERTS")]
        assert len(upserts) == 1
        statements.clear()
        batch = [_alert(f"fp-{i}") for i in range(250, 1250)]
        assert repo.record_alerts(incident.id, batch) == 750
        upserts = [s for s in statements if s.lstrip().upper().startswith("INSERT INTO ALERTS")]
        # Pages of many rows (SQLAlchemy's insertmanyvalues), never a statement per alert.
        assert 1 <= len(upserts) <= 2
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert repo.alert_counts(incident.id) == {"firing": 1250, "resolved": 0}


def test_record_alerts_batch_is_one_transaction(repo: Repository) -> None:
    incident, _ = _open(repo)
    bad = AlertRecord("alertmanager", "bad", "exploded", "critical", "t")  # violates CHECK
    with pytest.raises(sa.exc.IntegrityError):
        repo.record_alerts(incident.id, [_alert("ok"), bad])
    assert repo.alert_counts(incident.id) == {"firing": 0, "resolved": 0}


def test_remember_delivery_dedupes(repo: Repository, race: Race) -> None:
    assert repo.remember_delivery("alertmanager", "d-1") is True
    assert repo.remember_delivery("alertmanager", "d-1") is False
    assert repo.remember_delivery("slack", "d-1") is True
    results = race(8, lambda _i: repo.remember_delivery("pagerduty", "retry-storm"))
    assert sorted(results) == [False] * 7 + [True]


# -- remediation -------------------------------------------------------------


def _request(repo: Repository, incident_id: int, key: str | None = "1700000000.1") -> Any:
    return repo.create_remediation_request(
        incident_id,
        "latency",
        "rollback",
        "git.revert",
        {"repo": "org/api", "sha": "abc123"},
        "U1",
        T0 + timedelta(minutes=15),
        idempotency_key=key,
        now=T0,
    )


def test_remediation_request_is_idempotent(repo: Repository, race: Race) -> None:
    incident, _ = _open(repo)
    request, created = _request(repo, incident.id)
    assert created is True
    assert (request.state, request.params, request.expires_at) == (
        "pending",
        {"repo": "org/api", "sha": "abc123"},
        T0 + timedelta(minutes=15),
    )
    again, created_again = _request(repo, incident.id)
    assert (again.id, created_again) == (request.id, False)
    # Without a key every call is a new request.
    assert _request(repo, incident.id, None)[0].id != _request(repo, incident.id, None)[0].id
    results = race(8, lambda _i: _request(repo, incident.id, "double-click"))
    assert len({r.id for r, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    requested = [e for e in repo.timeline(incident.id) if e.action == "remediation.requested"]
    assert len(requested) == 4


def test_remediation_transitions_are_compare_and_set(repo: Repository, race: Race) -> None:
    incident, _ = _open(repo)
    request, _ = _request(repo, incident.id)
    wins = race(
        4,
        lambda i: repo.transition_remediation(
            request.id, {"pending"}, "approved", f"U{i + 2}", "lgtm"
        ),
    )
    assert sum(wins) == 1
    stored = repo.get_remediation_request(request.id)
    assert stored is not None
    assert stored.state == "approved"
    assert stored.decided_by in {"U2", "U3", "U4", "U5"}
    assert stored.decision_reason == "lgtm"
    assert not repo.transition_remediation(request.id, {"pending"}, "denied", "U9")
    assert not repo.transition_remediation(9999, {"pending"}, "denied", "U9")
    assert repo.get_remediation_request(9999) is None
    with pytest.raises(ValueError, match="unknown remediation state"):
        repo.transition_remediation(request.id, {"approved"}, "done", "U9")


def test_execution_happens_once(repo: Repository, race: Race, engine: sa.Engine) -> None:
    incident, _ = _open(repo)
    request, _ = _request(repo, incident.id)
    assert repo.start_execution(request.id, "bot") is None  # not approved yet
    vote = repo.record_approval(request.id, "U2", "approve", now=T0)
    assert (vote.decision, vote.created_at) == ("approve", T0)
    assert repo.transition_remediation(request.id, {"pending"}, "approved", "U2")
    started = race(4, lambda _i: repo.start_execution(request.id, "bot"))
    executions = [e for e in started if e is not None]
    assert len(executions) == 1
    assert executions[0].outcome == "running"
    assert repo.finish_execution(request.id, "succeeded", "bot", {"pr": 42})
    assert not repo.finish_execution(request.id, "failed", "bot")
    stored = repo.get_remediation_request(request.id)
    assert stored is not None
    assert stored.state == "succeeded"
    actions = [e.action for e in repo.timeline(incident.id)]
    assert actions[-4:] == [
        "remediation.vote",
        "remediation.approved",
        "remediation.executing",
        "remediation.succeeded",
    ]
    assert verify_audit_chain(engine).ok
    with pytest.raises(ValueError, match="invalid final outcome"):
        repo.finish_execution(request.id, "running", "bot")


# -- escalation and audit ------------------------------------------------------


def _climb(repo: Repository, number: int, to_level: int, epoch: int = 0, **kw: object) -> bool:
    """One ladder step from the incident's current state, as the sweep takes it."""
    row = repo.get_incident(number)
    assert row is not None
    with repo.session() as s:
        return repo.claim_escalation(
            s,
            number,
            row.escalation_level,
            to_level,
            row.next_escalation_at,
            kw.get("next_at"),  # type: ignore[arg-type]
            "scheduler",
            "test",
            epoch=epoch,
            require_triggered=False,
        )


def test_escalation_step_fires_once_per_epoch(repo: Repository, race: Race) -> None:
    incident, _ = _open(repo)
    nxt = T0 + timedelta(minutes=10)
    fired = race(4, lambda _i: _climb(repo, incident.id, 2, next_at=nxt))
    assert sum(fired) == 1
    row = repo.get_incident(incident.id)
    assert row is not None
    assert (row.escalation_level, row.next_escalation_at) == (2, nxt)
    assert not _climb(repo, incident.id, 2)  # level 2 of epoch 0 is taken
    assert _climb(repo, incident.id, 2, epoch=1)
    # Resolving stops the ladder.
    assert repo.set_incident_status(incident.id, "resolved", "U1")
    row = repo.get_incident(incident.id)
    assert row is not None
    assert row.next_escalation_at is None


def test_audit_and_timeline(repo: Repository, engine: sa.Engine) -> None:
    incident, _ = _open(repo)
    entry = repo.audit("U7", "note.added", incident.id, {"text": "looking"})
    repo.audit("system", "bot.started")
    assert entry.prev_hash != entry.hash
    timeline = repo.timeline(incident.id)
    assert [e.action for e in timeline] == ["incident.opened", "note.added"]
    assert timeline[1].detail == {"text": "looking"}
    assert timeline[1].at.tzinfo == UTC
    assert verify_audit_chain(engine).rows_checked == 3


def test_session_context_manager_commits_and_rolls_back(repo: Repository) -> None:
    incident, _ = _open(repo)
    with repo.session() as s:
        s.execute(sa.update(Incident).where(Incident.id == incident.id).values(title="renamed"))
    with pytest.raises(RuntimeError), repo.session() as s:
        s.execute(sa.update(Incident).where(Incident.id == incident.id).values(title="lost"))
        raise RuntimeError("boom")
    row = repo.get_incident(incident.id)
    assert row is not None
    assert row.title == "renamed"
