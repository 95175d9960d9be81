"""Alert-storm benchmark for the NEXUS incident bot, against local fakes only.

Starts FakeSlack (tests/fakes/slack.py, Slack's ~1 msg/s per channel pacing and
429 + Retry-After on), starts ``nexus-bot serve`` as a subprocess on 127.0.0.1
(SQLite in a temporary directory, or a fresh PostgreSQL database that is created
and dropped), then sends an Alertmanager storm (default 5,000 alerts in 20 groups,
batches of 100, 8 concurrent senders) with signed PagerDuty ``incident.triggered``
webhooks spread through it, waits (bounded) for the Slack outbox to drain, and
reports throughput, ack latency, HTTP statuses, Slack calls, root posts,
PagerDuty → thread-root latency, the bot's peak RSS and the alerts stored.

Run from the repository root::

    PYTHONPATH=. .venv/bin/python bench/storm.py --seed 1 --database sqlite \
        --out bench/results/storm-sqlite.json

Everything is deterministic for a given ``--seed`` (payloads, fingerprints,
titles, webhook ids, send order); timings of course are not. Loopback only;
every wait is bounded; the script stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.fakes.slack import FakeSlack  # noqa: E402
from tests.support.bot_process import (  # noqa: E402
    ALERTMANAGER_TOKEN,
    PAGERDUTY_SECRET,
    bot_env,
)

DEFAULT_PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"

TARGETS = {
    "alerts_per_second_min": 5000.0,
    "ack_p99_ms_max": 100.0,
    "lost_alerts_max": 0,
    "root_posts_max": 30,  # groups + PagerDuty incidents (set from the run's plan)
    "applied_alerts_per_second_min": {"sqlite": 10000.0, "postgresql": 5000.0},
    "applied_after_last_202_s_max": 10.0,
    "slack_429_max": 0,
    "pagerduty_thread_p95_s_max": 2.0,
    "peak_rss_mb_max": 300.0,
    "status_page_p99_ms_max": 100.0,
}

# (alertname, service): a realistic mix — most match one of the seven playbooks.
ALERT_KINDS = [
    ("SSOTConfigDrift", "billing-api"),
    ("SSOTSyncFailure", "ssot-sync"),
    ("LatencyDegradation", "ssot-sync"),
    ("SSOTSchemaMismatch", "orders-api"),
    ("SSOTBuildFailure", "ssot-build"),
    ("SSOTValidationFailure", "ssot-validate"),
    ("SSOTCanonicalFilesMissing", "ssot-repo"),
    ("FrenlyAIDangerousEdit", "frenly-ai"),
    ("ServiceDown", "checkout"),
    ("OrdersAPIErrorRate", "orders-api"),
]
PD_SERVICES = ["checkout", "payments", "search", "orders-api", "billing-api", "identity"]


# --------------------------------------------------------------------------- payloads


@dataclass
class Item:
    """One HTTP request of the storm."""

    endpoint: str  # "alertmanager" | "pagerduty"
    body: bytes
    headers: dict[str, str]
    alerts: int = 0
    title: str | None = None  # PagerDuty incident title (unique)


@dataclass
class Plan:
    items: list[Item]
    alerts: int
    groups: int
    batches: int
    pd_titles: list[str]


def _rng_hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def build_plan(seed: int, alerts: int, groups: int, batch: int, pagerduty: int) -> Plan:
    """Deterministic storm: Alertmanager batches (one group each) with PagerDuty spread in."""
    rng = random.Random(seed)
    run = f"s{seed}"
    base = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    n_batches = math.ceil(alerts / batch)
    # Batch b belongs to group b % groups: every batch is one Alertmanager
    # notification for one group (as Alertmanager sends them), and every batch
    # but possibly the last holds exactly `batch` alerts.
    group_meta: list[dict[str, Any]] = []
    for g in range(groups):
        name, service = ALERT_KINDS[g % len(ALERT_KINDS)]
        cluster = f"cluster-{g:02d}"
        severity = rng.choice(["critical", "warning", "warning", "info", None])
        common = {"alertname": name, "service": service, "cluster": cluster, "storm": run}
        if severity:
            common["severity"] = severity
        group_meta.append(
            {
                "groupKey": f'{{}}/{{storm="{run}"}}:{{alertname="{name}", cluster="{cluster}"}}',
                "groupLabels": {"alertname": name, "cluster": cluster},
                "commonLabels": common,
                "commonAnnotations": {"runbook": f"https://runbooks.nexus.internal/{name}"},
            }
        )
    bodies: list[Item] = []
    next_alert = 0
    for b in range(n_batches):
        g = b % groups
        meta = group_meta[g]
        size = min(batch, alerts - next_alert)
        name = meta["commonLabels"]["alertname"]
        service = meta["commonLabels"]["service"]
        cluster = meta["commonLabels"]["cluster"]
        raw_alerts = []
        for _ in range(size):
            i = next_alert
            next_alert += 1
            pod = f"{service}-{_rng_hex(rng, 8)}-{_rng_hex(rng, 5)}"
            resolved = rng.random() < 0.02
            starts = base + timedelta(seconds=rng.randrange(0, 3600))
            labels = {
                **meta["commonLabels"],
                "pod": pod,
                "instance": f"10.{g}.{(i // 250) % 256}.{i % 250}:9090",
                "namespace": "nexus",
            }
            raw_alerts.append(
                {
                    "status": "resolved" if resolved else "firing",
                    "labels": labels,
                    "annotations": {
                        "summary": f"{name} on {service} in {cluster} (pod {pod})",
                        "description": f"storm {run} alert {i}: {name} firing for {pod}",
                    },
                    "startsAt": starts.isoformat().replace("+00:00", "Z"),
                    "endsAt": (
                        (starts + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
                        if resolved
                        else "0001-01-01T00:00:00Z"
                    ),
                    "generatorURL": f"http://prometheus.nexus.internal:9090/graph?g0.expr={name}",
                    "fingerprint": hashlib.sha256(f"{seed}/{g}/{i}".encode()).hexdigest()[:16],
                }
            )
        payload = {
            "version": "4",
            "groupKey": meta["groupKey"],
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "nexus-bot",
            "groupLabels": meta["groupLabels"],
            "commonLabels": meta["commonLabels"],
            "commonAnnotations": meta["commonAnnotations"],
            "externalURL": "http://alertmanager.nexus.internal:9093",
            "alerts": raw_alerts,
        }
        bodies.append(
            Item(
                endpoint="alertmanager",
                body=json.dumps(payload).encode(),
                headers={
                    "content-type": "application/json",
                    "authorization": f"Bearer {ALERTMANAGER_TOKEN}",
                },
                alerts=size,
            )
        )
    rng.shuffle(bodies)

    pd_items = []
    titles = []
    for i in range(pagerduty):
        incident_id = f"QSTORM{seed:03d}P{i:03d}"
        service = PD_SERVICES[i % len(PD_SERVICES)]
        tag = _rng_hex(rng, 6)
        # Unique, mrkdwn-safe (no & < >) and short (the root text is clipped at 300).
        title = f"Storm {run} PagerDuty incident {i + 1:02d}/{pagerduty} [{tag}]: {service} 5xx"
        titles.append(title)
        event = {
            "event": {
                "id": f"01STORM{_rng_hex(rng, 19).upper()}",
                "event_type": "incident.triggered",
                "resource_type": "incident",
                "occurred_at": (base + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
                "agent": {"id": "PSVC001", "type": "service_reference", "summary": service},
                "client": {"name": "Prometheus"},
                "data": {
                    "id": incident_id,
                    "type": "incident",
                    "self": f"https://api.pagerduty.com/incidents/{incident_id}",
                    "html_url": f"https://nexus.pagerduty.com/incidents/{incident_id}",
                    "number": 9000 + i,
                    "status": "triggered",
                    "incident_key": f"storm-{run}/pd-{i}",
                    "created_at": (base + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
                    "title": title,
                    "service": {
                        "id": f"PSVC{i:03d}",
                        "type": "service_reference",
                        "summary": service,
                    },
                    "assignees": [
                        {"id": "PUSR010", "type": "user_reference", "summary": "Platform Lead"}
                    ],
                    "escalation_policy": {
                        "id": "PPOL001",
                        "type": "escalation_policy_reference",
                        "summary": "NEXUS Platform",
                    },
                    "priority": {"id": "PPRI001", "type": "priority_reference", "summary": "P1"},
                    "urgency": "high",
                },
            }
        }
        body = json.dumps(event).encode()
        digest = hmac.new(PAGERDUTY_SECRET.encode(), body, hashlib.sha256).hexdigest()
        pd_items.append(
            Item(
                endpoint="pagerduty",
                body=body,
                headers={
                    "content-type": "application/json",
                    "x-pagerduty-signature": f"v1={digest}",
                    "x-webhook-id": str(uuid.UUID(int=rng.getrandbits(128))),
                },
                title=title,
            )
        )
    # Spread the PagerDuty webhooks evenly through the send order.
    items: list[Item] = list(bodies)
    for i, pd in enumerate(pd_items):
        pos = int((i + 0.5) * len(bodies) / max(1, pagerduty)) + i
        items.insert(min(pos, len(items)), pd)
    return Plan(items, alerts, groups, n_batches, titles)


# --------------------------------------------------------------------------- helpers


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS/VmHWM (kB) from /proc/<pid>/status."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
    return out


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
    }
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal"):
                info["mem_total_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        info["free_h"] = subprocess.run(
            ["free", "-h"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    return info


def host_load(own_bot: int | None) -> dict[str, Any]:
    """Load average and other `bot serve` processes: this benchmark is not alone on the box."""
    others = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == own_bot:
            continue
        with contextlib.suppress(OSError):
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            if b"-m bot serve" in cmd or b"nexus-bot serve" in cmd:
                others += 1
    return {"loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()], "other_bot_processes": others}


def git_info() -> dict[str, Any]:
    out: dict[str, Any] = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out["commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "bot"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.split("\n")
        out["bot_uncommitted_files"] = [line[3:] for line in dirty if line.strip()]
    return out


# --------------------------------------------------------------------------- database


class Database:
    """The bot's database for this run: a temp SQLite file or a fresh PostgreSQL database."""

    def __init__(self, kind: str, seed: int, pg_admin: str) -> None:
        self.kind = kind
        self.pg_admin = pg_admin
        self.tmp = Path(tempfile.mkdtemp(prefix="nexus-storm-"))
        self.name = f"nexus_storm_s{seed}_{os.getpid()}"
        if kind == "sqlite":
            self.path = self.tmp / "storm.db"
            self.url = f"sqlite:///{self.path}"
        else:
            base = pg_admin.rsplit("/", 1)[0]
            self.url = f"{base}/{self.name}"
        self.version = ""

    def create(self) -> None:
        if self.kind == "postgresql":
            import psycopg

            with psycopg.connect(self.pg_admin, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}"')
                conn.execute(f'CREATE DATABASE "{self.name}"')
                row = conn.execute("SHOW server_version").fetchone()
                self.version = f"PostgreSQL {row[0] if row else '?'}"
        else:
            self.version = f"SQLite {sqlite3.sqlite_version}"

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.kind == "sqlite":
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
            try:
                return list(conn.execute(sql).fetchall())
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as pg:
            return [tuple(r) for r in pg.execute(sql).fetchall()]

    def drop(self) -> None:
        if self.kind == "postgresql":
            import psycopg

            with (
                contextlib.suppress(Exception),
                psycopg.connect(self.pg_admin, autocommit=True, connect_timeout=5) as conn,
            ):
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------- bot process


