"""Settings: environment first, then the YAML file (NEXUS_CONFIG or config/nexus.yaml),
then defaults.

Every wrong value gives one line naming the key, where it came from (file:line or
the environment variable) and what is expected, and never shows a secret.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from bot.durations import format_duration, parse_duration
from bot.settings import (
    DEFAULT_CONFIG_PATH,
    Settings,
    SettingsError,
    disabled_features,
    load_settings,
    resolve_paths,
    resolve_sqlite_path,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "hunter2-Sup3rSecret"
WriteConfig = Callable[..., Path]


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting leaks in from the environment, and config/nexus.yaml of the repo is not read."""
    for name in list(os.environ):
        if name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> WriteConfig:
    """Write a YAML config file and point NEXUS_CONFIG at it; returns its path."""

    def write(text: str, name: str = "nexus.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        monkeypatch.setenv("NEXUS_CONFIG", str(path))
        return path

    return write


def problems(**overrides: object) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load_settings(**overrides)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


# --- defaults and sources -----------------------------------------------------


def test_defaults_without_config_file() -> None:
    settings = load_settings()
    assert settings.database_url == "sqlite:///nexus-bot.db"
    assert settings.nexus_config == DEFAULT_CONFIG_PATH == Path("config/nexus.yaml")
    assert settings.nexus_playbooks == Path("playbooks")
    assert (settings.host, settings.port, settings.log_level) == ("0.0.0.0", 3000, "info")
    assert settings.slack_bot_token is None
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.pagerduty_api_url == "https://api.pagerduty.com"
    assert settings.pagerduty_events_url == "https://events.pagerduty.com"
    assert settings.pagerduty_webhook_secrets == []
    assert settings.github_api_url == "https://api.github.com"
    assert settings.github_git_url == "https://github.com"
    assert settings.smtp_url is None
    assert settings.smtp_from == "nexus-bot@localhost"
    assert settings.nexus_approvers == []
    assert settings.nexus_escalation_delays is None
    assert settings.severity_thresholds.error_rate_percent == 5
    assert settings.severity_thresholds.performance_degradation_percent == 20
    assert settings.severity_thresholds.critical_alertnames == ["ServiceDown", "SSOTSyncFailure"]
    assert settings.allowed_targets.repositories == []
    assert settings.allowed_targets.deployments == []
    assert settings.allowed_targets.configmaps == []
    assert [lvl.role for lvl in settings.escalation.levels] == [
        "Team lead",
        "Engineering manager",
        "CTO",
        "Executive",
    ]
    assert settings.escalation_delays("critical") == [
        timedelta(minutes=5),
        timedelta(minutes=15),
        timedelta(minutes=60),
    ]
    assert settings.escalation_delays("warning") == [
        timedelta(minutes=15),
        timedelta(minutes=45),
        timedelta(minutes=120),
    ]
    assert settings.escalation_delays("info") is None
    assert settings.secret_values() == []


def test_the_shipped_config_file_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXUS_CONFIG", str(REPO_ROOT / "config" / "nexus.yaml"))
    settings = load_settings()
    assert settings.allowed_targets.repositories == ["nexus/ssot"]
    assert settings.allowed_targets.deployments == ["ai/frenly-ai"]
    assert settings.allowed_targets.configmaps == ["nexus/ssot-config"]
    assert settings.severity_thresholds.critical_alertnames == ["ServiceDown", "SSOTSyncFailure"]
    assert settings.escalation_delays("critical") == [
        timedelta(minutes=5),
        timedelta(minutes=15),
        timedelta(minutes=60),
    ]


def test_config_nexus_yaml_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "nexus.yaml").write_text("port: 4100\n", encoding="utf-8")
    assert load_settings().port == 4100


