"""Apply-path benchmark: how fast the inbox worker turns stored batches into incidents.

No HTTP and no Slack: the storm's Alertmanager bodies (bench/storm.py's
`build_plan`, same seed, same payloads) are put into the inbox of a fresh
database, then one `InboxWorker` applies them until the inbox is empty, with
the Slack thread output enabled (it enqueues roots and replies as in
production). Measures wall time and this process's CPU time; `--profile FILE`
writes a cProfile of the applying phase. Isolates the figure the storm
benchmark reports as "applied" from the senders and the fakes sharing the CPUs.

    PYTHONPATH=. .venv/bin/python bench/apply.py --database sqlite --alerts 50000 --groups 200
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.storm import Database, build_plan
from bot.core import build_core
from bot.domain.alerts import parse_alertmanager
from bot.domain.playbooks import load_playbooks
from bot.ingest.inbox import Inbox, InboxWorker
from bot.ingest.webhooks import inbox_appliers
from bot.settings import load_settings
from bot.store.db import make_engine, upgrade_database

try:
    from bot.ingest.webhooks import alertmanager_together
except ImportError:  # a commit before batches were applied together (A/B runs)
    alertmanager_together = None  # type: ignore[assignment]

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--alerts", type=int, default=5000)
    p.add_argument("--groups", type=int, default=20)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--pg-admin", default=os.environ.get("STORM_PG_ADMIN", ""))
    p.add_argument("--profile", default=None, help="write a cProfile of applying to this file")
    p.add_argument("--out", default=None, help="JSON result")
    args = p.parse_args(argv)

    plan = build_plan(args.seed, args.alerts, args.groups, args.batch, 0)
    db = Database(
        args.database, args.seed, args.pg_admin or "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    db.create()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["NEXUS_CONFIG"] = str(REPO / "config" / "nexus.yaml")
            settings = load_settings(
                database_url=db.url,
                nexus_playbooks=REPO / "playbooks",
                nexus_incident_channel="C0INCIDENT",
                nexus_workdir=Path(tmp) / "work",
            )
            engine = make_engine(settings.database_url)
            upgrade_database(engine)
            playbooks = load_playbooks([settings.nexus_playbooks], settings.allowed_targets)
            core = build_core(settings, engine, playbooks)
            inbox = Inbox(engine)
            for item in plan.items:
                body = item.body.decode()
                alerts = parse_alertmanager(json.loads(body))
                inbox.put("alertmanager", body, len(alerts), alerts[0].group_key or "")
            together = (
                {"together": alertmanager_together(core.incidents)}
                if alertmanager_together is not None
                else {}
            )
            worker = InboxWorker(inbox, inbox_appliers(core.incidents), **together)
            profiler = cProfile.Profile() if args.profile else None
            wall0, cpu0 = time.perf_counter(), time.process_time()
            if profiler:
                profiler.enable()
            applied = 0
            while True:
                done = worker.apply_some(limit=10_000)
                applied += done
                if done == 0:
                    break
            if profiler:
                profiler.disable()
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            with engine.connect() as conn:
                counts = {
                    table: conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
                    for table in ("alerts", "incidents", "inbox", "outbox", "timeline_events")
                }
            engine.dispose()
    finally:
        db.drop()
    result: dict[str, Any] = {
        "database": args.database,
        "alerts": args.alerts,
        "groups": args.groups,
        "batches": applied,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "alerts_per_s": round(args.alerts / wall, 1),
        "code": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
        ).stdout.strip(),
        "ms_per_batch": round(1000 * wall / max(1, applied), 2),
        "rows": counts,
    }
    print(json.dumps(result, indent=2))
    if profiler and args.profile:
        profiler.dump_stats(args.profile)
        pstats.Stats(args.profile).sort_stats("cumulative").print_stats(40)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
