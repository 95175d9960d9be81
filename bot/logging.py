"""Structured logging for the bot, with secrets redacted before anything is written.

The invariant this module keeps: secrets never reach the logs. Everything --
structlog events and stdlib records from uvicorn, slack_bolt, SQLAlchemy and
alembic alike -- goes through one handler whose formatter redacts the final
event dict (after exceptions have been rendered to text, since exception
messages are a common way for tokens to leak) and then scrubs the rendered
line once more for registered secret values.

Redaction has three layers:

1. values under keys that look secret (``token``, ``password``, ``api_key``, ...)
   in any nested dict become ``[REDACTED]``;
2. well-known credential shapes inside any string (Slack and GitHub tokens,
   ``Bearer`` credentials, passwords in URLs, PEM private keys) are replaced;
3. the exact secret values the app registers (its configured credentials)
   are replaced wherever they appear.

`redact_text` and `redact_value` apply the same rules for anything else that
leaves the process, e.g. messages posted to Slack.

uvicorn installs its own handlers unless started with ``log_config=None``, and
alembic's stock ``env.py`` calls ``logging.config.fileConfig``; either undoes the
routing set up here, so call `configure_logging` after them or disable them.
"""

from __future__ import annotations

import dataclasses
import json as _jsonlib
import logging
import re
import sys
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any, TextIO, overload

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "REDACTED",
    "configure_logging",
    "redact_text",
    "redact_value",
    "register_secrets",
]

REDACTED = "[REDACTED]"

# Shorter values would match ordinary words and numbers all over the logs.
MIN_SECRET_LENGTH = 6

# Libraries whose stdlib loggers may carry their own handlers (uvicorn adds
# some); they are stripped so every record reaches the redacting root handler.
ROUTED_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "slack_bolt",
    "slack_sdk",
    "sqlalchemy",
    "alembic",
    "apscheduler",
)

# Loggers that write a line per routine run (APScheduler: "Running job ...",
# "... executed successfully", twice a second per sweep). Those lines are
# demoted to DEBUG so an idle bot is silent; their warnings and errors
# (a missed run, a job that raised) keep their level.
CHATTY_LOGGERS = ("apscheduler.executors",)

# Compared against the key lower-cased with separators removed, so "api_key",
# "X-Api-Key" and "apiKey" all match "apikey". Substring matching over-redacts
# keys like "tokens_used"; a lost counter in a log line is the cheaper mistake.
_SECRET_KEY_PARTS = (
    "token",
    "secret",
    "password",
    "passwd",
    "authorization",
    "apikey",
    "privatekey",
    "cookie",
)
_KEY_SEPARATORS = re.compile(r"[\W_]+")

_TEXT_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # A PEM block cut off by truncation still holds most of the key, so an
    # unterminated block is redacted up to the end of the string.
    (
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
            re.DOTALL,
        ),
        REDACTED,
    ),
    # Slack bot/user/app-level/refresh tokens, including rotated "xoxe.xoxp-" ones.
    (re.compile(r"xox(?:e\.xox)?[abeoprs]-[A-Za-z0-9-]+"), REDACTED),
    (re.compile(r"xapp-[A-Za-z0-9-]+"), REDACTED),
    (re.compile(r"github_pat_\w+"), REDACTED),
    (re.compile(r"gh[oprsu]_[A-Za-z0-9]+"), REDACTED),
    # Real bearer tokens are long; the minimum keeps "bearer of bad news" intact.
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]{8,}=*"), rf"\1 {REDACTED}"),
    # scheme://user:password@host. Greedy up to the last "@" before the path,
    # so an unencoded "@" inside the password does not leave a tail behind.
    (
        re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s/?#@:]*:)[^\s/?#]+(?=@)"),
        rf"\1{REDACTED}",
    ),
    # Credentials in query strings and libpq-style DSNs: "?token=...", "password=...".
    # A value already replaced by an earlier pattern is skipped so the
    # punctuation after the marker survives.
    (
        re.compile(
            r"(?i)\b([\w.\-]*(?:token|secret|passw(?:or)?d|api_?key)[\w.\-]*=)"
            r"(?!\[REDACTED\])[^\s&;,'\"]+"
        ),
        rf"\1{REDACTED}",
    ),
)