def test_yaml_values(config: WriteConfig) -> None:
    config(
        """
database_url: postgresql+psycopg://nexus@db:5432/nexus
PORT: 4000                      # keys may be upper case
log_level: debug
host: 127.0.0.1
nexus_playbooks: /srv/playbooks
nexus_incident_channel: C0123ABCD
nexus_approvers: [U0AAA, S0BBB]
pagerduty_webhook_secrets: [one, two]
pagerduty_api_url: https://pd.example.com/
severity_thresholds:
  error_rate_percent: 2.5
allowed_targets:
  repositories: [nexus/ssot, nexus/other]
  deployments: [ai/frenly-ai]
escalation:
  critical: [1m, 90s, 2h]
"""
    )
    settings = load_settings()
    assert settings.database_url == "postgresql+psycopg://nexus@db:5432/nexus"
    assert (settings.host, settings.port, settings.log_level) == ("127.0.0.1", 4000, "debug")
    assert settings.nexus_playbooks == Path("/srv/playbooks")
    assert settings.nexus_incident_channel == "C0123ABCD"
    assert settings.nexus_approvers == ["U0AAA", "S0BBB"]
    assert [s.get_secret_value() for s in settings.pagerduty_webhook_secrets] == ["one", "two"]
    assert settings.pagerduty_api_url == "https://pd.example.com"  # trailing / dropped
    assert settings.severity_thresholds.error_rate_percent == 2.5
    assert settings.severity_thresholds.performance_degradation_percent == 20
    assert settings.allowed_targets.repositories == ["nexus/ssot", "nexus/other"]
    assert settings.escalation_delays("critical") == [
        timedelta(minutes=1),
        timedelta(seconds=90),
        timedelta(hours=2),
    ]