class Bot:
    """`python -m bot serve`, stderr to a file (a pipe would fill up and stall the bot)."""

    def __init__(
        self, database_url: str, slack_url: str, slack_token: str, log_dir: Path, index: int = 0
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / (f"bot-{index}.log" if index else "bot.log")
        self.env = {
            **bot_env(database_url, self.port, slack_url, slack_token),
            "NEXUS_WORKDIR": str(log_dir / f"work-{index}"),
        }
        for name in ("PAGERDUTY_ROUTING_KEY", "PAGERDUTY_API_TOKEN", "SMTP_URL", "SLACK_APP_TOKEN"):
            self.env.pop(name, None)  # loopback only: nothing may leave the machine
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60) -> None:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve"],
            cwd=REPO_ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bot exited at start-up:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"bot did not become healthy in {timeout}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
        return self.proc.returncode


# --------------------------------------------------------------------------- profiler


class Profiler:
    """py-spy attached to the bot during the storm: raw collapsed stacks + SVG flame graph."""

    def __init__(self, prefix: str, pid: int, rate: int) -> None:
        self.prefix = prefix
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(exe).exists():
            raise SystemExit("py-spy not found: .venv/bin/pip install py-spy")
        self.procs: list[subprocess.Popen[bytes]] = []
        Path(prefix).parent.mkdir(parents=True, exist_ok=True)
        for fmt, ext in (("raw", ".txt"), ("flamegraph", ".svg")):
            self.procs.append(
                subprocess.Popen(
                    [
                        exe,
                        "record",
                        "--pid",
                        str(pid),
                        "--rate",
                        str(rate),
                        "--nonblocking",
                        "--format",
                        fmt,
                        "-o",
                        prefix + ext,
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(1.0)  # let both attach before the first request

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _short_path(path: str) -> str:
    for marker in ("/site-packages/", "/lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    root = str(REPO_ROOT) + "/"
    return path[len(root) :] if path.startswith(root) else path


def _parse_frame(frame: str) -> tuple[str, str]:
    """'func (path/file.py:123)' -> ('path/file.py:func', 'path/file.py:123 func')."""
    frame = frame.strip()
    if frame.endswith(")") and " (" in frame:
        func, _, loc = frame[:-1].rpartition(" (")
        path, _, line = loc.rpartition(":")
        path = _short_path(path)
        return f"{path}:{func}", f"{path}:{line} {func}"
    return frame, frame


# Leaf frames that are a thread waiting, not working (py-spy's idle detection
# misses some of them with --nonblocking): the event loop's epoll, an idle
# pool worker blocked in SimpleQueue.get, condition waits (APScheduler).
IDLE_LEAVES = (
    "selectors.py:EpollSelector.select",
    "concurrent/futures/thread.py:_worker",
    "threading.py:Condition.wait",
    "threading.py:Event.wait",
)


def phase_of(deepest_bot: str | None, below: list[str]) -> str:
    """What kind of work a sample is, from the frames below its deepest bot/ frame."""
    joined = ";".join(below)
    if deepest_bot == "bot/store/db.py:make_engine.<locals>._on_begin":
        return "BEGIN IMMEDIATE (SQLite write lock: wait + begin)"
    if "_compile_w_cache" in joined or "sqlalchemy/sql/compiler.py" in joined:
        return "SQLAlchemy SQL compilation"
    if "do_execute" in joined or "psycopg/cursor.py" in joined:
        return "database round trip (driver execute)"
    if "do_commit" in joined or "do_rollback" in joined:
        return "commit"
    if "sqlalchemy/pool/" in joined or "psycopg/connection.py" in joined:
        return "connection pool checkout/return"
    if "sqlalchemy/engine/cursor.py" in joined or "sqlalchemy/engine/result.py" in joined:
        return "result fetching"
    if "bind_processor" in joined or "result_processor" in joined or "process_bind" in joined:
        return "type processing (bind/result)"
    if "sqlalchemy/orm/" in joined:
        return "SQLAlchemy ORM/session machinery"
    if "sqlalchemy/" in joined:
        return "SQLAlchemy statement construction/other"
    if "json/" in joined:
        return "JSON encode/decode"
    if "pydantic" in joined:
        return "pydantic"
    if "structlog" in joined or "logging/" in joined:
        return "logging"
    if any(x in joined for x in ("asyncio/", "selectors.py", "uvicorn/", "starlette/", "h11/")):
        return "HTTP server / asyncio"
    if deepest_bot is None:
        return "other (no bot/ frame)"
    if not below:
        return "bot/ Python code itself"
    return "other library code"


def summarize_profile(raw_paths: list[str], top: int = 30) -> dict[str, Any]:
    """Shares of busy samples from py-spy raw (collapsed) output.

    * inclusive: time in a function and everything it calls;
    * self: time in the leaf frame;
    * by deepest bot/ frame (function, and file:line): the bot code responsible
      for the sample, including the library code it called — where to optimise;
    * by thread kind: ingest/worker pool vs event loop vs other threads.
    """
    self_c: Counter[str] = Counter()
    incl_c: Counter[str] = Counter()
    pkg_self: Counter[str] = Counter()
    bot_fn: Counter[str] = Counter()
    bot_line: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    phases: Counter[str] = Counter()
    fn_phases: dict[str, Counter[str]] = {}
    total = idle = 0
    for raw_path in raw_paths:
        with open(raw_path) as fh:
            for line in fh:
                stack, _, count_s = line.rstrip("\n").rpartition(" ")
                try:
                    count = int(count_s)
                except ValueError:
                    continue
                frames = [_parse_frame(f) for f in stack.split(";") if f]
                if not frames:
                    continue
                total += count
                keys = [k for k, _ in frames]
                if keys[-1] in IDLE_LEAVES:
                    idle += count
                    continue
                self_c[keys[-1]] += count
                leaf_path = keys[-1].split(":", 1)[0]
                pkg_self[leaf_path.split("/", 1)[0]] += count
                for key in set(keys):
                    incl_c[key] += count
                at = next(
                    (i for i in range(len(keys) - 1, -1, -1) if keys[i].startswith("bot/")), -1
                )
                deepest = frames[at] if at >= 0 else None
                fn = deepest[0] if deepest else "(no bot/ frame)"
                bot_fn[fn] += count
                bot_line[deepest[1] if deepest else "(no bot/ frame)"] += count
                phase = phase_of(deepest[0] if deepest else None, keys[at + 1 :])
                phases[phase] += count
                fn_phases.setdefault(fn, Counter())[phase] += count
                if "concurrent/futures/thread.py:_worker" in keys:
                    kind = "thread pools (ingest lane + asyncio.to_thread)"
                elif "bot/server.py:run_server" in keys:
                    kind = "event loop (uvicorn, starlette, outbox worker)"
                else:
                    kind = "other threads"
                threads[kind] += count
    busy = max(1, total - idle)

    def rows(counter: Counter[str], only_bot: bool = False) -> list[dict[str, Any]]:
        out = []
        for key, n in counter.most_common():
            if only_bot and not key.startswith("bot/"):
                continue
            out.append({"name": key, "samples": n, "percent": round(100 * n / busy, 1)})
            if len(out) >= top:
                break
        return out

    return {
        "total_samples": total,
        "idle_samples_excluded": idle,
        "busy_samples": total - idle,
        "by_thread": rows(threads),
        "by_phase": rows(phases),
        "deepest_bot_function": rows(bot_fn),
        "deepest_bot_function_phases": {
            fn: rows(fn_phases[fn])[:6] for fn, _ in bot_fn.most_common(6)
        },
        "deepest_bot_line": rows(bot_line),
        "inclusive_bot": rows(incl_c, only_bot=True),
        "inclusive_all": rows(incl_c),
        "self_by_function": rows(self_c),
        "self_by_package": rows(pkg_self)[:15],
    }


def format_profile(summary: dict[str, Any]) -> str:
    lines = [
        f"samples: {summary['total_samples']} total, {summary['idle_samples_excluded']} idle "
        f"(excluded), {summary['busy_samples']} busy; percentages are of busy samples",
        "",
    ]
    for title, key in (
        ("by thread", "by_thread"),
        ("by kind of work (library frames below the deepest bot/ frame)", "by_phase"),
        ("by deepest bot/ frame (bot code + the library code it calls)", "deepest_bot_function"),
        ("by deepest bot/ frame, file:line", "deepest_bot_line"),
        ("inclusive, bot/ functions (time in it and below)", "inclusive_bot"),
        ("inclusive, all functions", "inclusive_all"),
        ("self (leaf) time by function", "self_by_function"),
        ("self (leaf) time by package", "self_by_package"),
    ):
        lines.append(f"== {title}")
        for row in summary[key]:
            lines.append(f"{row['percent']:6.1f}%  {row['samples']:7d}  {row['name']}")
        lines.append("")
        if key == "deepest_bot_function":
            lines.append("== what the top bot/ functions spend their samples on")
            for fn, parts in summary["deepest_bot_function_phases"].items():
                lines.append(f"  {fn}")
                for row in parts:
                    lines.append(f"    {row['percent']:6.1f}%  {row['samples']:7d}  {row['name']}")
            lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the storm


@dataclass
class Sent:
    endpoint: str
    start: float
    end: float
    status: str
    alerts: int
    title: str | None = None
    attempt: int = 0  # 0 = first try, n = n-th retry
    index: int = -1  # the item's position in the send order


@dataclass
class StormResult:
    sent: list[Sent] = field(default_factory=list)
    first_send: float = 0.0
    last_done: float = 0.0


class StatusProbe:
    """Readers of the public status page during the storm: GET /status and /status.json
    in turn from one thread (about 20 a second), until stopped once the inbox is applied."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies_ms: list[float] = []
        self.statuses: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-probe", daemon=True)

    def start(self) -> StatusProbe:
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(timeout=10)
        lat = sorted(self.latencies_ms)
        return {
            "requests": len(lat),
            "statuses": dict(self.statuses),
            "p50_ms": round(percentile(lat, 50) or 0, 2) if lat else None,
            "p99_ms": round(percentile(lat, 99) or 0, 2) if lat else None,
            "max_ms": round(lat[-1], 2) if lat else None,
        }

    def _run(self) -> None:
        paths = ("/status", "/status.json")
        with httpx.Client(base_url=self.url, timeout=10) as client:
            n = 0
            while not self._stop.is_set():
                start = time.monotonic()
                try:
                    status = str(client.get(paths[n % 2]).status_code)
                except httpx.HTTPError as exc:
                    status = f"error:{type(exc).__name__}"
                self.latencies_ms.append((time.monotonic() - start) * 1000)
                self.statuses[status] = self.statuses.get(status, 0) + 1
                n += 1
                time.sleep(0.05)  # ~20 readers a second: the page, not a load test


async def run_storm(
    urls: list[str], items: list[Item], senders: int, request_timeout: float, max_retries: int
) -> StormResult:
    """Send every item; with several bots (replicas), item i goes to bot i mod R,
    as a Service spreads requests over its pods."""
    result = StormResult()
    cursor = iter(enumerate(items))
    connections = senders * len(urls)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(request_timeout)) as client:
        # Open the connections first so the storm does not time TCP set-up.
        await asyncio.gather(*(client.get(f"{u}/healthz") for u in urls for _ in range(senders)))

        async def sender() -> None:
            for index, item in cursor:  # shared iterator: each item is taken once
                for attempt in range(max_retries + 1):
                    start = time.monotonic()
                    if not result.first_send:
                        result.first_send = start
                    retry_after = 1.0
                    try:
                        response = await client.post(
                            f"{urls[index % len(urls)]}/webhooks/{item.endpoint}",
                            content=item.body,
                            headers=item.headers,
                        )
                        status = str(response.status_code)
                        with contextlib.suppress(ValueError):
                            retry_after = float(response.headers.get("retry-after", "1"))
                    except httpx.HTTPError as exc:
                        status = f"error:{type(exc).__name__}"
                    end = time.monotonic()
                    result.sent.append(
                        Sent(
                            item.endpoint,
                            start,
                            end,
                            status,
                            item.alerts,
                            item.title,
                            attempt,
                            index,
                        )
                    )
                    # As Alertmanager and PagerDuty do: retry 5xx, 429 and network errors.
                    if not (status.startswith(("5", "error:")) or status == "429"):
                        break
                    await asyncio.sleep(min(max(retry_after, 0.1), 10.0))

        await asyncio.gather(*(sender() for _ in range(senders)))
    result.last_done = max((s.end for s in result.sent), default=time.monotonic())
    return result


def wait_for_applied(db: Database, first_send: float, timeout: float) -> dict[str, Any]:
    """Until the bot's inbox holds nothing pending: every accepted body applied to incidents.

    The 202 means "stored durably"; applying (grouping into incidents, threads,
    escalation) follows on the bot's inbox worker. This times that second step.
    """
    deadline = time.monotonic() + timeout
    pending = -1
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            pending = int(db.query("SELECT count(*) FROM inbox WHERE state = 'pending'")[0][0])
        if pending == 0:
            break
        time.sleep(0.02)
    now = time.monotonic()
    failed = int(db.query("SELECT count(*) FROM inbox WHERE state = 'failed'")[0][0])
    return {
        "applied": pending == 0,
        "after_first_send_s": round(now - first_send, 3),
        "inbox_pending": pending,
        "inbox_failed": failed,
    }


def wait_for_drain(
    db: Database, slack: FakeSlack, titles: list[str], bot: Bot, timeout: float
) -> dict[str, Any]:
    """Until the outbox has nothing pending and every PagerDuty root is posted (bounded)."""
    start = time.monotonic()
    pending = -1
    while True:
        with contextlib.suppress(Exception):
            pending = int(db.query("SELECT count(*) FROM outbox WHERE state = 'pending'")[0][0])
        roots = _root_texts(slack)
        seen = sum(1 for t in titles if any(t in text for text in roots))
        done = pending == 0 and seen == len(titles)
        elapsed = time.monotonic() - start
        if done or elapsed >= timeout or (bot.proc is not None and bot.proc.poll() is not None):
            return {
                "drained": done,
                "waited_s": round(elapsed, 1),
                "outbox_pending_at_end": pending,
                "pagerduty_roots_seen": seen,
                "timeout_s": timeout,
            }
        time.sleep(0.5)


def _root_texts(slack: FakeSlack) -> list[str]:
    return [
        str(c.params.get("text") or "")
        for c in slack.calls("chat.postMessage", ok=True)
        if not c.params.get("thread_ts")
    ]


def _retried_later(sent: Sent, sends: list[Sent]) -> bool:
    return any(o.index == sent.index and o.attempt == sent.attempt + 1 for o in sends)


def paced_floor(arrivals: list[float], rate: float = 1.0, burst: int = 2) -> list[float]:
    """Latencies if each root were posted the moment the channel's pace allows.

    The floor for PagerDuty → thread root when those roots jump the whole outbox
    queue and only Slack's per-channel pacing (the outbox's bucket: 1/s, burst 2)
    holds them back.
    """
    out = []
    tokens, last = float(burst), None
    for t in sorted(arrivals):
        if last is not None:
            tokens = min(float(burst), tokens + (t - last) * rate)
        last = t
        if tokens >= 1:
            tokens -= 1
            out.append(0.0)
        else:
            wait = (1 - tokens) / rate
            out.append(wait)
            last, tokens = t + wait, 0.0
    return out


def _reply_kind(text: str) -> str:
    """A thread reply's kind: its first word ("Playbook" intro, "Playbook:" blocks, emoji)."""
    return (text.split(maxsplit=1) or [""])[0][:30]


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 1)


def analyse(
    storm: StormResult,
    plan: Plan,
    slack: FakeSlack,
    db: Database,
    peak_rss_kb: list[int],
    bot_cpu_s: float,
    bench_cpu_s: float,
) -> dict[str, Any]:
    by_ep: dict[str, list[Sent]] = {}
    for s in storm.sent:
        by_ep.setdefault(s.endpoint, []).append(s)
    endpoints: dict[str, Any] = {}
    for ep, sends in sorted(by_ep.items()):
        lat = [s.end - s.start for s in sends]
        endpoints[ep] = {
            "requests": len(sends),
            "status_counts": dict(Counter(s.status for s in sends)),
            "non_202": sum(1 for s in sends if s.status != "202"),
            "retries": sum(1 for s in sends if s.attempt > 0),
            "gave_up": sum(1 for s in sends if s.status != "202" and not _retried_later(s, sends)),
            "ack_ms": {
                "p50": _ms(percentile(lat, 50)),
                "p99": _ms(percentile(lat, 99)),
                "max": _ms(max(lat) if lat else None),
                "mean": _ms(sum(lat) / len(lat) if lat else None),
            },
            # Where the tail sits in the storm: (ms after the first send, ack ms).
            "slowest": [
                [_ms(s.start - storm.first_send), _ms(s.end - s.start)]
                for s in sorted(sends, key=lambda s: s.start - s.end)[:5]
            ],
        }
    am = by_ep.get("alertmanager", [])
    am_ok = [s for s in am if s.status == "202"]
    last_202 = max((s.end for s in am_ok), default=storm.first_send)
    wall = max(1e-9, last_202 - storm.first_send)
    accepted_alerts = sum(s.alerts for s in am_ok)

    # Slack, as the fake saw it.
    calls = slack.calls()
    by_method: dict[str, dict[str, int]] = {}
    for c in calls:
        by_method.setdefault(c.method, Counter())[c.outcome] += 1
    root_calls = [
        c for c in calls if c.method == "chat.postMessage" and not c.params.get("thread_ts")
    ]
    root_ok = [c for c in root_calls if c.ok]
    replies_ok = [
        c for c in calls if c.method == "chat.postMessage" and c.params.get("thread_ts") and c.ok
    ]

    # PagerDuty webhook sent -> root chat.postMessage (mentioning its title) received.
    pd_lat: dict[str, float | None] = {}
    for s in by_ep.get("pagerduty", []):
        assert s.title is not None
        hit = next((c for c in root_ok if s.title in str(c.params.get("text") or "")), None)
        pd_lat[s.title] = (hit.at - s.start) if hit is not None else None
    delivered = [v for v in pd_lat.values() if v is not None]
    floor = paced_floor([s.start for s in by_ep.get("pagerduty", []) if s.attempt == 0])
    missing_pd = sum(1 for v in pd_lat.values() if v is None)

    # The database, read directly.
    stored_by_source = dict(db.query("SELECT source, count(*) FROM alerts GROUP BY source"))
    stored_total = sum(int(v) for v in stored_by_source.values())
    incidents = int(db.query("SELECT count(*) FROM incidents")[0][0])
    outbox_states = dict(db.query("SELECT state, count(*) FROM outbox GROUP BY state"))
    stored_am = int(stored_by_source.get("alertmanager", 0))
    # Exactly once, whatever the number of replicas: one level step per incident
    # and level, one root per incident.
    level = "facts->>'level'" if db.kind == "postgresql" else "json_extract(facts, '$.level')"
    repeated_levels = db.query(
        f"SELECT incident_id, {level}, count(*) FROM timeline_events "
        "WHERE kind = 'level.reached' GROUP BY 1, 2 HAVING count(*) > 1"
    )
    level_steps = int(
        db.query("SELECT count(*) FROM timeline_events WHERE kind = 'level.reached'")[0][0]
    )
    root_titles = Counter(str(c.params.get("text") or "") for c in root_ok)

    return {
        "storm": {
            "first_send_to_last_202_s": round(wall, 3),
            "alerts_sent": plan.alerts,
            "alerts_acknowledged_202": accepted_alerts,
            "alerts_per_second": round(accepted_alerts / wall, 1),
            "alertmanager_batches": plan.batches,
            "bot_cpu_s_during_storm": round(bot_cpu_s, 2),
            "bot_cpu_ms_per_1000_alerts": round(1e6 * bot_cpu_s / max(1, accepted_alerts), 1),
            "bench_process_cpu_s_during_storm": round(bench_cpu_s, 2),
        },
        "endpoints": endpoints,
        "slack": {
            "calls_by_method": {m: dict(v) for m, v in sorted(by_method.items())},
            "calls_total": len(calls),
            "http_429": slack.ratelimited_count,
            "root_posts": len(root_ok),
            "root_post_attempts": len(root_calls),
            "thread_replies": len(replies_ok),
            "updates_ok": sum(1 for c in calls if c.method == "chat.update" and c.ok),
            "replies_by_kind": dict(
                Counter(_reply_kind(str(c.params.get("text") or "")) for c in replies_ok)
            ),
        },
        "pagerduty_to_thread_root_s": {
            "p50": None if not delivered else round(percentile(delivered, 50) or 0, 3),
            "p95": (
                None
                if missing_pd or not delivered
                else round(percentile(list(pd_lat.values()), 95) or 0, 3)  # type: ignore[arg-type]
            ),
            "max": None if missing_pd or not delivered else round(max(delivered), 3),
            "delivered": len(delivered),
            "missing": missing_pd,
            "p95_floor_if_roots_jumped_the_queue": (
                round(percentile(floor, 95) or 0, 3) if floor else None
            ),
            "each": {t: (None if v is None else round(v, 3)) for t, v in pd_lat.items()},
        },
        "database": {
            "alerts_total": stored_total,
            "alerts_by_source": {k: int(v) for k, v in stored_by_source.items()},
            "alertmanager_alerts_lost": plan.alerts - stored_am,
            "incidents": incidents,
            "incidents_expected": plan.groups + len(plan.pd_titles),
            "outbox_by_state": {k: int(v) for k, v in outbox_states.items()},
        },
        "exactly_once": {
            "level_steps": level_steps,
            "level_steps_repeated": len(repeated_levels),
            "root_posts_repeated": sum(n - 1 for n in root_titles.values() if n > 1),
        },
        "bot_peak_rss_mb": round(max(peak_rss_kb, default=0) / 1024, 1),
        "bot_peak_rss_mb_each": [round(kb / 1024, 1) for kb in peak_rss_kb],
    }


def judge(res: dict[str, Any]) -> list[dict[str, Any]]:
    t = TARGETS
    checks: list[dict[str, Any]] = []

    def add(name: str, value: Any, target: str, ok: bool, miss_by: str = "") -> None:
        checks.append(
            {
                "target": name,
                "value": value,
                "wanted": target,
                "result": "PASS" if ok else "MISS",
                "miss_by": "" if ok else miss_by,
            }
        )

    aps = res["storm"]["alerts_per_second"]
    add(
        "alerts/s ingested durably",
        aps,
        f">= {t['alerts_per_second_min']:.0f}",
        aps >= t["alerts_per_second_min"],
        f"{t['alerts_per_second_min'] / max(aps, 1e-9):.1f}x too slow",
    )
    for ep, data in res["endpoints"].items():
        p99 = data["ack_ms"]["p99"]
        add(
            f"ack p99 {ep} (ms)",
            p99,
            f"<= {t['ack_p99_ms_max']:.0f}",
            p99 is not None and p99 <= t["ack_p99_ms_max"],
            f"+{(p99 or 0) - t['ack_p99_ms_max']:.0f} ms ({(p99 or 0) / t['ack_p99_ms_max']:.1f}x)",
        )
        add(
            f"non-202 answers {ep}",
            data["non_202"],
            "0",
            data["non_202"] == 0,
            f"{data['non_202']} of {data['requests']}",
        )
    lost = res["database"]["alertmanager_alerts_lost"]
    add("alerts lost (stored vs sent)", lost, "0", lost <= t["lost_alerts_max"], f"{lost} lost")
    roots = res["slack"]["root_posts"]
    roots_max = res["database"]["incidents_expected"]
    add(
        "Slack root posts",
        roots,
        f"<= {roots_max} (groups + PagerDuty incidents)",
        roots <= roots_max,
        f"+{roots - roots_max}",
    )
    once = res["exactly_once"]
    repeats = once["level_steps_repeated"] + once["root_posts_repeated"]
    add(
        "escalation steps and roots repeated",
        repeats,
        "0",
        repeats == 0,
        f"{once['level_steps_repeated']} level steps, {once['root_posts_repeated']} roots",
    )
    applied = res.get("applied") or {}
    if applied.get("alerts_per_second") is not None:
        want = t["applied_alerts_per_second_min"][res["database_kind"]]
        rate = applied["alerts_per_second"]
        add(
            "alerts/s applied to incidents",
            rate,
            f">= {want:.0f}",
            rate >= want,
            f"{want / max(rate, 1e-9):.1f}x too slow",
        )
        late = applied.get("after_last_202_s")
        if late is not None:
            add(
                "all applied after the last 202 (s)",
                late,
                f"<= {t['applied_after_last_202_s_max']:.0f}",
                applied["applied"] and late <= t["applied_after_last_202_s_max"],
                f"+{late - t['applied_after_last_202_s_max']:.1f} s",
            )
    n429 = res["slack"]["http_429"]
    add("Slack 429s", n429, "0", n429 <= t["slack_429_max"], f"{n429} rate-limited calls")
    p95 = res["pagerduty_to_thread_root_s"]["p95"]
    missing = res["pagerduty_to_thread_root_s"]["missing"]
    add(
        "PagerDuty -> thread root p95 (s)",
        p95 if p95 is not None else f"{missing} never posted",
        f"<= {t['pagerduty_thread_p95_s_max']}",
        p95 is not None and p95 <= t["pagerduty_thread_p95_s_max"],
        (
            f"+{p95 - t['pagerduty_thread_p95_s_max']:.1f} s ({p95 / 2:.1f}x)"
            if p95 is not None
            else f"{missing} roots not posted within the drain timeout"
        ),
    )
    page = res.get("status_page_during_storm") or {}
    if page.get("p99_ms") is not None:
        ok_codes = set(page["statuses"]) == {"200"}
        add(
            "status page p99 during the storm (ms)",
            page["p99_ms"],
            f"<= {t['status_page_p99_ms_max']:.0f}, all 200",
            page["p99_ms"] <= t["status_page_p99_ms_max"] and ok_codes,
            f"{page['statuses']}",
        )
    rss = res["bot_peak_rss_mb"]
    add(
        "bot peak RSS (MB, the largest replica)",
        rss,
        f"<= {t['peak_rss_mb_max']:.0f}",
        rss <= t["peak_rss_mb_max"],
        f"+{rss - t['peak_rss_mb_max']:.0f} MB",
    )
    return checks


def print_report(report: dict[str, Any]) -> None:
    r = report["results"]
    cfg = report["config"]
    m = report["machine"]
    print()
    print(
        f"NEXUS storm — {cfg['database']} ({report['database_version']}), seed {cfg['seed']}: "
        f"{cfg['alerts']} alerts / {cfg['groups']} groups / batches of {cfg['batch']} / "
        f"{cfg['senders']} senders / {cfg['pagerduty']} PagerDuty webhooks"
    )
    print(
        f"machine: {m['nproc']} CPUs ({m.get('cpu', '?')}), {m.get('mem_total_gib')} GiB, "
        f"Python {m['python']} — NOTE: the load generator and FakeSlack share these "
        "CPUs with the bot"
    )
    hl = report["host_load"]["before_storm"]
    print(
        f"host load before the storm: loadavg {hl['loadavg_1_5_15']}, "
        f"{hl['other_bot_processes']} other bot processes running"
    )
    s = r["storm"]
    print(
        f"storm: {s['alerts_acknowledged_202']} alerts acknowledged in "
        f"{s['first_send_to_last_202_s']} s = {s['alerts_per_second']} alerts/s; "
        f"bot CPU {s['bot_cpu_s_during_storm']} s, bench CPU "
        f"{s['bench_process_cpu_s_during_storm']} s"
    )
    ap = r["applied"]
    print(
        f"applied to incidents (inbox empty) {ap['after_first_send_s']} s after the first send"
        f" = {ap['alerts_per_second']} alerts/s; inbox failed rows {ap['inbox_failed']}"
    )
    for ep, d in r["endpoints"].items():
        a = d["ack_ms"]
        print(
            f"  {ep:<13} {d['requests']:4d} requests  statuses {d['status_counts']}  "
            f"ack p50 {a['p50']} ms  p99 {a['p99']} ms  max {a['max']} ms"
        )
        print(f"  {'':<13} slowest [ms after first send, ack ms]: {d['slowest']}")
    sl = r["slack"]
    print(
        f"slack: {sl['calls_total']} calls {sl['calls_by_method']}; 429s {sl['http_429']}; "
        f"root posts {sl['root_posts']} (attempts {sl['root_post_attempts']}), "
        f"replies {sl['thread_replies']}, updates {sl['updates_ok']}"
    )
    pd = r["pagerduty_to_thread_root_s"]
    print(
        f"pagerduty -> thread root: p50 {pd['p50']} s  p95 {pd['p95']} s  max {pd['max']} s "
        f"({pd['delivered']} delivered, {pd['missing']} missing); pacing floor p95 "
        f"{pd['p95_floor_if_roots_jumped_the_queue']} s"
    )
    db = r["database"]
    print(
        f"database: alerts {db['alerts_total']} {db['alerts_by_source']}, incidents "
        f"{db['incidents']}, outbox {db['outbox_by_state']}"
    )
    dr = report["drain"]
    print(
        f"drain: {'drained' if dr['drained'] else 'NOT drained'} after {dr['waited_s']} s "
        f"(timeout {dr['timeout_s']} s, pending at end {dr['outbox_pending_at_end']})"
    )
    page = r.get("status_page_during_storm") or {}
    if page:
        print(
            f"status page during the storm: {page['requests']} GETs {page['statuses']}  "
            f"p50 {page['p50_ms']} ms  p99 {page['p99_ms']} ms  max {page['max_ms']} ms"
        )
    once = r["exactly_once"]
    print(
        f"exactly once: {once['level_steps']} level steps, {once['level_steps_repeated']} "
        f"repeated; {once['root_posts_repeated']} roots posted twice; incidents "
        f"{r['database']['incidents']} of {r['database']['incidents_expected']} expected"
    )
    print(f"bot peak RSS (VmHWM): {r['bot_peak_rss_mb_each']} MB per replica")
    print()
    for c in report["targets"]:
        extra = f"  (missed by {c['miss_by']})" if c["miss_by"] else ""
        print(f"  {c['result']}  {c['target']:<36} {c['value']!s:>14}  want {c['wanted']}{extra}")
    print()


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--alerts", type=int, default=5000)
    p.add_argument("--groups", type=int, default=20)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--senders", type=int, default=8)
    p.add_argument("--pagerduty", type=int, default=10)
    p.add_argument("--out", default=None, help="JSON report (default: print only)")
    p.add_argument(
        "--pg-admin",
        default=os.environ.get("STORM_PG_ADMIN", DEFAULT_PG_ADMIN),
        help="PostgreSQL maintenance database URL; a fresh database is created next to it",
    )
    p.add_argument(
        "--drain-timeout", type=float, default=240.0, help="max seconds to wait for the outbox"
    )
    p.add_argument("--request-timeout", type=float, default=60.0)
    p.add_argument(
        "--max-retries",
        type=int,
        default=5,
        help="re-send a request answered 5xx/429 (after Retry-After, at most 10 s) this often",
    )
    p.add_argument(
        "--summarize",
        nargs="+",
        metavar="RAW",
        help="only summarise py-spy raw profiles (several are added up) and exit",
    )
    p.add_argument(
        "--profile",
        default=None,
        metavar="PREFIX",
        help="attach py-spy during the storm: PREFIX.svg, PREFIX.txt (raw), PREFIX-top.txt",
    )
    p.add_argument("--profile-rate", type=int, default=200)
    p.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="bot processes on one PostgreSQL database; requests go to them round-robin",
    )
    args = p.parse_args(argv)
    if args.replicas < 1:
        p.error("--replicas must be >= 1")
    if args.replicas > 1 and args.database != "postgresql":
        p.error("--replicas > 1 needs --database postgresql (replicas share one database)")
    for name in ("alerts", "groups", "batch", "senders"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.pagerduty < 0:
        p.error("--pagerduty must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.summarize:
        print(format_profile(summarize_profile(args.summarize)))
        return 0
    plan = build_plan(args.seed, args.alerts, args.groups, args.batch, args.pagerduty)
    db = Database(args.database, args.seed, args.pg_admin)
    slack = FakeSlack()  # realistic pacing: 1 msg/s per (method, channel), burst 3, 429s
    bots: list[Bot] = []
    profiler: Profiler | None = None
    try:
        db.create()
        slack.start()
        assert slack.token is not None
        for index in range(args.replicas):
            bots.append(Bot(db.url, slack.url, slack.token, db.tmp, index))
            bots[-1].start()
        bot = bots[0]
        print(
            f"bot pids {[b.pid for b in bots]} on {[b.url for b in bots]}, {db.version}, "
            f"FakeSlack on {slack.url}; {len(plan.items)} requests queued",
            flush=True,
        )
        if args.profile:
            profiler = Profiler(args.profile, bot.pid, args.profile_rate)
        load_before = host_load(bot.pid)
        cpu0, bench0 = sum(proc_cpu_seconds(b.pid) for b in bots), time.process_time()
        probe = StatusProbe(bot.url).start()
        storm = asyncio.run(
            run_storm(
                [b.url for b in bots],
                plan.items,
                args.senders,
                args.request_timeout,
                args.max_retries,
            )
        )
        cpu1, bench1 = sum(proc_cpu_seconds(b.pid) for b in bots), time.process_time()
        if profiler is not None:
            profiler.stop()
        print(
            f"storm sent in {storm.last_done - storm.first_send:.2f} s; waiting for the outbox "
            f"(at most {args.drain_timeout:.0f} s)…",
            flush=True,
        )
        applied = wait_for_applied(db, storm.first_send, args.drain_timeout)
        status_page = probe.stop()
        drain = wait_for_drain(db, slack, plan.pd_titles, bot, args.drain_timeout)
        peaks = [proc_status(b.pid).get("VmHWM", 0) for b in bots]
        results = analyse(storm, plan, slack, db, peaks, cpu1 - cpu0, bench1 - bench0)
        results["database_kind"] = args.database
        results["status_page_during_storm"] = status_page
        last_202 = storm.first_send + results["storm"]["first_send_to_last_202_s"]
        results["applied"] = applied | {
            "alerts_per_second": round(args.alerts / max(1e-9, applied["after_first_send_s"]), 1),
            "after_last_202_s": round(
                storm.first_send + applied["after_first_send_s"] - last_202, 3
            ),
        }
        report: dict[str, Any] = {
            "benchmark": "bench/storm.py",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": {
                k: getattr(args, k)
                for k in (
                    "seed",
                    "database",
                    "alerts",
                    "groups",
                    "batch",
                    "senders",
                    "pagerduty",
                    "replicas",
                )
            }
            | {
                "fake_slack": {
                    "post_rate_per_s": slack.post_rate,
                    "post_burst": slack.post_burst,
                    "update_rate_per_s": slack.update_rate,
                    "update_burst": slack.update_burst,
                },
                "bot_log_level": os.environ.get("LOG_LEVEL", "info"),
                "profiled": bool(args.profile),
            },
            "database_version": db.version,
            "machine": machine_info(),
            "code": git_info(),
            "note": (
                "load generator (httpx, 1 process) and FakeSlack run on the same CPUs as the "
                "bot; latencies are client-side, from request start to response"
            ),
            "host_load": {"before_storm": load_before, "after_drain": host_load(bot.pid)},
            "drain": drain,
            "results": results,
        }
        report["targets"] = judge(results)
        if profiler is not None:
            summary = summarize_profile([args.profile + ".txt"])
            Path(args.profile + "-top.txt").write_text(format_profile(summary))
            report["profile"] = {
                "svg": args.profile + ".svg",
                "raw": args.profile + ".txt",
                "top": args.profile + "-top.txt",
                "rate_hz": args.profile_rate,
                "summary": {k: v[:15] if isinstance(v, list) else v for k, v in summary.items()},
            }
        codes = [b.stop() for b in bots]
        report["bot_exit_code"] = next((c for c in codes if c not in (0, None)), codes[0])
        for b, code in zip(bots, codes, strict=True):
            if code not in (0, None):
                report.setdefault("bot_log_tail", []).append(b.log_tail())
        print_report(report)
        if profiler is not None:
            print(Path(args.profile + "-top.txt").read_text()[:4000])
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
            print(f"wrote {args.out}")
        return 0
    finally:
        if profiler is not None:
            profiler.stop()
        for b in bots:
            b.stop()
        slack.stop()
        db.drop()


if __name__ == "__main__":
    sys.exit(main())
