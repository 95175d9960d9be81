"""Settings: environment variables first, then `config/nexus.yaml`, then defaults.

Every key of the public contract is a field here, named as its environment
variable in lower case; the YAML file may use the same names (either case).
The structured parts of the configuration (severity thresholds, allow-listed
targets, escalation ladder) live only in the YAML file.

A wrong value raises `SettingsError`, whose lines name the key, where it came
from (file and line, or environment variable) and what is expected. The CLI
prints them and exits 2.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy.engine import make_url

from bot.communication import RolesConfig, UpdatesConfig

# The structured config models live in bot.config_models; re-exported (``X as X``) so
# `from bot.settings import EscalationLevel` and the like keep working.
from bot.config_models import SLACK_ID
from bot.config_models import AllowedTargets as AllowedTargets
from bot.config_models import ApprovalConfig as ApprovalConfig
from bot.config_models import EscalationConfig as EscalationConfig
from bot.config_models import EscalationLevel as EscalationLevel
from bot.config_models import SeverityThresholds as SeverityThresholds
from bot.config_models import check_delays as check_delays
from bot.drills.config import DrillsConfig
from bot.durations import Duration
from bot.reviews.config import ReviewConfig
from bot.web.config import StatusPageConfig
from bot.yamlfile import KeyPath, YamlFileError, load_yaml_mapping, nearest_line

DEFAULT_CONFIG_PATH = Path("config/nexus.yaml")


class SettingsError(Exception):
    """Invalid configuration; `problems` holds one readable line per error."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _split_commas(value: Any) -> Any:
    """Environment variables carry lists as `a,b,c`; YAML may use real lists."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CommaList = Annotated[list[str], NoDecode, BeforeValidator(_split_commas)]


class Settings(BaseSettings):
    """All settings of the bot. See config/nexus.yaml for the commented reference."""

    model_config = SettingsConfigDict(extra="forbid", case_sensitive=False)

    database_url: str = "sqlite:///nexus-bot.db"
    nexus_config: Path = DEFAULT_CONFIG_PATH
    nexus_playbooks: Path = Path("playbooks")
    # 0.0.0.0 so the Procfile and a Kubernetes pod are reachable; set HOST to narrow it.
    host: str = "0.0.0.0"  # noqa: S104
    port: int = Field(3000, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # auto: human-readable on a terminal, JSON lines otherwise (pipes, files, pods).
    log_format: Literal["auto", "json", "console"] = "auto"

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    nexus_incident_channel: str | None = None

    pagerduty_webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    pagerduty_api_token: SecretStr | None = None
    pagerduty_from_email: str | None = None
    pagerduty_api_url: str = "https://api.pagerduty.com"
    pagerduty_events_url: str = "https://events.pagerduty.com"
    pagerduty_routing_key: SecretStr | None = None
    # A CA bundle to trust for the PagerDuty APIs (a TLS-inspecting proxy; tests).
    pagerduty_ca_bundle: str | None = None

    alertmanager_token: SecretStr | None = None

    github_token: SecretStr | None = None
    github_app_id: int | None = None
    github_app_private_key: SecretStr | None = None
    github_api_url: str = "https://api.github.com"
    github_git_url: str = "https://github.com"

    # Where git mirrors are cached between remediations (reused, fetched each run).
    nexus_workdir: Path = Path(".nexus-work")

    kubeconfig: str | None = None
    # s3.restore_snapshot: S3 (unset) or MinIO and the like; credentials come from
    # the standard AWS chain (AWS_ACCESS_KEY_ID, …, or the pod's role).
    s3_endpoint_url: str | None = None
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"  # MinIO: path

    # Alertmanager batches are written to the inbox by their own small pool, so a
    # storm cannot hold up PagerDuty webhooks and Slack clicks. Past
    # INGEST_MAX_BACKLOG batches accepted but not yet applied, they get 503.
    ingest_workers: int = Field(2, ge=1, le=32)
    ingest_max_backlog: int = Field(256, ge=1, le=100000)

    # How long an outbox delivery is claimed: after a crash, a message whose
    # fate is unknown is retried once this has passed. Slack calls time out sooner.
    outbox_lease_seconds: float = Field(60.0, ge=2, le=3600)

    smtp_url: SecretStr | None = None
    smtp_from: str = "nexus-bot@localhost"

    nexus_approvers: CommaList = Field(default_factory=list)
    nexus_escalation_delays: Annotated[list[Duration] | None, NoDecode] = None

    approvals: ApprovalConfig = Field(default_factory=ApprovalConfig)
    severity_thresholds: SeverityThresholds = Field(default_factory=SeverityThresholds)
    allowed_targets: AllowedTargets = Field(default_factory=AllowedTargets)
    escalation: EscalationConfig = Field(default_factory=EscalationConfig)
    # The communication plan: role defaults per incident, public update cadence.
    roles: RolesConfig = Field(default_factory=RolesConfig)
    updates: UpdatesConfig = Field(default_factory=UpdatesConfig)
    # The public status page (bot/web) and its optional mirror on Atlassian Statuspage.
    status_page: StatusPageConfig = Field(default_factory=StatusPageConfig)
    statuspage_api_key: SecretStr | None = None
    statuspage_page_id: str | None = None
    statuspage_api_url: str = "https://api.statuspage.io/v1"
    # Post-incident reviews: the GitHub repository they are filed in, follow-up, assignees.
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    drills: DrillsConfig = Field(default_factory=DrillsConfig)
    nexus_drill_channel: str | None = None  # wins over drills.channel
    # Bounds on HTTP connections (bot/http_limits.py) and on database waits (bot/store/db.py).
    http_request_timeout: Duration = Field(timedelta(seconds=10), gt=timedelta(0))
    http_keepalive_timeout: Duration = Field(timedelta(seconds=5), gt=timedelta(0))
    http_max_concurrency: int = Field(100, ge=1, le=100000)
    http_max_connections: int = Field(1000, ge=1, le=1000000)
    database_lock_timeout: Duration = Field(timedelta(seconds=3), gt=timedelta(0))
    database_statement_timeout: Duration = Field(timedelta(seconds=30), ge=timedelta(0))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlFileSource(settings_cls))

    @field_validator("pagerduty_webhook_secrets", mode="before")
    @classmethod
    def _secrets_list(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("nexus_escalation_delays", mode="before")
    @classmethod
    def _delays_list(cls, value: Any) -> Any:
        return _split_commas(value) or None

    @field_validator("nexus_escalation_delays")
    @classmethod
    def _delays_ordered(cls, value: list[timedelta] | None) -> list[timedelta] | None:
        return None if value is None else check_delays(value)

    @field_validator("nexus_approvers")
    @classmethod
    def _approver_ids(cls, values: list[str]) -> list[str]:
        for value in values:
            if not SLACK_ID.match(value):
                raise ValueError(f"expected Slack user (U…) or user-group (S…) IDs, got {value!r}")
        return values

    @field_validator("nexus_incident_channel", "nexus_drill_channel")
    @classmethod
    def _channel_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[CGD][A-Z0-9]{2,}", value):
            raise ValueError(f"expected a Slack channel ID like C0123ABCD, got {value!r}")
        return value

    @field_validator("pagerduty_api_url", "pagerduty_events_url")
    @classmethod
    def _https_only(cls, value: str) -> str:
        # The pagerduty 7.x clients refuse anything but https; fail at start-up, not at 3 a.m.
        if urlsplit(value).scheme != "https":
            raise ValueError(f"expected an https:// URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("slack_api_url", "github_api_url", "statuspage_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"expected an http(s):// URL, got {value!r}")
        return value

    @field_validator("github_git_url")
    @classmethod
    def _git_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https", "file", "ssh"):
            raise ValueError(f"expected an https://, ssh:// or file:// URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+", "postgres:")):
            # Without the value: a database URL may carry a password.
            raise ValueError("expected sqlite:///path.db or postgresql://…")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parts = urlsplit(value.get_secret_value())
            if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
                raise ValueError("expected smtp://user:pass@host:port or smtps://…")
        return value

    @model_validator(mode="after")
    def _github_app_pair(self) -> Settings:
        if (self.github_app_id is None) != (self.github_app_private_key is None):
            raise ValueError("GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY must be set together")
        return self

    def approvers_for(self, action: str) -> list[str]:
        """Who may approve `action`: its own list if configured, else the general one."""
        if action in self.approvals.per_action:
            return list(self.approvals.per_action[action])
        return list(self.nexus_approvers or self.approvals.approvers)

    def escalation_delays(self, severity: str) -> list[timedelta] | None:
        """When levels 2–4 start for this severity; None means it never escalates."""
        if severity == "info":
            return None
        if self.nexus_escalation_delays is not None:
            return list(self.nexus_escalation_delays)
        return list(self.escalation.critical if severity == "critical" else self.escalation.warning)

    def drill_channel(self) -> str | None:
        """Where drill threads open: NEXUS_DRILL_CHANNEL, drills.channel, the incident channel."""
        return self.nexus_drill_channel or self.drills.channel or self.nexus_incident_channel

    def secret_values(self) -> list[str]:
        """Every configured credential, for the log redactor."""
        found: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            values = value if isinstance(value, list) else [value]
            found += [v.get_secret_value() for v in values if isinstance(v, SecretStr)]
        return [v for v in found if v]


def resolve_paths(settings: Settings, base: Path) -> Settings:
    """The settings with every relative path made absolute against `base`.

    `serve` calls this once at start-up with the directory it was started
    from: git, for one, later runs in other working directories, where a
    relative `NEXUS_WORKDIR` names a folder that does not exist.
    """

    def absolute(path: Path) -> Path:
        return path if path.is_absolute() else (base / path).resolve()

    return settings.model_copy(
        update={
            "nexus_config": absolute(settings.nexus_config),
            "nexus_playbooks": absolute(settings.nexus_playbooks),
            "nexus_workdir": absolute(settings.nexus_workdir),
            "database_url": resolve_sqlite_path(settings.database_url, base),
        }
    )


def resolve_sqlite_path(database_url: str, base: Path) -> str:
    """`sqlite:///nexus-bot.db` → `sqlite:////<base>/nexus-bot.db`; other URLs as they are.

    In-memory databases (`sqlite://`, `:memory:`) and SQLite `file:` URIs are left alone.
    """
    if not database_url.startswith("sqlite"):
        return database_url
    url = make_url(database_url)
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return database_url
    path = Path(database)
    if path.is_absolute():
        return database_url
    return url.set(database=str((base / path).resolve())).render_as_string(hide_password=False)


def disabled_features(settings: Settings) -> list[str]:
    """One line per feature switched off by a missing credential (logged once at start-up)."""
    lines = []
    if settings.slack_bot_token is None:
        lines.append("Slack disabled: SLACK_BOT_TOKEN is not set")
    elif settings.slack_signing_secret is None and settings.slack_app_token is None:
        lines.append(
            "Slack HTTP events disabled: set SLACK_SIGNING_SECRET "
            "(or SLACK_APP_TOKEN for Socket Mode)"
        )
    if settings.nexus_incident_channel is None:
        lines.append("incident threads disabled: NEXUS_INCIDENT_CHANNEL is not set")
    if not settings.pagerduty_webhook_secrets:
        lines.append("PagerDuty webhook disabled: PAGERDUTY_WEBHOOK_SECRETS is not set")
    if settings.pagerduty_api_token is None or settings.pagerduty_from_email is None:
        lines.append(
            "PagerDuty escalation updates disabled: PAGERDUTY_API_TOKEN and "
            "PAGERDUTY_FROM_EMAIL are both needed"
        )
    if settings.pagerduty_routing_key is None:
        lines.append("PagerDuty alert route disabled: PAGERDUTY_ROUTING_KEY is not set")
    if settings.alertmanager_token is None:
        lines.append("Alertmanager webhook disabled: ALERTMANAGER_TOKEN is not set")
    if settings.github_token is None and settings.github_app_id is None:
        lines.append("GitHub actions disabled: set GITHUB_TOKEN or GITHUB_APP_ID + private key")
    if settings.smtp_url is None:
        lines.append("email route disabled: SMTP_URL is not set")
    if (settings.statuspage_api_key is None) != (not settings.statuspage_page_id):
        lines.append(
            "Statuspage mirror disabled: STATUSPAGE_API_KEY and STATUSPAGE_PAGE_ID are both needed"
        )
    if not settings.nexus_approvers and not settings.approvals.approvers:
        lines.append("remediations cannot be approved: set NEXUS_APPROVERS or approvals.approvers")
    return lines


class _YamlFileSource(PydanticBaseSettingsSource):
    """Reads NEXUS_CONFIG (default config/nexus.yaml) and remembers each key's line."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self.path = Path(os.environ.get("NEXUS_CONFIG", str(DEFAULT_CONFIG_PATH)))
        self.data, self.lines = load_yaml_with_lines(
            self.path, required="NEXUS_CONFIG" in os.environ
        )

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


