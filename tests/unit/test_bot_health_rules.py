"""The bot's own health alerts, its Grafana dashboard and the monitoring component.

promtool accepts the rules and their unit tests pass; every alert and dashboard
query uses only metrics the bot exports; the PrometheusRule in the kustomize
component carries exactly the rules file; the component renders and its
ServiceMonitor selects the Service of deploy/kubernetes/base.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from tests.support.kustomize import kustomize
from tests.unit.test_prometheus_rules import CHECK_FLAGS, assert_promtool_test_fails, run_promtool

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO_ROOT / "config" / "prometheus"
RULES_FILE = PROMETHEUS_DIR / "nexus-bot-health.rules.yaml"
PROMTOOL_TEST = PROMETHEUS_DIR / "tests" / "bot-health.test.yaml"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "nexus-bot.json"
KUBERNETES_DIR = REPO_ROOT / "deploy" / "kubernetes"
COMPONENT_DIR = KUBERNETES_DIR / "components" / "monitoring"
BASE_SERVICE = KUBERNETES_DIR / "base" / "service.yaml"

# Used by the rules and the dashboard without being in the bot's registry:
# `up` (Prometheus's own, per target).
ALLOWED_EXTRA_METRICS = {"up"}
SEVERITIES = {"critical", "warning", "info"}

# The alert list is the contract with Alertmanager routes and runbooks: adding or
# renaming one is a deliberate change here, in the README and in the tests.
EXPECTED_ALERTS = {
    "NexusBotDown": {"critical"},
    "NexusBotReplicaDown": {"warning"},
    "NexusBotTargetMissing": {"critical"},
    "NexusBotDatabaseUnreachable": {"critical"},
    "NexusBotInboxFailedRows": {"warning"},
    "NexusBotInboxLag": {"warning"},
    "NexusBotInboxBacklog": {"warning"},
    "NexusBotIngestRefused": {"warning"},
    "NexusBotSlackOutboxFailed": {"warning"},
    "NexusBotSlackOutboxStuck": {"critical"},
    "NexusBotSlackOutboxSlow": {"warning"},
    "NexusBotDeliveryFailed": {"warning"},
    "NexusBotDeliveryStuck": {"critical", "warning"},
    "NexusBotDeliverySlow": {"warning"},
    "NexusBotEscalationSweepStalled": {"critical"},
    "NexusBotSweepStalled": {"warning"},
    "NexusBotHTTPErrors": {"warning"},
    "NexusBotHTTPOverloaded": {"warning"},
}


def load_yaml(path: Path) -> Any:
    with path.open() as fh:
        return yaml.safe_load(fh)


def alert_rules() -> list[dict[str, Any]]:
    data = load_yaml(RULES_FILE)
    return [rule for group in data["groups"] for rule in group["rules"] if "alert" in rule]


# --- metric names -------------------------------------------------------------


def _import_metric_modules() -> None:
    """Import every bot module that registers metrics, so REGISTRY holds them all."""
    for path in sorted((REPO_ROOT / "bot").rglob("*.py")):
        if "registry=REGISTRY" in path.read_text():
            module = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
            importlib.import_module(module)


def _exposed_names(registry: CollectorRegistry) -> set[str]:
    """Sample names on /metrics, including those of labelled metrics not yet used."""
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_count", "_sum"),
        "summary": ("", "_count", "_sum"),
    }
    names = set()
    for family in registry.collect():
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


@pytest.fixture(scope="module")
def exported_metrics() -> set[str]:
    from bot.metrics import REGISTRY

    _import_metric_modules()
    return _exposed_names(REGISTRY)


_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (a tokenizer, not a parser)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values, e.g. "5.."
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges, $__rate_interval
    # grouping label lists, so `sum by (le) (` reads as the call it is
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])([a-zA-Z_:][\w:]*)(\s*\()?", text):
        name, call = match.groups()
        if call is None and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def test_metric_names_finds_selectors_not_functions_labels_or_keywords() -> None:
    expr = """
      histogram_quantile(0.95, sum by (namespace, le) (rate(a_bucket{le="5.."}[$__rate_interval])))
      > 30 and on (job) time() - max without (instance) (b offset 15m) unless c_total or d
    """
    assert metric_names(expr) == {"a_bucket", "b", "c_total", "d"}


def test_every_rule_uses_only_exported_metrics(exported_metrics: set[str]) -> None:
    allowed = exported_metrics | ALLOWED_EXTRA_METRICS
    rules = alert_rules()
    assert rules
    for rule in rules:
        used = metric_names(rule["expr"])
        assert used, rule["alert"]
        assert used <= allowed, (rule["alert"], sorted(used - allowed))


def test_exported_metrics_include_those_of_other_modules(exported_metrics: set[str]) -> None:
    # Guards _import_metric_modules: bot.metrics alone lacks the outbox and deliveries.
    assert {
        "nexus_inbox_lag_seconds_bucket",
        "nexus_outbox_pending",
        "nexus_delivery_failed_total",
        "nexus_incident_time_to_resolve_seconds_count",
        "process_resident_memory_bytes",
    } <= exported_metrics


# --- promtool ---------------------------------------------------------------


@pytest.mark.promtool
def test_promtool_check_rules_accepts_the_rules(promtool: str) -> None:
    result = run_promtool(promtool, "check", "rules", *CHECK_FLAGS, RULES_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.promtool
def test_promtool_unit_tests_pass(promtool: str) -> None:
    result = run_promtool(promtool, "test", "rules", PROMTOOL_TEST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout


@pytest.mark.promtool
def test_promtool_unit_tests_fail_on_a_wrong_expectation(promtool: str, tmp_path: Path) -> None:
    # The same tests with PagerDuty's stuck delivery expected as a mere warning
    # must fail: exp_labels are really compared.
    text = PROMTOOL_TEST.read_text()
    start = text.index("name: NexusBotDeliveryStuck is critical for PagerDuty")
    at = text.index("severity: critical", start)
    text = text[:at] + "severity: warning" + text[at + len("severity: critical") :]
    assert_promtool_test_fails(promtool, tmp_path, text, RULES_FILE, "NexusBotDeliveryStuck")


# --- the rules as data ------------------------------------------------------


def test_one_group_named_nexus_bot_health() -> None:
    assert [group["name"] for group in load_yaml(RULES_FILE)["groups"]] == ["nexus-bot-health"]


def test_every_alert_has_a_severity_summary_description_and_service() -> None:
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        # The Alertmanager route that sends these around the bot matches on it.
        assert rule["labels"]["service"] == "nexus-bot", name
        assert rule["annotations"]["summary"].strip(), name
        assert rule["annotations"]["description"].strip(), name


def test_alerts_and_severities_are_the_expected_ones() -> None:
    seen: dict[str, set[str]] = {}
    for rule in alert_rules():
        seen.setdefault(rule["alert"], set()).add(rule["labels"]["severity"])
    assert seen == EXPECTED_ALERTS


def test_gauge_and_rate_alerts_wait_before_firing() -> None:
    # Events already confirmed (failed rows, given-up deliveries) fire at once;
    # everything judged on a level or a rate needs a `for` to not flap.
    immediate = {"NexusBotInboxFailedRows", "NexusBotSlackOutboxFailed", "NexusBotDeliveryFailed"}
    for rule in alert_rules():
        if rule["alert"] not in immediate:
            assert rule.get("for"), rule["alert"]


def test_the_sweep_gauge_covers_every_sweep_the_bot_schedules() -> None:
    """The sweep alerts name sweeps by the scheduler's job names: the gauge has a
    series per scheduled sweep from the start (set at registration)."""
    from bot import metrics
    from bot.scheduler import build_scheduler

    build_scheduler({"escalation-sweep": (lambda: None, 5), "drill-sweep": (lambda: None, 2)})
    sampled = {
        sample.labels["sweep"]
        for family in metrics.SWEEP_LAST_SUCCESS.collect()
        for sample in family.samples
    }
    assert {"escalation-sweep", "drill-sweep"} <= sampled
    app_source = (REPO_ROOT / "bot" / "app.py").read_text(encoding="utf-8")
    assert '"escalation-sweep"' in app_source  # the name the critical alert waits on


def test_sweep_alerts_use_the_sweep_label_of_the_gauge() -> None:
    # A scraped label named `job` would clash with the target's `job` label and be
    # renamed `exported_job`, so the gauge is labelled `sweep`.
    sweeps = [r for r in alert_rules() if "nexus_job_last_success_timestamp_seconds" in r["expr"]]
    assert {r["alert"] for r in sweeps} == {
        "NexusBotEscalationSweepStalled",
        "NexusBotSweepStalled",
    }
    for rule in sweeps:
        assert (
            'sweep="escalation-sweep"' in rule["expr"]
            or 'sweep!="escalation-sweep"' in rule["expr"]
        )
        assert "job=" not in rule["expr"]


def test_every_alert_has_promtool_tests_for_firing_and_not_firing() -> None:
    suite = load_yaml(PROMTOOL_TEST)
    assert suite["rule_files"] == ["../nexus-bot-health.rules.yaml"]
    fires: set[str] = set()
    silent: set[str] = set()
    for test in suite["tests"]:
        for case in test.get("alert_rule_test", []):
            (fires if case["exp_alerts"] else silent).add(case["alertname"])
    assert fires == set(EXPECTED_ALERTS)
    assert silent == set(EXPECTED_ALERTS)


# --- Grafana dashboard ------------------------------------------------------


def dashboard_panels() -> Iterator[dict[str, Any]]:
    def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))

    yield from walk(json.loads(DASHBOARD.read_text())["panels"])


def test_dashboard_is_a_current_grafana_dashboard_with_a_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert "__inputs" not in dashboard  # no import-time datasource mapping needed


def test_dashboard_panel_ids_are_unique() -> None:
    ids = [panel["id"] for panel in dashboard_panels()]
    assert len(ids) == len(set(ids))


def test_every_dashboard_query_uses_the_datasource_variable() -> None:
    uids = re.findall(r'"uid":\s*"([^"]*)"', DASHBOARD.read_text())
    # Only the dashboard's own uid is a literal; every datasource is the variable.
    assert [uid for uid in uids if uid != "${datasource}"] == [
        json.loads(DASHBOARD.read_text())["uid"]
    ]
    for panel in dashboard_panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]


def test_every_dashboard_query_uses_only_exported_metrics(exported_metrics: set[str]) -> None:
    allowed = exported_metrics | ALLOWED_EXTRA_METRICS
    queries = [(p["title"], t["expr"]) for p in dashboard_panels() for t in p.get("targets", [])]
    queries += [
        (v["name"], v["query"]["query"])
        for v in json.loads(DASHBOARD.read_text())["templating"]["list"]
        if v["type"] == "query"
    ]
    assert queries
    for title, expr in queries:
        expr = re.sub(r"label_values\((.*),\s*\w+\)", r"\1", expr)
        used = metric_names(expr)
        assert used, title
        assert used <= allowed, (title, sorted(used - allowed))


def test_dashboard_shows_every_metric_of_the_bot(exported_metrics: set[str]) -> None:
    shown = {
        name
        for p in dashboard_panels()
        for t in p.get("targets", [])
        for name in metric_names(t["expr"])
    }
    bases = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in shown}
    bot_metrics = {
        re.sub(r"_(total|bucket|count|sum)$", "", m)
        for m in exported_metrics
        if m.startswith("nexus_")
    }
    assert bot_metrics <= bases, sorted(bot_metrics - bases)


# --- kustomize component ----------------------------------------------------


def component_resources() -> dict[str, dict[str, Any]]:
    kustomization = load_yaml(COMPONENT_DIR / "kustomization.yaml")
    docs = [load_yaml(COMPONENT_DIR / name) for name in kustomization["resources"]]
    return {doc["kind"]: doc for doc in docs}


def test_component_is_a_kustomize_component() -> None:
    kustomization = load_yaml(COMPONENT_DIR / "kustomization.yaml")
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1alpha1"
    assert kustomization["kind"] == "Component"
    assert set(component_resources()) == {"ServiceMonitor", "PrometheusRule"}


def test_prometheus_rule_carries_exactly_the_rules_file() -> None:
    rule = component_resources()["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == load_yaml(RULES_FILE)["groups"], (
        "deploy/kubernetes/components/monitoring/prometheusrule.yaml differs from "
        "config/prometheus/nexus-bot-health.rules.yaml: regenerate it (command in its header)"
    )
    assert rule["metadata"]["labels"]["release"]  # kube-prometheus-stack's ruleSelector


def test_service_monitor_scrapes_the_base_service() -> None:
    monitor = component_resources()["ServiceMonitor"]
    service = load_yaml(BASE_SERVICE)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"]  # kube-prometheus-stack's selector
    assert (
        monitor["metadata"]["namespace"]
        == load_yaml(KUBERNETES_DIR / "base" / "kustomization.yaml")["namespace"]
    )
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    # job = the Service's app.kubernetes.io/name: what up{job="nexus-bot"} expects.
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "nexus-bot"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert (endpoint["path"], endpoint["interval"]) == ("/metrics", "30s")


def write_kustomization(directory: Path, resources: list[str]) -> None:
    # kustomize refuses absolute paths to components: a relative one, from the tmp dir.
    component = os.path.relpath(COMPONENT_DIR, directory)
    (directory / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": resources,
                "components": [component],
            }
        )
    )


def test_component_renders_next_to_a_service(kubectl: str, tmp_path: Path) -> None:
    (tmp_path / "service.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": "nexus-bot",
                    "labels": {"app.kubernetes.io/name": "nexus-bot"},
                },
                "spec": {"ports": [{"name": "http", "port": 80}]},
            }
        )
    )
    write_kustomization(tmp_path, ["service.yaml"])

    docs = kustomize(kubectl, tmp_path)

    kinds = {doc["kind"]: doc for doc in docs}
    assert set(kinds) == {"Service", "ServiceMonitor", "PrometheusRule"}
    assert kinds["PrometheusRule"]["spec"]["groups"] == load_yaml(RULES_FILE)["groups"]


def test_component_renders_with_the_base(kubectl: str, tmp_path: Path) -> None:
    write_kustomization(tmp_path, [os.path.relpath(KUBERNETES_DIR / "base", tmp_path)])

    docs = kustomize(kubectl, tmp_path)

    (service,) = [d for d in docs if d["kind"] == "Service"]
    (monitor,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