def test_environment_overrides_yaml(config: WriteConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    config("port: 4000\nlog_level: debug\nnexus_approvers: [U0YAML]\n")
    monkeypatch.setenv("PORT", "5000")
    monkeypatch.setenv("NEXUS_APPROVERS", "U0ENV")
    settings = load_settings()
    assert settings.port == 5000
    assert settings.nexus_approvers == ["U0ENV"]
    assert settings.log_level == "debug"  # not overridden: from the file


def test_empty_config_file_means_defaults(config: WriteConfig) -> None:
    config("# nothing but a comment\n")
    assert load_settings().port == 3000


def test_comma_lists_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGERDUTY_WEBHOOK_SECRETS", " old-secret, new-secret ,,")
    monkeypatch.setenv("NEXUS_APPROVERS", "U0AAA,S0BBB , W0CCC")
    monkeypatch.setenv("NEXUS_ESCALATION_DELAYS", "10s,20s,30s")
    settings = load_settings()
    assert [s.get_secret_value() for s in settings.pagerduty_webhook_secrets] == [
        "old-secret",
        "new-secret",
    ]
    assert settings.nexus_approvers == ["U0AAA", "S0BBB", "W0CCC"]
    assert settings.nexus_escalation_delays == [
        timedelta(seconds=10),
        timedelta(seconds=20),
        timedelta(seconds=30),
    ]
    # the override applies to both ladders; info still never escalates
    assert settings.escalation_delays("warning") == settings.nexus_escalation_delays
    assert settings.escalation_delays("critical") == settings.nexus_escalation_delays
    assert settings.escalation_delays("info") is None


def test_empty_comma_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXUS_APPROVERS", "")
    monkeypatch.setenv("NEXUS_ESCALATION_DELAYS", " , ")
    settings = load_settings()
    assert settings.nexus_approvers == []
    assert settings.nexus_escalation_delays is None


# --- wrong values -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (
            "PORT",
            "abc",
            "environment variable PORT: Input should be a valid integer, unable to parse "
            "string as an integer (got 'abc')",
        ),
        (
            "PORT",
            "70000",
            "environment variable PORT: Input should be less than or equal to 65535 (got '70000')",
        ),
        (
            "NEXUS_APPROVERS",
            "U0AAA,bob",
            "environment variable NEXUS_APPROVERS: expected Slack user (U…) or user-group (S…) "
            "IDs, got 'bob'",
        ),
        (
            "PAGERDUTY_API_URL",
            "http://api.pagerduty.com",
            "environment variable PAGERDUTY_API_URL: expected an https:// URL, "
            "got 'http://api.pagerduty.com'",
        ),
        (
            "PAGERDUTY_EVENTS_URL",
            "events.pagerduty.com",
            "environment variable PAGERDUTY_EVENTS_URL: expected an https:// URL",
        ),
        (
            "NEXUS_ESCALATION_DELAYS",
            "15m,5m,60m",
            "environment variable NEXUS_ESCALATION_DELAYS: expected delays in increasing order "
            "(level 2 < level 3 < level 4)",
        ),
        (
            "NEXUS_ESCALATION_DELAYS",
            "5m,5m,60m",
            "environment variable NEXUS_ESCALATION_DELAYS: expected delays in increasing order",
        ),
        (
            "NEXUS_ESCALATION_DELAYS",
            "5m,15m",
            "environment variable NEXUS_ESCALATION_DELAYS: expected three delays: when levels "
            "2, 3 and 4 start",
        ),
        (
            "NEXUS_ESCALATION_DELAYS",
            "0s,1m,2m",
            "environment variable NEXUS_ESCALATION_DELAYS: expected delays greater than zero",
        ),
        (
            "NEXUS_ESCALATION_DELAYS",
            "5x,10m,15m",
            "environment variable NEXUS_ESCALATION_DELAYS: expected a duration like 30s, 5m or "
            "1h, got '5x'",
        ),
        (
            "LOG_LEVEL",
            "verbose",
            "environment variable LOG_LEVEL: Input should be 'debug', 'info', 'warning' or "
            "'error' (got 'verbose')",
        ),
        (
            "NEXUS_INCIDENT_CHANNEL",
            "#incidents",
            "environment variable NEXUS_INCIDENT_CHANNEL: expected a Slack channel ID like "
            "C0123ABCD, got '#incidents'",
        ),
        (
            "SLACK_API_URL",
            "slack.com/api",
            "environment variable SLACK_API_URL: expected an http(s):// URL, got 'slack.com/api'",
        ),
        (
            "GITHUB_GIT_URL",
            "git@github.com:nexus",
            "environment variable GITHUB_GIT_URL: expected an https://, ssh:// or file:// URL",
        ),
        (
            "GITHUB_APP_ID",
            "twelve",
            "environment variable GITHUB_APP_ID: Input should be a valid integer",
        ),
    ],
)
def test_wrong_environment_values(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    found = problems()
    assert len(found) == 1
    assert found[0].startswith(expected), found[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "host: x\nport: abc\n",
            "{path}:2: port: Input should be a valid integer, unable to parse string as an "
            "integer (got 'abc')",
        ),
        (
            "port: 3000\nbogus: 1\n",
            "{path}:2: bogus: unknown setting (see config/nexus.yaml for the reference)",
        ),
        (
            "severity_thresholds:\n  error_rate_percent: 5\n  errors_percent: 3\n",
            "{path}:3: severity_thresholds.errors_percent: unknown setting",
        ),
        (
            "severity_thresholds:\n  error_rate_percent: 500\n",
            "{path}:2: severity_thresholds.error_rate_percent: Input should be less than or "
            "equal to 100 (got 500)",
        ),
        (
            "nexus_approvers:\n  - U0AAA\n  - alice\n",
            "{path}:1: nexus_approvers: expected Slack user (U…) or user-group (S…) IDs, "
            "got 'alice'",
        ),
        (
            "pagerduty_api_url: http://api.pagerduty.com\n",
            "{path}:1: pagerduty_api_url: expected an https:// URL, got 'http://api.pagerduty.com'",
        ),
        (
            "escalation:\n  warning: [5m, 15m]\n  critical: [15m, 5m, 60m]\n",
            "{path}:2: escalation.warning: expected three delays",
        ),
        (
            "escalation:\n  levels:\n    - {level: 1, role: Lead, slack: [bob]}\n",
            "{path}:3: escalation.levels.0.slack: expected a Slack user (U…) or group (S…) ID, "
            "got 'bob'",
        ),
        (
            "escalation:\n  levels:\n    - {level: 1, role: Lead, pagerduty_level: 1}\n",
            "{path}:2: escalation.levels: expected exactly the levels 1, 2, 3, 4 in order",
        ),
        (
            "allowed_targets:\n  repositories: [nexus/ssot]\n  deployments: [frenly-ai]\n",
            "{path}:3: allowed_targets.deployments: expected namespace/name, got 'frenly-ai'",
        ),
        (
            "allowed_targets:\n  repositories: [ssot]\n",
            "{path}:2: allowed_targets.repositories: expected owner/name, got 'ssot'",
        ),
        (
            "port: 3000\nlog_level: loud\n",
            "{path}:2: log_level: Input should be 'debug', 'info', 'warning' or 'error'",
        ),
        (
            "port: [\n",
            "{path}:2: not valid YAML: expected the node content, but found '<stream end>'",
        ),
        (
            "roles:\n  comms:\n    slack: [bob]\n",
            "{path}:3: roles.comms.slack: expected a Slack user (U…) or group (S…) ID, got 'bob'",
        ),
        (
            "roles:\n  stakeholders:\n    email: [leads]\n",
            "{path}:3: roles.stakeholders.email: expected an email address, got 'leads'",
        ),
        ("roles:\n  pr-team: {}\n", "{path}:2: roles.pr-team: unknown setting"),
        ("updates:\n  remind_after: 0s\n", "{path}:2: updates.remind_after: expected between 1s"),
        ("- port: 3000\n", "{path}:1: expected a mapping (key: value) at the top level"),
        ("a: &a [*a]\nport: x\n", "{path}:1: a: unknown setting"),
        ("port: " + "[" * 5000 + "]" * 5000 + "\n", "{path}: not valid YAML: nested too deeply"),
    ],
)
def test_wrong_yaml_values(config: WriteConfig, text: str, expected: str) -> None:
    path = config(text)
    found = problems()
    assert any(p.startswith(expected.format(path=path)) for p in found), found