def load_yaml_with_lines(path: Path, required: bool) -> tuple[dict[str, Any], dict[KeyPath, int]]:
    """The config file's settings (keys lower-cased) and the line of every key."""
    if not path.exists():
        if required:
            raise SettingsError([f"{path}: config file not found (NEXUS_CONFIG)"])
        return {}, {}
    try:
        data, lines = load_yaml_mapping(path)
    except YamlFileError as exc:
        raise SettingsError([str(exc)]) from None
    data = {str(k).lower(): v for k, v in data.items()}
    lines = {(str(k[0]).lower(), *k[1:]): v for k, v in lines.items()}
    return data, lines


def load_settings(**overrides: Any) -> Settings:
    """Build Settings or raise SettingsError with one located line per problem."""
    source = _YamlFileSource(Settings)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(
            [_describe(error, source) for error in exc.errors(include_url=False)]
        ) from None


def _describe(error: Any, source: _YamlFileSource) -> str:
    loc: tuple[str | int, ...] = tuple(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown setting (see config/nexus.yaml for the reference)"
    if error["type"] == "missing":
        message = "required"
    got = error.get("input")
    if error["type"] not in ("extra_forbidden", "missing") and not isinstance(got, dict | list):
        shown = "[hidden]" if loc and _looks_secret(str(loc[0])) else repr(got)
        if shown not in message:
            message += f" (got {shown})"
    if not loc:
        return f"settings: {message}"
    key = ".".join(str(part) for part in loc)
    env_name = str(loc[0]).upper()
    if env_name in {k.upper() for k in os.environ}:
        return f"environment variable {env_name}: {message}"
    line = nearest_line(source.lines, loc)
    where = f"{source.path}:{line}" if line else str(source.path)
    return f"{where}: {key}: {message}"


def _looks_secret(name: str) -> bool:
    return any(
        word in name for word in ("token", "secret", "key", "smtp_url", "database_url", "password")
    )
