"""The stored snapshot: built from published updates only, rebuilt in each public
change's transaction, on real SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from bot.core import Core, build_core
from bot.domain.alerts import Alert, AlertSource
from bot.domain.playbooks import load_playbooks
from bot.settings import Settings
from bot.store.models import Incident, utcnow
from bot.store.models import StatusSnapshot as SnapshotRow
from bot.web import snapshot

REPO_ROOT = Path(__file__).resolve().parents[3]
HOSTILE = {
    "alertname": "FrenlyAIDangerousEdit",
    "severity": "critical",
    "service": "frenly-ai",
    "team": "<script>alert(1)</script>",
    "token": "ghp_supersecrettokenvalue000000000000",
}
ANNOTATIONS = {
    "summary": '"><img src=x onerror=alert(1)> {{ secrets }}',
    "runbook": "python scripts/reset_to_ssot.py --anchor v37",
}


def make_core(engine: sa.Engine, **status_page: object) -> Core:
    settings = Settings(status_page=status_page) if status_page else Settings()
    playbooks = load_playbooks([REPO_ROOT / "playbooks"], settings.allowed_targets)
    return build_core(settings, engine, playbooks)


def alert(key: str = "g1", severity: str = "critical", status: str = "firing") -> Alert:
    return Alert(
        source=AlertSource.ALERTMANAGER,
        fingerprint=f"fp-{key}",
        title=ANNOTATIONS["summary"],
        labels={**HOSTILE, "severity": severity},
        annotations=ANNOTATIONS,
        group_key=key,
        status=status,
    )


def stored(engine: sa.Engine) -> tuple[dict[str, object], str] | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(SnapshotRow.document, SnapshotRow.etag)).first()
    if row is None:
        return None
    document = row.document if isinstance(row.document, dict) else json.loads(row.document)
    return document, row.etag


def test_an_incident_is_public_only_from_its_first_update(engine: sa.Engine) -> None:
    core = make_core(engine)
    number = core.incidents.ingest_alerts([alert()]).incidents[0]
    assert stored(engine) is None  # nothing public happened yet
    core.incidents.add_note(number, "internal: the <b>anchor</b> is bad", "U0BOB")
    assert stored(engine) is None
    core.incidents.post_update(number, "investigating", "We are looking into it", "U0PM")
    document, _ = stored(engine)  # type: ignore[misc]
    assert document["indicator"] == "critical" and document["description"] == "Major outage"
    [incident] = document["active"]  # type: ignore[misc]
    assert incident["name"] == "Service disruption"
    assert incident["components"] == ["frenly-ai"]
    assert [u["body"] for u in incident["updates"]] == ["We are looking into it"]
    states = {c["id"]: c["status"] for c in document["components"]}  # type: ignore[union-attr]
    assert states["frenly-ai"] == "major_outage" and states["ssot"] == "operational"
    text = json.dumps(document)
    for secret in [*HOSTILE.values(), *ANNOTATIONS.values(), "U0PM", "U0BOB", "anchor"]:
        if secret not in ("critical", "frenly-ai"):
            assert secret not in text, secret


def test_resolving_moves_it_to_history_and_it_ages_out(engine: sa.Engine) -> None:
    core = make_core(engine, history_days=1)
    number = core.incidents.ingest_alerts([alert()]).incidents[0]
    core.incidents.post_update(number, "identified", "Rolled back", "U0PM")
    first_etag = stored(engine)[1]  # type: ignore[index]
    core.incidents.ingest_alerts([alert(status="resolved")])  # its alerts clear: resolved
    document, etag = stored(engine)  # type: ignore[misc]
    assert etag != first_etag
    assert document["active"] == [] and document["indicator"] == "none"
    [past] = document["resolved"]  # type: ignore[misc]
    assert past["status"] == "resolved" and past["resolved_at"] is not None
    # Unchanged page: the row is not rewritten.
    with core.repo.session() as s:
        assert snapshot.refresh(s, core.settings) is False
    with engine.begin() as conn:
        conn.execute(
            sa.update(Incident)
            .where(Incident.id == number)
            .values(resolved_at=utcnow() - timedelta(days=2))
        )
    with core.repo.session() as s:
        assert snapshot.refresh(s, core.settings) is True
    assert stored(engine)[0]["resolved"] == []  # type: ignore[index]


def test_auto_publish_shows_critical_incidents_at_once(engine: sa.Engine) -> None:
    core = make_core(engine, auto_publish_critical=True)
    core.incidents.ingest_alerts([alert("w", severity="warning")])
    assert stored(engine) is None  # warning: waits for a human
    core.incidents.ingest_alerts([alert("c")])
    [incident] = stored(engine)[0]["active"]  # type: ignore[index]
    assert incident["updates"][0]["body"].startswith("We are investigating")


def test_a_component_set_by_hand_stays_until_auto(engine: sa.Engine) -> None:
    core = make_core(engine)
    assert "degraded performance" in core.components.set_state("ssot", "degraded", "U0PM")
    states = {c["id"]: c["status"] for c in stored(engine)[0]["components"]}  # type: ignore[index]
    assert states["ssot"] == "degraded_performance"
    assert "Unknown component" in core.components.set_state("nope", "major", "U0PM")
    assert "Unknown state" in core.components.set_state("ssot", "on-fire", "U0PM")
    assert "follows its incidents" in core.components.set_state(
        "Configuration (SSOT)", "auto", "U0PM"
    )
    assert stored(engine)[0]["indicator"] == "none"  # type: ignore[index]


def test_a_drill_is_never_on_the_page_nor_in_its_components(engine: sa.Engine) -> None:
    core = make_core(engine, auto_publish_critical=True)
    drill = core.incidents.ingest_alerts([alert("drill", severity="warning")]).incidents[0]
    with engine.begin() as conn:
        conn.execute(sa.update(Incident).where(Incident.id == drill).values(drill_run_id=9))
    core.incidents.post_update(drill, "investigating", "DRILL: rehearsing", "U0PM")
    with core.repo.session() as s:
        snapshot.refresh(s, core.settings)
    document, _ = stored(engine)  # type: ignore[misc]
    assert document["active"] == [] and document["indicator"] == "none"
    states = {c["id"]: c["status"] for c in document["components"]}  # type: ignore[union-attr]
    assert set(states.values()) == {"operational"}

    real = core.incidents.ingest_alerts([alert("real")]).incidents[0]  # auto-published
    core.incidents.ingest_alerts([alert("drill", severity="warning", status="resolved")])
    document, _ = stored(engine)  # type: ignore[misc]
    assert [i["id"] for i in document["active"]] == [real]  # type: ignore[union-attr]
    assert document["resolved"] == []
    assert "DRILL" not in json.dumps(document)