# Replacing a secret with the marker can itself complete another occurrence
# when the secret overlaps the marker text ("ED]xyz..."), so replacement is
# repeated; past this many rounds the whole string is withheld instead.
_MAX_SECRET_PASSES = 4
# Deeper structures are almost certainly cyclic; render them flat instead.
_MAX_DEPTH = 32

_secret_values: frozenset[str] = frozenset()
_secret_pattern: re.Pattern[str] | None = None


def register_secrets(secrets: Iterable[str | None], *, replace: bool = False) -> None:
    """Make `redact_text` (and so all logging) replace these exact values.

    Values shorter than six non-blank characters are ignored, as are values
    that are part of the ``[REDACTED]`` marker itself (they cannot be hidden
    by it). ``None`` is accepted so optional settings can be passed as they
    are. With ``replace=True`` previously registered values are forgotten.
    """
    global _secret_values, _secret_pattern
    values = set() if replace else set(_secret_values)
    for secret in secrets:
        if not isinstance(secret, str):
            continue
        values.update(v for v in _encoded_forms(secret) if _can_protect(v))
    # Longest first: alternation takes the first branch that matches, and a
    # shorter secret inside a longer one must not leave the rest visible.
    ordered = sorted(values, key=len, reverse=True)
    _secret_values = frozenset(values)
    _secret_pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None


def _encoded_forms(secret: str) -> set[str]:
    # Secrets often travel encoded: percent-encoded in URLs and DSNs, escaped
    # inside JSON bodies that get logged verbatim.
    return {
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret, safe=""),
        _jsonlib.dumps(secret)[1:-1],
        _jsonlib.dumps(secret, ensure_ascii=False)[1:-1],
    }


def _can_protect(value: str) -> bool:
    return len(value.strip()) >= MIN_SECRET_LENGTH and value not in REDACTED


def _replace_registered(text: str) -> str:
    pattern = _secret_pattern
    if pattern is None:
        return text
    for _ in range(_MAX_SECRET_PASSES):
        text, count = pattern.subn(REDACTED, text)
        if count == 0:
            return text
    return REDACTED


def redact_text(text: str) -> str:
    """Return *text* with credential patterns and registered secrets replaced."""
    text = _replace_registered(text)
    for pattern, replacement in _TEXT_PATTERNS:
        text = pattern.sub(replacement, text)
    # A pattern replacement can complete a registered secret that overlapped it.
    return _replace_registered(text)


def _is_secret_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    normalized = _KEY_SEPARATORS.sub("", key.lower())
    return any(part in normalized for part in _SECRET_KEY_PARTS)


def _says_nothing(value: object) -> bool:
    # "token=None" or "password_set=True" reveal nothing and help debugging.
    return value is None or isinstance(value, bool) or (isinstance(value, str) and not value)


@overload
def redact_value(obj: str) -> str: ...
@overload
def redact_value(obj: Mapping[Any, Any]) -> dict[Any, Any]: ...
@overload
def redact_value(obj: object) -> Any: ...
def redact_value(obj: object) -> Any:
    """Return a redacted copy of *obj*; the input is never modified.

    Strings go through `redact_text`; dicts, lists, tuples and sets are copied
    recursively, with values under secret-looking keys replaced whole.
    Dataclasses, pydantic models and named tuples become dicts so their field
    names get the same key check. Numbers, booleans and ``None`` are returned
    as they are; any other object is returned unchanged unless its ``str`` or
    ``repr`` would reveal something, in which case its redacted ``str`` is
    returned instead.
    """
    return _redact(obj, 0)


def _redact(obj: object, depth: int) -> Any:
    if obj is None or isinstance(obj, bool | int | float):
        return obj
    if isinstance(obj, str):
        return redact_text(obj)
    if depth >= _MAX_DEPTH:
        return redact_text(repr(obj))
    if isinstance(obj, bytes | bytearray):
        return redact_text(bytes(obj).decode("utf-8", "backslashreplace"))
    if isinstance(obj, Mapping):
        return _redact_mapping(obj, depth)
    if isinstance(obj, tuple) and hasattr(obj, "_asdict"):
        return _redact_mapping(obj._asdict(), depth)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        return _redact_mapping(fields, depth)
    model_dump = getattr(obj, "model_dump", None)
    if callable(model_dump) and not isinstance(obj, type):
        dumped = model_dump()
        if isinstance(dumped, Mapping):
            return _redact_mapping(dumped, depth)
    if isinstance(obj, tuple):
        return tuple(_redact(item, depth + 1) for item in obj)
    # Sets become lists: redacted items (dicts from dataclasses) may not hash.
    if isinstance(obj, list | set | frozenset):
        return [_redact(item, depth + 1) for item in obj]
    return _redact_other(obj)


