"""`nexus-bot report` as a real process on real databases (SQLite and PostgreSQL).

The database is seeded through the repository with fixed offsets from now, so
every figure below is worked out by hand from the seeded times.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from bot.store.models import EscalationStep, Incident, TimelineEvent
from bot.store.repository import Repository
from tests.support.cli import nexus_bot

NOW = datetime.now(UTC)
MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
NO_TIMES = {"count": 0, "mean_seconds": None, "p90_seconds": None}
NO_REMEDIATIONS = {"requested": 0, "approved": 0, "denied": 0, "expired": 0, "failed": 0}
NO_REVIEWS = {"open": 0, "closed": 0}


@dataclass(frozen=True)
class Seeded:
    """An incident to seed: when it was created, acknowledged and resolved (offsets)."""

    playbook: str
    severity: str
    age: timedelta
    acknowledged_after: timedelta | None = None
    resolved_after: timedelta | None = None
    remediations: tuple[str, ...] = ()  # final states of its remediation requests
    level: int = 1  # incidents.escalation_level now
    steps: tuple[int, ...] = ()  # escalation levels fired (escalation_steps)


# What the figures below are worked out from. The last one is 40 days old:
# outside the default 30-day window.
INCIDENTS = (
    Seeded(
        "schema-mismatch",
        "critical",
        age=3 * DAY,
        acknowledged_after=5 * MINUTE,
        resolved_after=90 * MINUTE,
        remediations=("succeeded", "denied"),
    ),
    Seeded(
        "schema-mismatch",
        "critical",
        age=2 * DAY,
        acknowledged_after=8 * MINUTE,
        remediations=("expired", "failed", "pending"),
        level=3,
    ),
    # Resolved without an acknowledgement: in time to resolve only. Escalated
    # to 2 and back to 1 (as on reopening): the fired steps remember level 2.
    Seeded(
        "ssot-sync",
        "warning",
        age=1 * DAY,
        resolved_after=20 * MINUTE,
        remediations=("refused", "approved", "executing"),
        steps=(2,),
    ),
    Seeded("frenly-ai", "critical", age=2 * HOUR),
    Seeded(
        "ssot-sync",
        "info",
        age=40 * DAY,
        acknowledged_after=1 * MINUTE,
        resolved_after=2 * MINUTE,
        remediations=("denied",),
    ),
)


def seed(engine: sa.Engine, incidents: tuple[Seeded, ...] = INCIDENTS) -> None:
    repo = Repository(engine)
    for n, seeded in enumerate(incidents):
        created_at = NOW - seeded.age
        incident, created = repo.open_incident(
            key=f"test:{n}",
            source="alertmanager",
            title=f"incident {n}",
            severity=seeded.severity,
            playbook_id=seeded.playbook,
            labels={},
            now=created_at,
        )
        assert created
        if seeded.acknowledged_after is not None:
            at = created_at + seeded.acknowledged_after
            assert repo.set_incident_status(incident.id, "acknowledged", "U0ALICE", now=at)
        if seeded.resolved_after is not None:
            at = created_at + seeded.resolved_after
            assert repo.set_incident_status(incident.id, "resolved", "U0BOB", now=at)
        for step, state in enumerate(seeded.remediations):
            request, made = repo.create_remediation_request(
                incident.id,
                seeded.playbook,
                f"step-{step}",
                "kubernetes.restart",
                {},
                "U0ALICE",
                expires_at=created_at + HOUR,
                now=created_at + MINUTE,
            )
            assert made
            if state != "pending":
                assert repo.transition_remediation(request.id, {"pending"}, state, "U0BOB")
        with engine.begin() as conn:
            conn.execute(
                sa.update(Incident)
                .where(Incident.id == incident.id)
                .values(escalation_level=seeded.level)
            )
            for level in seeded.steps:
                conn.execute(
                    sa.insert(EscalationStep).values(
                        incident_id=incident.id,
                        level=level,
                        fired_at=created_at + 10 * MINUTE,
                        actor="nexus-bot",
                    )
                )


def report(database_url: str, *args: str) -> dict[str, Any]:
    result = nexus_bot(database_url, "report", "--json", *args)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def figures(
    incidents: int,
    acknowledge: dict[str, Any],
    resolve: dict[str, Any],
    remediations: dict[str, int],
    level: int | None,
) -> dict[str, Any]:
    return {
        "incidents": incidents,
        "time_to_acknowledge": acknowledge,
        "time_to_resolve": resolve,
        "remediations": remediations,
        "highest_escalation_level": level,
        "reviews": NO_REVIEWS,
    }


def times(count: int, mean: float, p90: float) -> dict[str, Any]:
    return {"count": count, "mean_seconds": mean, "p90_seconds": p90}


def remediations(
    requested: int, approved: int, denied: int, expired: int, failed: int
) -> dict[str, int]:
    return {
        "requested": requested,
        "approved": approved,
        "denied": denied,
        "expired": expired,
        "failed": failed,
    }


# The last 30 days: the first four incidents. Acknowledged after 5 and 8 minutes
# (mean 6m 30s, p90 8m), resolved after 90 and 20 minutes (mean 55m, p90 90m).
CRITICAL = figures(
    3, times(2, 390.0, 480.0), times(1, 5400.0, 5400.0), remediations(5, 2, 1, 1, 1), 3
)
WARNING = figures(1, NO_TIMES, times(1, 1200.0, 1200.0), remediations(3, 2, 0, 0, 0), 2)
TOTALS = figures(
    4, times(2, 390.0, 480.0), times(2, 3300.0, 5400.0), remediations(8, 4, 1, 1, 1), 3
)


def test_figures_as_json_per_playbook_and_severity(database_url: str, engine: sa.Engine) -> None:
    seed(engine)
    before = datetime.now(UTC).replace(microsecond=0)
    figured = report(database_url)
    after = datetime.now(UTC)

    assert list(figured) == [
        "schema",
        "since",
        "until",
        "window_seconds",
        "totals",
        "by_playbook",
        "by_severity",
    ]
    assert figured["schema"] == 1
    assert figured["window_seconds"] == 30 * 86400
    until = datetime.fromisoformat(figured["until"])
    assert before <= until <= after
    assert datetime.fromisoformat(figured["since"]) == until - 30 * DAY
    assert figured["totals"] == TOTALS
    assert figured["by_playbook"] == {
        "frenly-ai": figures(1, NO_TIMES, NO_TIMES, NO_REMEDIATIONS, 1),
        "schema-mismatch": figures(
            2, times(2, 390.0, 480.0), times(1, 5400.0, 5400.0), remediations(5, 2, 1, 1, 1), 3
        ),
        "ssot-sync": WARNING,
    }
    assert list(figured["by_playbook"]) == ["frenly-ai", "schema-mismatch", "ssot-sync"]
    # Every severity is always there; one without incidents has nothing to average.
    assert figured["by_severity"] == {
        "critical": CRITICAL,
        "warning": WARNING,
        "info": figures(0, NO_TIMES, NO_TIMES, NO_REMEDIATIONS, None),
    }


def test_since_narrows_and_widens_the_window(database_url: str, engine: sa.Engine) -> None:
    seed(engine)
    # 90 days: the 40-day-old info incident too (acknowledged after 1 minute,
    # resolved after 2, one remediation denied).
    wide = report(database_url, "--since", "90d")
    assert wide["window_seconds"] == 90 * 86400
    assert wide["by_severity"]["info"] == figures(
        1, times(1, 60.0, 60.0), times(1, 120.0, 120.0), remediations(1, 0, 1, 0, 0), 1
    )
    assert wide["by_playbook"]["ssot-sync"] == figures(
        2, times(1, 60.0, 60.0), times(2, 660.0, 1200.0), remediations(4, 2, 1, 0, 0), 2
    )
    # Five resolve times would change the p90: here 3 (90m, 20m, 2m) -> nearest rank 90m.
    assert wide["totals"]["time_to_resolve"] == times(3, 2240.0, 5400.0)
    assert wide["totals"]["time_to_acknowledge"] == times(3, 280.0, 480.0)

    # 3 hours, 180 minutes: only the incident opened 2 hours ago.
    for since in ("3h", "180m"):
        narrow = report(database_url, "--since", since)
        assert narrow["window_seconds"] == 3 * 3600
        assert narrow["totals"] == figures(1, NO_TIMES, NO_TIMES, NO_REMEDIATIONS, 1)
        assert list(narrow["by_playbook"]) == ["frenly-ai"]

    # 90 minutes: nothing, but the same shape.
    empty = report(database_url, "--since", "90m")
    assert empty["totals"] == figures(0, NO_TIMES, NO_TIMES, NO_REMEDIATIONS, None)
    assert empty["by_playbook"] == {}
    assert list(empty["by_severity"]) == ["critical", "warning", "info"]


def test_figures_as_aligned_text(database_url: str, engine: sa.Engine) -> None:
    seed(engine)
    result = nexus_bot(database_url, "report")
    assert result.returncode == 0, result.stderr
    heading, *lines = result.stdout.splitlines()
    shown = re.fullmatch(r"Incidents created since (.{16})Z \(last 30d\): 4", heading)
    assert shown, heading
    since = datetime.strptime(shown[1], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    assert abs(since - (datetime.now(UTC) - 30 * DAY)) < 2 * MINUTE
    header = (
        "INCIDENTS  ACK MEAN  ACK P90  RESOLVE MEAN  RESOLVE P90  REQUESTED  APPROVED  DENIED"
        "  EXPIRED  FAILED  MAX LEVEL  REVIEWS OPEN/CLOSED"
    )
    assert lines == [
        "",
        "By playbook",
        f"PLAYBOOK         {header}",
        "frenly-ai                1         -        -             -            -          0"
        "         0       0        0       0          1                  0/0",
        "schema-mismatch          2    6m 30s   8m 00s        1h 30m       1h 30m          5"
        "         2       1        1       1          3                  0/0",
        "ssot-sync                1         -        -       20m 00s      20m 00s          3"
        "         2       0        0       0          2                  0/0",
        "(all)                    4    6m 30s   8m 00s       55m 00s       1h 30m          8"
        "         4       1        1       1          3                  0/0",
        "",
        "By severity",
        f"SEVERITY  {header}",
        "critical          3    6m 30s   8m 00s        1h 30m       1h 30m          5"
        "         2       1        1       1          3                  0/0",
        "warning           1         -        -       20m 00s      20m 00s          3"
        "         2       0        0       0          2                  0/0",
        "info              0         -        -             -            -          0"
        "         0       0        0       0          -                  0/0",
        "(all)             4    6m 30s   8m 00s       55m 00s       1h 30m          8"
        "         4       1        1       1          3                  0/0",
        "",
        "ACK: created to acknowledged; RESOLVE: created to resolved; "
        "APPROVED counts requests approved, run or not.",
        "Reviews: post-incident review issues filed, open/closed.",
    ]


def test_long_durations_read_in_days_and_hours(database_url: str, engine: sa.Engine) -> None:
    seed(
        engine,
        (
            Seeded(
                "slow",
                "warning",
                age=5 * DAY,
                acknowledged_after=45 * timedelta(seconds=1),
                resolved_after=2 * DAY + 3 * HOUR + 59 * MINUTE,
            ),
        ),
    )
    result = nexus_bot(database_url, "report", "--since", "7d")
    assert result.returncode == 0, result.stderr
    [row] = [line for line in result.stdout.splitlines() if line.startswith("slow ")]
    assert row.split()[:8] == ["slow", "1", "45s", "45s", "2d", "03h", "2d", "03h"]
    assert result.stdout.splitlines()[0].endswith("(last 7d): 1")


def test_an_empty_database_reports_nothing_and_exits_0(database_url: str) -> None:
    text = nexus_bot(database_url, "report", "--since", "12h")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("No incidents created since ")
    assert text.stdout.endswith("Z (last 12h).\n")
    as_json = report(database_url)
    assert as_json["totals"] == figures(0, NO_TIMES, NO_TIMES, NO_REMEDIATIONS, None)
    assert as_json["by_playbook"] == {}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--since", "0d"], "like 90m, 12h or 30d"),
        (["--since", "30"], "like 90m, 12h or 30d"),
        (["--since", "30s"], "like 90m, 12h or 30d"),
        (["--since", "2w"], "like 90m, 12h or 30d"),
        (["--since", "1.5h"], "like 90m, 12h or 30d"),
        (["--since", "-5d"], "expected one argument"),
        (["--since", "30 d"], "like 90m, 12h or 30d"),
        (["--since", "30D"], "like 90m, 12h or 30d"),
        (["--since", "30d\n"], "like 90m, 12h or 30d"),
        (["--since", "\u0663d"], "like 90m, 12h or 30d"),  # a non-ASCII digit
        (["--since", "3651d"], "at most 3650d"),
        (["--since", "99999999999999999999d"], "like 90m, 12h or 30d"),
        (["--since", ""], "like 90m, 12h or 30d"),
        (["--since"], "expected one argument"),
        (["--json=yes"], "ignored explicit argument"),
        (["30d"], "unrecognized arguments"),
    ],
)
def test_bad_options_exit_2_with_a_reason(sqlite_url: str, args: list[str], says: str) -> None:
    result = nexus_bot(sqlite_url, "report", *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert says in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def test_an_unreachable_database_exits_2_and_prints_no_json() -> None:
    result = nexus_bot("postgresql://nobody@127.0.0.1:9/none", "report", "--json")
    assert result.returncode == 2
    assert result.stdout == ""  # a script must not read "no incidents" from an outage
    assert "database unavailable" in result.stderr
    assert "Traceback" not in result.stderr


def test_review_issues_are_counted_by_their_last_state(
    database_url: str, engine: sa.Engine
) -> None:
    seed(engine)
    with engine.begin() as conn:
        ids = [row.id for row in conn.execute(sa.text("SELECT id FROM incidents ORDER BY id"))]
        now = datetime.now(UTC)
        for incident_id, kind in (
            (ids[0], "review.linked"),
            (ids[1], "review.linked"),
            (ids[1], "review.closed"),
        ):
            conn.execute(
                sa.insert(TimelineEvent).values(
                    incident_id=incident_id,
                    kind=kind,
                    actor="nexus-bot",
                    public=False,
                    facts={"url": "https://github.test/r/1", "number": 1},
                    at=now,
                )
            )
    assert report(database_url)["totals"]["reviews"] == {"open": 1, "closed": 1}