def test_escalation_delays_out_of_order_in_yaml(config: WriteConfig) -> None:
    path = config("escalation:\n  critical: [15m, 5m, 60m]\n")
    assert problems() == [
        f"{path}:2: escalation.critical: expected delays in increasing order "
        "(level 2 < level 3 < level 4)"
    ]


def test_every_problem_is_reported_at_once(
    config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config("port: abc\nlog_level: loud\nbogus: 1\n")
    monkeypatch.setenv("NEXUS_APPROVERS", "nobody")
    found = problems()
    assert len(found) == 4
    assert any(p.startswith(f"{path}:1: port:") for p in found)
    assert any(p.startswith(f"{path}:2: log_level:") for p in found)
    assert any(p.startswith(f"{path}:3: bogus: unknown setting") for p in found)
    assert any(p.startswith("environment variable NEXUS_APPROVERS:") for p in found)


def test_nexus_config_pointing_nowhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "nexus.yaml"
    monkeypatch.setenv("NEXUS_CONFIG", str(missing))
    assert problems() == [f"{missing}: config file not found (NEXUS_CONFIG)"]


def test_unreadable_config_file(config: WriteConfig) -> None:
    path = config("")
    path.write_bytes(b"port: \xff\xfe\n")
    (problem,) = problems()
    assert problem.startswith(f"{path}: cannot read:")


def test_github_app_id_and_key_go_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_APP_ID", "12345")
    assert problems() == ["settings: GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY must be set together"]


# --- secrets ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (
            "SMTP_URL",
            f"http://mailer:{PASSWORD}@smtp.example.com:587",
            "environment variable SMTP_URL: expected smtp://user:pass@host:port or smtps://… "
            "(got [hidden])",
        ),
        (
            "SMTP_URL",
            f"smtp://mailer:{PASSWORD}@",
            "environment variable SMTP_URL: expected smtp://",
        ),
        (
            "DATABASE_URL",
            f"mysql://nexus:{PASSWORD}@db/nexus",
            "environment variable DATABASE_URL: expected sqlite:///path.db or postgresql://… "
            "(got [hidden])",
        ),
        (
            "GITHUB_APP_PRIVATE_KEY",
            f"-----BEGIN RSA PRIVATE KEY----- {PASSWORD}",
            "settings: GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY must be set together",
        ),
    ],
)
def test_secrets_never_appear_in_environment_errors(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    monkeypatch.setenv("SLACK_BOT_TOKEN", f"xoxb-{PASSWORD}")
    found = problems()
    assert len(found) == 1
    assert found[0].startswith(expected)
    assert all(PASSWORD not in p for p in found)


@pytest.mark.parametrize(
    "text",
    [
        f"smtp_url: http://mailer:{PASSWORD}@smtp.example.com\n",
        f"database_url: mysql://nexus:{PASSWORD}@db/nexus\n",
        "slack_bot_token: 12345\n",
        f"pagerduty_webhook_secrets: [{PASSWORD}, 12345]\n",
        f"pagerduty_routing_key: [{PASSWORD}]\n",
        f"github_app_private_key: {{k: {PASSWORD}}}\n",
    ],
)
def test_secrets_never_appear_in_yaml_errors(config: WriteConfig, text: str) -> None:
    path = config(text)
    found = problems()
    assert found and found[0].startswith(f"{path}:1: ")
    assert all(PASSWORD not in p and "12345" not in p for p in found), found


def test_secrets_are_hidden_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", f"xoxb-{PASSWORD}")
    monkeypatch.setenv("SMTP_URL", f"smtp://u:{PASSWORD}@mail:25")
    settings = load_settings()
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(settings.model_dump())


def test_secret_values_lists_every_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "signing-2",
        "SLACK_APP_TOKEN": "xapp-3",
        "PAGERDUTY_API_TOKEN": "pd-4",
        "PAGERDUTY_ROUTING_KEY": "route-5",
        "ALERTMANAGER_TOKEN": "am-6",
        "GITHUB_TOKEN": "ghp-7",
        "SMTP_URL": "smtp://u:pw-8@mail:25",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PAGERDUTY_WEBHOOK_SECRETS", "wh-9,wh-10")
    found = load_settings().secret_values()
    assert sorted(found) == sorted([*values.values(), "wh-9", "wh-10"])


def test_secret_values_skips_empty_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "")
    assert load_settings().secret_values() == []