def _redact_mapping(mapping: Mapping[Any, Any], depth: int) -> dict[Any, Any]:
    result: dict[Any, Any] = {}
    for key, value in mapping.items():
        new_key = redact_text(key) if isinstance(key, str) else key
        if _is_secret_key(key) and not _says_nothing(value):
            result[new_key] = REDACTED
        else:
            result[new_key] = _redact(value, depth + 1)
    return result


def _redact_other(obj: object) -> Any:
    # Renderers fall back to repr() for unknown objects (and exceptions are
    # often logged as values), so judge both forms; keep the object itself
    # when neither reveals anything, so later processors still see its type.
    try:
        as_str, as_repr = str(obj), repr(obj)
    except Exception:
        return f"<unprintable {type(obj).__name__}>"
    redacted = redact_text(as_str)
    if redacted != as_str or redact_text(as_repr) != as_repr:
        return redacted
    return obj


def _redact_event(_logger: WrappedLogger, _method_name: str, event_dict: EventDict) -> EventDict:
    return _redact_mapping(event_dict, 0)


class _ScrubRendered:
    """Wraps the renderer: escaping during rendering (JSON's ``\\"``, repr's
    quotes) can turn harmless text into a registered secret's exact spelling,
    which only a pass over the finished line can catch."""

    def __init__(self, renderer: Processor) -> None:
        self._renderer = renderer

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
        rendered = self._renderer(logger, method_name, event_dict)
        if isinstance(rendered, bytes | bytearray):
            rendered = bytes(rendered).decode("utf-8", "backslashreplace")
        return _replace_registered(str(rendered))


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):  # closed or not a real file
        return False


def _parse_level(level: str) -> int:
    levels = logging.getLevelNamesMapping()
    try:
        return levels[level.upper()]
    except KeyError:
        known = ", ".join(sorted(name.lower() for name in levels))
        raise ValueError(f"unknown log level {level!r}; use one of {known}") from None


class _DemoteRoutineLines(logging.Filter):
    """INFO records of the `CHATTY_LOGGERS` become DEBUG ones, shown only at debug level."""

    def __init__(self, threshold: int) -> None:
        super().__init__()
        self.threshold = threshold

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and record.name.startswith(CHATTY_LOGGERS):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return record.levelno >= self.threshold


def configure_logging(
    level: str = "info",
    json: bool | None = None,
    secrets: Iterable[str | None] = (),
    *,
    stream: TextIO | None = None,
) -> None:
    """Send structlog and stdlib logging to *stream* (stderr), redacted.

    *json* ``None`` picks JSON lines unless the stream is a terminal, where a
    human-readable console format is used. *secrets* replaces the registered
    secret values (see `register_secrets`). Calling this again fully replaces
    the previous configuration.
    """
    out = sys.stderr if stream is None else stream
    numeric_level = _parse_level(level)
    tty = _isatty(out)
    use_json = not tty if json is None else json
    register_secrets(secrets, replace=True)

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    exceptions: Processor
    renderer: Processor
    if use_json:
        # Locals in tracebacks are the likeliest place for an unregistered
        # credential to sit in plain sight, so they are left out.
        exceptions = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
        renderer = structlog.processors.JSONRenderer()
    else:
        # Pre-rendering the traceback (instead of letting ConsoleRenderer do
        # it) is what lets the redaction processor see its text.
        exceptions = structlog.processors.format_exc_info
        renderer = structlog.dev.ConsoleRenderer(colors=tty)

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            exceptions,
            _redact_event,
            _ScrubRendered(renderer),
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    # On the handler: a logger's own filters do not see its children's records.
    handler.addFilter(_DemoteRoutineLines(numeric_level))

    # Exactly one sink: any handler left from an earlier configuration (or a
    # library's basicConfig) would write records unredacted.
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    for name in ROUTED_LOGGERS:
        routed = logging.getLogger(name)
        for old in list(routed.handlers):
            routed.removeHandler(old)
        routed.propagate = True

    # reset_defaults first so a second call starts clean; loggers cached by an
    # earlier configuration still work because their output goes through the
    # root handler replaced above.
    structlog.reset_defaults()
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
