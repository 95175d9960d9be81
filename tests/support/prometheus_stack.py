"""A real Prometheus and Alertmanager for end-to-end tests, plus a metrics endpoint to scrape.

::

    with MetricsServer() as metrics, PrometheusStack(
        tmp_path, webhook_url=f"{bot.url}/webhooks/alertmanager", token=ALERTMANAGER_TOKEN,
        targets=[metrics.address],
    ) as stack:
        metrics.set("frenly_ai_unvalidated_edits", 1)  # Prometheus -> Alertmanager -> bot

`MetricsServer` serves the Prometheus text format from values the test sets.
`Alertmanager` and `Prometheus` run the Debian binaries as subprocesses on free
127.0.0.1 ports with their data in a temporary directory, wait for ``/-/ready``
and are stopped with SIGTERM (SIGKILL if that hangs). The intervals are seconds
instead of minutes so an alert goes from metric to webhook in about three seconds.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml

from tests.fakes.background import ThreadedHTTPServer
from tests.support.bot_process import REPO_ROOT, free_port

RULES_FILE = REPO_ROOT / "config" / "prometheus" / "nexus-alerts.rules.yaml"
# Upstream and Debian name the Alertmanager binary differently.
PROMETHEUS_NAMES = ("prometheus",)
ALERTMANAGER_NAMES = ("alertmanager", "prometheus-alertmanager")
AMTOOL_NAMES = ("amtool",)
SCRAPE_JOB = "nexus-test"


def find_binary(names: Iterable[str]) -> str | None:
    """The first of ``names`` on PATH, or None."""
    for name in names:
        path = shutil.which(name)
        if path is not None:
            return path
    return None


def _client() -> httpx.Client:
    # trust_env=False: a proxy from the environment must not see 127.0.0.1 traffic.
    return httpx.Client(timeout=5, trust_env=False)


# -- the metrics endpoint ------------------------------------------------------


def _labels_text(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    escaped = (
        (k, v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n"))
        for k, v in sorted(labels.items())
    )
    return "{" + ",".join(f'{k}="{v}"' for k, v in escaped) + "}"


class MetricsServer(ThreadedHTTPServer):
    """``GET /metrics`` on 127.0.0.1 with gauges the test sets; a thread serves it."""

    thread_name = "metrics-server"

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._values: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        self.scrapes = 0

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._values.setdefault(name, {})[tuple(sorted(labels.items()))] = float(value)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name in sorted(self._values):
                lines.append(f"# TYPE {name} gauge")
                for labels, value in sorted(self._values[name].items()):
                    lines.append(f"{name}{_labels_text(dict(labels))} {value:g}")
        return "\n".join(lines) + "\n"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = owner.render().encode()
                with owner._lock:
                    owner.scrapes += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per scrape each second is noise

        return Handler

    @property
    def address(self) -> str:
        """``host:port``, as a Prometheus static target."""
        host, port = self._address
        return f"{host}:{port}"


# -- the daemons ------------------------------------------------------------------


class _Daemon:
    """A subprocess with an HTTP ``/-/ready`` endpoint; output goes to a log file."""

    name = "daemon"

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        self.log_path = workdir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def args(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 30) -> _Daemon:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [self.binary, *self.args()],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        with _client() as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"{self.name} exited with {self.proc.returncode}:\n{self.log()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                        return self
                time.sleep(0.1)
        self.stop()
        raise AssertionError(f"{self.name} not ready within {timeout}s:\n{self.log()}")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def log(self, tail: int = 20000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return ""

    def get(self, path: str, **params: str) -> Any:
        with _client() as client:
            answer = client.get(f"{self.url}{path}", params=params)
        answer.raise_for_status()
        return answer.json()


class Alertmanager(_Daemon):
    """Alertmanager with one route: every alert to a webhook, with a bearer token."""

    name = "alertmanager"

    def __init__(self, binary: str, workdir: Path, *, webhook_url: str, token: str) -> None:
        super().__init__(binary, workdir)
        self.config_path = workdir / "alertmanager.yml"
        self.token_path = workdir / "alertmanager-token"
        self.token_path.write_text(token)
        self.token_path.chmod(0o600)
        self.config: dict[str, Any] = {
            "global": {"resolve_timeout": "5s"},
            "route": {
                "receiver": "nexus-bot",
                "group_by": ["alertname", "service"],
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [
                {
                    "name": "nexus-bot",
                    "webhook_configs": [
                        {
                            "url": webhook_url,
                            "send_resolved": True,
                            "http_config": {
                                "authorization": {
                                    "type": "Bearer",
                                    "credentials_file": str(self.token_path),
                                }
                            },
                        }
                    ],
                }
            ],
        }
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))

    def args(self) -> list[str]:
        return [
            f"--config.file={self.config_path}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address={self.address}",
            f"--web.external-url={self.url}",
            "--cluster.listen-address=",  # no HA gossip: no second port, no settle wait
            "--log.level=debug",  # logs every notification attempt, for failure output
        ]

    def alerts(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/api/v2/alerts")
        return result


class Prometheus(_Daemon):
    """Prometheus scraping ``targets`` every second, evaluating ``rule_files``, alerting."""

    name = "prometheus"

    def __init__(
        self,
        binary: str,
        workdir: Path,
        *,
        targets: Sequence[str],
        alertmanager: str,
        rule_files: Sequence[Path] = (RULES_FILE,),
    ) -> None:
        super().__init__(binary, workdir)
        self.config_path = workdir / "prometheus.yml"
        self.config: dict[str, Any] = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "alerting": {
                "alertmanagers": [
                    {"api_version": "v2", "static_configs": [{"targets": [alertmanager]}]}
                ]
            },
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [
                {"job_name": SCRAPE_JOB, "static_configs": [{"targets": list(targets)}]}
            ],
        }
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))

    def args(self) -> list[str]:
        return [
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={self.address}",
            f"--web.external-url={self.url}",
        ]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        answer = self.get("/api/v1/query", query=expr)
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts, as Prometheus sees them."""
        result: list[dict[str, Any]] = self.get("/api/v1/alerts")["data"]["alerts"]
        return result

    def rule_groups(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/api/v1/rules")["data"]["groups"]
        return result


class PrometheusStack:
    """Alertmanager (webhook to ``webhook_url``), then Prometheus alerting to it."""

    def __init__(
        self,
        workdir: Path,
        *,
        webhook_url: str,
        token: str,
        targets: Sequence[str],
        rule_files: Sequence[Path] = (RULES_FILE,),
        prometheus_binary: str | None = None,
        alertmanager_binary: str | None = None,
    ) -> None:
        prometheus_binary = prometheus_binary or find_binary(PROMETHEUS_NAMES)
        alertmanager_binary = alertmanager_binary or find_binary(ALERTMANAGER_NAMES)
        if prometheus_binary is None or alertmanager_binary is None:
            raise RuntimeError("prometheus and alertmanager binaries are required")
        self.alertmanager = Alertmanager(
            alertmanager_binary, workdir / "alertmanager", webhook_url=webhook_url, token=token
        )
        self.prometheus = Prometheus(
            prometheus_binary,
            workdir / "prometheus",
            targets=targets,
            alertmanager=self.alertmanager.address,
            rule_files=rule_files,
        )

    def start(self) -> PrometheusStack:
        self.alertmanager.start()
        try:
            self.prometheus.start()
        except BaseException:
            self.alertmanager.stop()
            raise
        return self

    def stop(self) -> None:
        try:
            self.prometheus.stop()
        finally:
            self.alertmanager.stop()

    def logs(self) -> str:
        return (
            f"--- prometheus ---\n{self.prometheus.log()}\n"
            f"--- alertmanager ---\n{self.alertmanager.log()}"
        )

    def __enter__(self) -> PrometheusStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