# --- disabled features --------------------------------------------------------


def test_disabled_features_names_every_missing_credential() -> None:
    assert disabled_features(load_settings()) == [
        "Slack disabled: SLACK_BOT_TOKEN is not set",
        "incident threads disabled: NEXUS_INCIDENT_CHANNEL is not set",
        "PagerDuty webhook disabled: PAGERDUTY_WEBHOOK_SECRETS is not set",
        "PagerDuty escalation updates disabled: PAGERDUTY_API_TOKEN and PAGERDUTY_FROM_EMAIL "
        "are both needed",
        "PagerDuty alert route disabled: PAGERDUTY_ROUTING_KEY is not set",
        "Alertmanager webhook disabled: ALERTMANAGER_TOKEN is not set",
        "GitHub actions disabled: set GITHUB_TOKEN or GITHUB_APP_ID + private key",
        "email route disabled: SMTP_URL is not set",
        "remediations cannot be approved: set NEXUS_APPROVERS or approvals.approvers",
    ]


def test_nothing_disabled_when_everything_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "s",
        "NEXUS_INCIDENT_CHANNEL": "C0INCIDENT",
        "PAGERDUTY_WEBHOOK_SECRETS": "w",
        "PAGERDUTY_API_TOKEN": "t",
        "PAGERDUTY_FROM_EMAIL": "bot@example.com",
        "PAGERDUTY_ROUTING_KEY": "r",
        "ALERTMANAGER_TOKEN": "a",
        "GITHUB_APP_ID": "1",
        "GITHUB_APP_PRIVATE_KEY": "k",
        "SMTP_URL": "smtps://mail:465",
        "NEXUS_APPROVERS": "U0AAA",
    }.items():
        monkeypatch.setenv(name, value)
    assert disabled_features(load_settings()) == []


