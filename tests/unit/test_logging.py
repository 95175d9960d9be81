"""Logging setup: real output captured from real handlers, and the invariant that
secrets never reach it."""

from __future__ import annotations

import io
import json
import logging
import os
import select
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import pytest
import structlog
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bot.logging import (
    REDACTED,
    ROUTED_LOGGERS,
    configure_logging,
    redact_text,
    redact_value,
    register_secrets,
)

SLACK_BOT_TOKEN = "xoxb-2718281828-3141592653-AbCdEfGhIjKlMnOpQrStUvWx"
SLACK_APP_TOKEN = "xapp-1-A0123456789-1234567890123-0123456789abcdef0123456789abcdef"
GITHUB_TOKEN = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
DB_PASSWORD = "correct-horse-battery-staple"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; give it back afterwards."""
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    saved_routed = {
        name: (list(logging.getLogger(name).handlers), logging.getLogger(name).propagate)
        for name in ROUTED_LOGGERS
    }
    yield
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()
    register_secrets((), replace=True)
    root.handlers[:] = saved_root[0]
    root.setLevel(saved_root[1])
    for name, (handlers, propagate) in saved_routed.items():
        routed = logging.getLogger(name)
        routed.handlers[:] = handlers
        routed.propagate = propagate


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = text.splitlines()
    assert lines, "nothing was logged"
    return [json.loads(line) for line in lines]


def capture_logs(json_mode: bool = True, **kwargs: Any) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(json=json_mode, stream=stream, **kwargs)
    return stream


# --- output format ------------------------------------------------------------


def test_json_mode_writes_one_object_per_line_with_event_level_timestamp() -> None:
    stream = capture_logs()
    log = structlog.get_logger("bot.test")

    log.info("first", incident=42)
    log.warning("second\nspans two lines")
    logging.getLogger("alembic.runtime.migration").info("Running upgrade %s -> %s", "a1", "b2")

    records = json_lines(stream.getvalue())
    assert [r["event"] for r in records] == [
        "first",
        "second\nspans two lines",
        "Running upgrade a1 -> b2",
    ]
    assert [r["level"] for r in records] == ["info", "warning", "info"]
    assert all(r["timestamp"].endswith("Z") for r in records)
    assert records[0]["incident"] == 42
    assert records[2]["logger"] == "alembic.runtime.migration"


def test_default_output_is_json_on_stderr_when_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging()
    structlog.get_logger().info("to stderr")

    captured = capsys.readouterr()
    assert captured.out == ""
    assert json_lines(captured.err)[0]["event"] == "to stderr"


def test_terminal_gets_the_console_format() -> None:
    primary, replica = os.openpty()
    with os.fdopen(replica, "w") as tty, os.fdopen(primary, "rb", buffering=0) as reader:
        configure_logging(stream=tty)
        structlog.get_logger().info("for humans", token=SLACK_BOT_TOKEN)
        tty.flush()
        # Bounded wait: a bare read would hang the suite if nothing was written.
        ready, _, _ = select.select([reader], [], [], 5)
        assert ready, "nothing was written to the terminal"
        output = reader.read(65536).decode()

    assert "for humans" in output
    assert not output.lstrip().startswith("{")
    assert SLACK_BOT_TOKEN not in output
    assert REDACTED in output


def test_level_filters_and_reconfiguring_replaces_the_previous_setup() -> None:
    first = capture_logs(level="warning")
    log = structlog.get_logger("bot.test")
    log.info("dropped")
    log.warning("kept")

    second = capture_logs(level="debug")
    log.debug("now visible")
    logging.getLogger("slack_bolt.App").debug("stdlib too")

    assert [r["event"] for r in json_lines(first.getvalue())] == ["kept"]
    assert [r["event"] for r in json_lines(second.getvalue())] == ["now visible", "stdlib too"]
    assert len(logging.getLogger().handlers) == 1


def test_unknown_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure_logging(level="loud", stream=io.StringIO())


def test_library_handlers_are_replaced_by_the_shared_one() -> None:
    # What uvicorn's default log config does: its own handler, no propagation.
    private = io.StringIO()
    access = logging.getLogger("uvicorn.access")
    access.addHandler(logging.StreamHandler(private))
    access.propagate = False

    stream = capture_logs()
    access.info('10.0.0.1 - "GET /slack/events?token=%s HTTP/1.1" 200', "s3cr3t-query-token")

    assert private.getvalue() == ""
    (record,) = json_lines(stream.getvalue())
    assert record["logger"] == "uvicorn.access"
    assert "s3cr3t-query-token" not in stream.getvalue()
    assert "token=[REDACTED]" in record["event"]


def test_context_variables_are_merged_and_redacted() -> None:
    stream = capture_logs()
    structlog.contextvars.bind_contextvars(incident_id="INC-7", slack_token=SLACK_BOT_TOKEN)

    structlog.get_logger().info("structlog")
    logging.getLogger("sqlalchemy.engine").warning("stdlib")

    records = json_lines(stream.getvalue())
    assert [r["incident_id"] for r in records] == ["INC-7", "INC-7"]
    assert [r["slack_token"] for r in records] == [REDACTED, REDACTED]
    assert SLACK_BOT_TOKEN not in stream.getvalue()


# --- redaction through real output --------------------------------------------


@pytest.mark.parametrize("json_mode", [True, False], ids=["json", "console"])
def test_secret_keys_are_redacted_at_any_depth(json_mode: bool) -> None:
    stream = capture_logs(json_mode)

    structlog.get_logger().info(
        "slack call",
        token="anything-at-all",
        request={
            "headers": [{"Authorization": "Basic dXNlcjpwYXNz"}, {"Accept": "application/json"}],
            "body": {"client_secret": "shh-client-secret", "channel": "C0123"},
            "X-Api-Key": "key-12345",
        },
        user="alice",
        attempts=3,
    )

    output = stream.getvalue()
    for secret in ("anything-at-all", "dXNlcjpwYXNz", "shh-client-secret", "key-12345"):
        assert secret not in output
    assert REDACTED in output
    for kept in ("alice", "C0123", "application/json", "slack call"):
        assert kept in output
    if json_mode:
        (record,) = json_lines(output)
        assert record["token"] == REDACTED
        assert record["request"] == {
            "headers": [{"Authorization": REDACTED}, {"Accept": "application/json"}],
            "body": {"client_secret": REDACTED, "channel": "C0123"},
            "X-Api-Key": REDACTED,
        }
        assert record["attempts"] == 3


@pytest.mark.parametrize("json_mode", [True, False], ids=["json", "console"])
def test_credential_patterns_in_messages_are_redacted(json_mode: bool) -> None:
    stream = capture_logs(json_mode)
    message = (
        f"bot {SLACK_BOT_TOKEN} app {SLACK_APP_TOKEN} gh {GITHUB_TOKEN} "
        f"db postgresql+psycopg://nexus:{DB_PASSWORD}@db:5432/nexus"
    )

    structlog.get_logger().info(message, detail={"note": message})
    logging.getLogger("slack_bolt.App").error("failed: %s", message)

    output = stream.getvalue()
    for secret in (SLACK_BOT_TOKEN, SLACK_APP_TOKEN, GITHUB_TOKEN, DB_PASSWORD):
        assert secret not in output
    assert output.count("postgresql+psycopg://nexus:[REDACTED]@db:5432/nexus") == 3


@pytest.mark.parametrize("json_mode", [True, False], ids=["json", "console"])
def test_exception_messages_and_tracebacks_are_redacted(json_mode: bool) -> None:
    stream = capture_logs(json_mode)
    log = structlog.get_logger()

    try:
        unregistered_local = "local-value-not-a-pattern"
        raise PermissionError(f"Slack rejected {SLACK_BOT_TOKEN}")
    except PermissionError:
        log.exception("structlog exception")
    try:
        raise ConnectionError(f"cannot reach postgresql://nexus:{DB_PASSWORD}@db/nexus")
    except ConnectionError:
        logging.getLogger("sqlalchemy.pool").exception("stdlib exception")
    log.error("exception as a value", error=ValueError(f"bad token {GITHUB_TOKEN}"))

    output = stream.getvalue()
    for secret in (SLACK_BOT_TOKEN, DB_PASSWORD, GITHUB_TOKEN):
        assert secret not in output
    assert "PermissionError" in output
    assert "ConnectionError" in output
    assert "Slack rejected [REDACTED]" in output
    if json_mode:
        records = json_lines(output)
        assert [r["event"] for r in records] == [
            "structlog exception",
            "stdlib exception",
            "exception as a value",
        ]
        assert records[0]["exception"][0]["exc_value"] == "Slack rejected [REDACTED]"
        # Locals are not rendered: no pattern would recognise an arbitrary one.
        assert unregistered_local not in output
        assert records[2]["error"] == "bad token [REDACTED]"
    else:
        assert "Traceback (most recent call last)" in output


def test_registered_secrets_are_redacted_in_any_context() -> None:
    stream = capture_logs(secrets=[SIGNING_SECRET, None, ""])

    structlog.get_logger().info(f"verifying with {SIGNING_SECRET}", note=[SIGNING_SECRET])
    logging.getLogger("slack_bolt").warning("sig=%s!", SIGNING_SECRET)

    output = stream.getvalue()
    assert SIGNING_SECRET not in output
    records = json_lines(output)
    assert records[0]["event"] == "verifying with [REDACTED]"
    assert records[0]["note"] == [REDACTED]
    assert records[1]["event"] == "sig=[REDACTED]!"


def test_short_registered_values_are_ignored() -> None:
    stream = capture_logs(secrets=["abc12", "     x     "])

    structlog.get_logger().info("abc12 and x stay")

    assert json_lines(stream.getvalue())[0]["event"] == "abc12 and x stay"


def test_registered_secrets_are_replaced_not_accumulated() -> None:
    capture_logs(secrets=["first-secret-value"])
    stream = capture_logs(secrets=["second-secret-value"])

    structlog.get_logger().info("first-secret-value second-secret-value")

    assert json_lines(stream.getvalue())[0]["event"] == "first-secret-value [REDACTED]"


def test_non_secret_values_are_untouched() -> None:
    stream = capture_logs()
    values: dict[str, Any] = {
        "user": "U024BE7LH",
        "url": "https://nexus.example.com/ssot?anchor=payments&page=2",
        "ratio": 0.25,
        "ok": True,
        "nothing": None,
        "text": "the bearer of bad news used a tokenizer",
        "items": [1, "two", {"three": 3}],
    }

    structlog.get_logger().info("plain", **values)

    (record,) = json_lines(stream.getvalue())
    assert {k: record[k] for k in values} == values
    assert REDACTED not in stream.getvalue()


# --- redact_text / redact_value -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"token {SLACK_BOT_TOKEN} end", "token [REDACTED] end"),
        ("xoxp-1-2-3-abc and xoxe.xoxp-1-abcDEF", "[REDACTED] and [REDACTED]"),
        (f"app={SLACK_APP_TOKEN}", "app=[REDACTED]"),
        (f"({GITHUB_TOKEN})", "([REDACTED])"),
        ("gho_abc123DEF456 ghs_abcdef0123456789", "[REDACTED] [REDACTED]"),
        ("github_pat_11ABCDEFG0_abcdefghijklmnopqrstuvwxyz", "[REDACTED]"),
        (
            "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
            "Authorization: Bearer [REDACTED]",
        ),
        ("authorization: bearer abcdefgh12345678==", "authorization: bearer [REDACTED]"),
        ("redis://:hunter2hunter2@cache:6379/0", "redis://:[REDACTED]@cache:6379/0"),
        (
            "https://bot:p@ss:w0rd@git.example.com/x.git",
            "https://bot:[REDACTED]@git.example.com/x.git",
        ),
        (
            "host=db user=nexus password=s3cr3t dbname=x",
            "host=db user=nexus password=[REDACTED] dbname=x",
        ),
        ("/hook?access_token=abc123&x=1", "/hook?access_token=[REDACTED]&x=1"),
        (
            "key:\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n"
            "-----END OPENSSH PRIVATE KEY-----\nok",
            "key:\n[REDACTED]\nok",
        ),
        ("cut: -----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA", "cut: [REDACTED]"),
        # Left alone: no credential in any of these.
        (
            "https://git.example.com:8443/nexus/ssot.git",
            "https://git.example.com:8443/nexus/ssot.git",
        ),
        ("mailto:oncall@example.com", "mailto:oncall@example.com"),
        ("xoxb- is the bot token prefix", "xoxb- is the bot token prefix"),
        ("bearer of bad news", "bearer of bad news"),
        ("-----BEGIN PUBLIC KEY-----\nMFkw", "-----BEGIN PUBLIC KEY-----\nMFkw"),
    ],
)
def test_redact_text_patterns(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_redact_text_covers_encoded_forms_of_registered_secrets() -> None:
    register_secrets(['p@ss "word"/1'], replace=True)

    assert redact_text("GET /oauth/next?q=p%40ss%20%22word%22%2F1 200") == (
        "GET /oauth/next?q=[REDACTED] 200"
    )
    assert redact_text("q=p%40ss+%22word%22%2F1") == "q=[REDACTED]"
    assert redact_text('{"hint": "p@ss \\"word\\"/1"}') == '{"hint": "[REDACTED]"}'

    register_secrets(["pässwörd-1"], replace=True)
    assert redact_text('{"hint": "p\\u00e4ssw\\u00f6rd-1"}') == '{"hint": "[REDACTED]"}'


def test_redact_text_cannot_be_tricked_by_the_marker() -> None:
    # Each replacement leaves "[REDAC" + "TED]" + the next "D]", spelling the
    # secret again, so one pass is not enough.
    register_secrets(["TED]D]"], replace=True)

    assert "TED]D]" not in redact_text("TED]D]D]D]")
    # When the re-forming does not stop, the whole text is withheld.
    assert redact_text("TED]" + "D]" * 10) == REDACTED


def test_redact_text_catches_secrets_completed_by_a_pattern_replacement() -> None:
    register_secrets(["TED] deploy key"], replace=True)

    redacted = redact_text(f"{GITHUB_TOKEN} deploy key")

    assert "TED] deploy key" not in redacted
    assert GITHUB_TOKEN not in redacted


def test_rendering_cannot_spell_out_a_secret() -> None:
    # JSON escaping turns the harmless value  say "hi"  into  say \"hi\"
    # -- exactly this registered secret, backslashes included.
    secret = 'say \\"hi\\"'
    stream = capture_logs(secrets=[secret])

    structlog.get_logger().info("quoted", text='say "hi"')

    assert secret not in stream.getvalue()


class Credentials(NamedTuple):
    username: str
    password: str


@dataclass
class SlackConfig:
    channel: str
    bot_token: str


def test_redact_value_copies_and_redacts_structures() -> None:
    payload: dict[Any, Any] = {
        "channel": "C0123",
        "text": f"deploy with {GITHUB_TOKEN}",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": SLACK_BOT_TOKEN}}],
        "pair": ("a", SLACK_APP_TOKEN),
        "creds": Credentials("nexus", "pw-in-a-tuple"),
        "slack": SlackConfig("C0123", "not-a-pattern-token"),
        "password": None,
        "token_valid": True,
        "raw": f"Bearer {SLACK_BOT_TOKEN}".encode(),
        "owners": {GITHUB_TOKEN: "nexus-bot"},
        3: "int key",
    }

    result = redact_value(payload)

    assert result == {
        "channel": "C0123",
        "text": "deploy with [REDACTED]",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": REDACTED}}],
        "pair": ("a", REDACTED),
        "creds": {"username": "nexus", "password": REDACTED},
        "slack": {"channel": "C0123", "bot_token": REDACTED},
        "password": None,
        "token_valid": True,
        "raw": "Bearer [REDACTED]",
        "owners": {REDACTED: "nexus-bot"},
        3: "int key",
    }
    assert payload["text"] == f"deploy with {GITHUB_TOKEN}", "input must not be modified"
    assert redact_value(SLACK_BOT_TOKEN) == REDACTED
    assert redact_value(42) == 42


def test_redact_value_survives_cycles() -> None:
    cyclic: list[Any] = [SLACK_BOT_TOKEN]
    cyclic.append(cyclic)

    assert SLACK_BOT_TOKEN not in repr(redact_value(cyclic))


def test_redact_value_keeps_harmless_objects_and_stringifies_revealing_ones() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return f"Opaque(token={SLACK_BOT_TOKEN})"

    harmless = object()
    assert redact_value(harmless) is harmless
    assert redact_value(Opaque()) == "Opaque(token=[REDACTED])"


# --- the invariant, for arbitrary text ------------------------------------------

printable = st.characters(exclude_categories=("Cc", "Cs", "Co", "Cn"), include_characters="\t\n")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prefix=st.text(printable, max_size=40),
    secret=st.text(printable, min_size=6, max_size=40),
    suffix=st.text(printable, max_size=40),
    json_mode=st.booleans(),
)
def test_registered_secret_never_appears_in_output(
    prefix: str, secret: str, suffix: str, json_mode: bool
) -> None:
    # Values the module deliberately ignores (see register_secrets).
    assume(len(secret.strip()) >= 6 and secret not in REDACTED)
    text = prefix + secret + suffix
    stream = capture_logs(json_mode, secrets=[secret])
    log = structlog.get_logger("bot.fuzz")

    log.warning(text, detail=text, nested={"list": [text, (text,)]}, **{text: "as a key"})
    logging.getLogger("slack_bolt.App").error("stdlib %s", text)
    try:
        raise RuntimeError(text)
    except RuntimeError:
        log.exception("failure")

    output = stream.getvalue()
    assert secret not in output
    assert REDACTED in output


# --- routine lines ------------------------------------------------------------


def test_apscheduler_per_run_lines_are_debug_only() -> None:
    """APScheduler logs two INFO lines per run of every job: an idle bot must be silent."""
    executor = logging.getLogger("apscheduler.executors.default")
    stream = capture_logs()
    executor.info('Running job "escalation-sweep" (scheduled at ...)')
    executor.info('Job "escalation-sweep" executed successfully')
    logging.getLogger("apscheduler.scheduler").info('Added job "escalation-sweep"')
    executor.warning('Run time of job "escalation-sweep" was missed by 0:00:02')
    lines = json_lines(stream.getvalue())
    assert [(line["logger"], line["level"]) for line in lines] == [
        ("apscheduler.scheduler", "info"),
        ("apscheduler.executors.default", "warning"),
    ]

    stream = capture_logs(level="debug")
    executor.info('Job "escalation-sweep" executed successfully')
    (line,) = json_lines(stream.getvalue())
    assert line["level"] == "debug" and "executed successfully" in line["event"]
