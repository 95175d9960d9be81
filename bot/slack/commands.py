"""`/incident …`: parse the text of the slash command (pure, no Slack calls)."""

from __future__ import annotations

import re
from dataclasses import dataclass

HELP = """*`/incident` — NEXUS incident bot*
• `/incident declare <title> [--playbook ID]` — open an incident and its thread
• `/incident list` — open incidents
• `/incident status <N>` — one incident's state
• `/incident playbook <ID>` — show a playbook
• `/incident ack <N>` — acknowledge (stops escalation)
• `/incident resolve <N>` — resolve
• `/incident escalate <N> [--to LEVEL]` — escalate now (one level, or to LEVEL 1–4)
• `/incident timeline <N>` — everything that happened, with who and when
• `/incident help` — this help
Slack does not allow slash commands inside threads: in an incident thread,
mention the bot instead (`@nexus ack`, `@nexus timeline`), or give the number."""

NEEDS_INCIDENT = {"status", "ack", "resolve", "escalate", "timeline"}
_NUMBER = re.compile(r"^#?(\d{1,9})$")


class CommandError(ValueError):
    """Input that is not a valid command; the message says what is wrong."""


@dataclass(frozen=True)
class IncidentCommand:
    verb: str
    incident: int | None = None
    title: str | None = None
    playbook: str | None = None
    level: int | None = None


def parse_incident_command(text: str) -> IncidentCommand:
    """Parse e.g. `ack 12`, `declare SSOT sync broken --playbook configuration-drift`."""
    text = (text or "").strip()
    if len(text) > 2000:
        raise CommandError("that command is too long")
    # Plain whitespace split, not shlex: titles like "can't sync" must just work.
    words = text.split()
    if not words:
        return IncidentCommand("help")
    verb, rest = words[0].lower(), words[1:]
    if verb in ("help", "-h", "--help"):
        return IncidentCommand("help")
    if verb == "list":
        _no_arguments(verb, rest)
        return IncidentCommand("list")
    if verb == "declare":
        return _declare(rest)
    if verb == "playbook":
        if len(rest) != 1 or not re.fullmatch(r"[a-z0-9][a-z0-9-]{1,62}", rest[0]):
            raise CommandError("usage: `/incident playbook <ID>`, e.g. `schema-mismatch`")
        return IncidentCommand("playbook", playbook=rest[0])
    if verb in ("acknowledge", "ack"):
        verb = "ack"
    if verb in NEEDS_INCIDENT:
        return _incident_verb(verb, rest)
    raise CommandError(f"unknown command `{verb[:40]}`")


def _no_arguments(verb: str, rest: list[str]) -> None:
    if rest:
        raise CommandError(f"`{verb}` takes no arguments")


def _declare(rest: list[str]) -> IncidentCommand:
    playbook = None
    if "--playbook" in rest:
        at = rest.index("--playbook")
        if at + 1 >= len(rest):
            raise CommandError("`--playbook` needs a playbook ID")
        playbook = rest[at + 1]
        rest = rest[:at] + rest[at + 2 :]
    title = " ".join(rest).strip()
    if not title:
        raise CommandError("usage: `/incident declare <title> [--playbook ID]`")
    if len(title) > 300:
        raise CommandError("the title is longer than 300 characters")
    return IncidentCommand("declare", title=title, playbook=playbook)


def _incident_verb(verb: str, rest: list[str]) -> IncidentCommand:
    level = None
    if verb == "escalate" and "--to" in rest:
        at = rest.index("--to")
        value = rest[at + 1] if at + 1 < len(rest) else ""
        if value not in ("1", "2", "3", "4"):
            raise CommandError("`--to` needs a level from 1 to 4")
        level = int(value)
        rest = rest[:at] + rest[at + 2 :]
    number = None
    if rest:
        match = _NUMBER.match(rest[0])
        if match is None or len(rest) > 1:
            raise CommandError(f"usage: `/incident {verb} <incident number>`")
        number = int(match[1])
    return IncidentCommand(verb, incident=number, level=level)