def test_partial_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("PAGERDUTY_API_TOKEN", "t")
    lines = disabled_features(load_settings())
    assert (
        "Slack HTTP events disabled: set SLACK_SIGNING_SECRET (or SLACK_APP_TOKEN for Socket Mode)"
        in lines
    )
    assert not any(line.startswith("Slack disabled") for line in lines)
    assert any(line.startswith("PagerDuty escalation updates disabled") for line in lines)
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1")
    assert not any(line.startswith("Slack") for line in disabled_features(load_settings()))


# --- durations ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("250ms", 0.25),
        ("90", 90),
        ("90s", 90),
        (" 5m ", 300),
        ("1.5h", 5400),
        ("2d", 172800),
        (45, 45),
        (0.5, 0.5),
        (timedelta(minutes=2), 120),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == timedelta(seconds=seconds)


@pytest.mark.parametrize("value", ["5x", "m", "-5m", "", "five minutes", True, None, [5]])
def test_parse_duration_refuses(value: object) -> None:
    with pytest.raises(ValueError, match="expected a duration like 30s, 5m or 1h"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (45, "45s"), (90, "90s"), (300, "5m"), (3600, "1h"), (5400, "90m")],
)
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text


# --- paths resolved at start-up ---------------------------------------------------


def test_relative_paths_resolve_against_the_start_directory(tmp_path: Path) -> None:
    settings = resolve_paths(load_settings(), tmp_path)
    assert settings.nexus_workdir == tmp_path / ".nexus-work"
    assert settings.nexus_config == tmp_path / "config" / "nexus.yaml"
    assert settings.nexus_playbooks == tmp_path / "playbooks"
    assert settings.database_url == f"sqlite:///{tmp_path / 'nexus-bot.db'}"


def test_absolute_paths_stay(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NEXUS_WORKDIR", "/var/lib/nexus/work")
    monkeypatch.setenv("DATABASE_URL", "sqlite:////var/lib/nexus/bot.db")
    settings = resolve_paths(load_settings(), tmp_path)
    assert settings.nexus_workdir == Path("/var/lib/nexus/work")
    assert settings.database_url == "sqlite:////var/lib/nexus/bot.db"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///bot.db", "sqlite:////base/bot.db"),
        ("sqlite:///data/../bot.db", "sqlite:////base/bot.db"),
        ("sqlite+pysqlite:///rel/x.db?timeout=3", "sqlite+pysqlite:////base/rel/x.db?timeout=3"),
        ("sqlite:////abs/x.db", "sqlite:////abs/x.db"),
        ("sqlite://", "sqlite://"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("postgresql://bot:pw@db:5432/nexus", "postgresql://bot:pw@db:5432/nexus"),
    ],
)
def test_relative_sqlite_paths_resolve(url: str, expected: str) -> None:
    assert resolve_sqlite_path(url, Path("/base")) == expected


def test_log_format(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().log_format == "auto"
    monkeypatch.setenv("LOG_FORMAT", "json")
    assert load_settings().log_format == "json"
    monkeypatch.setenv("LOG_FORMAT", "xml")
    (problem,) = problems()
    assert problem.startswith("environment variable LOG_FORMAT: Input should be 'auto'")


def test_a_half_configured_statuspage_mirror_is_named() -> None:
    line = "Statuspage mirror disabled: STATUSPAGE_API_KEY and STATUSPAGE_PAGE_ID are both needed"
    assert line in disabled_features(Settings(statuspage_api_key="k"))
    assert line in disabled_features(Settings(statuspage_page_id="p"))
    assert line not in disabled_features(Settings(statuspage_api_key="k", statuspage_page_id="p"))
    assert line not in disabled_features(Settings())  # not wanted: nothing to say
