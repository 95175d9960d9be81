"""`/incident …`: parse the text of the slash command (pure, no Slack calls).

The same words work as an `@nexus …` mention in an incident thread, and the
status-update rules (`parse_update_arguments`) are shared with the command line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from bot.communication import ASSIGNABLE_ROLES, PUBLIC_STATUSES

HELP = """*`/incident` — NEXUS incident bot*
• `/incident declare <title> [--playbook ID]` — open an incident and its thread
• `/incident list` — open incidents
• `/incident status <N>` — one incident's state
• `/incident playbook <ID>` — show a playbook
• `/incident ack <N>` — acknowledge (stops escalation)
• `/incident resolve <N>` — resolve
• `/incident escalate <N> [--to LEVEL]` — escalate now (one level, or to LEVEL 1–4)
• `/incident timeline <N>` — everything that happened, with who and when
• `/incident role <commander|tech-lead|comms> <@user> [N]` — give someone a role \
(also `ic`, `tl`, `communications`)
• `/incident update <investigating|identified|monitoring|resolved> "<text>" [N]` — \
post a public status update
• `/incident note <text> [#N]` — add an internal note to the timeline (never public)
• `/incident review [N]` — the post-incident review (filed as a GitHub issue, or how to get it)
• `/incident component <name> <operational|degraded|partial|major|auto>` — set a \
component on the public status page by hand (Communications); `auto` follows incidents
• `/incident drill <scenario|all>` — start a recovery drill (rehearsal: nothing real \
changes); `/incident drill list` shows the scenarios
• `/incident help` — this help
Slack does not allow slash commands inside threads: every sub-command also works
as a mention in an incident thread (`@nexus ack`, `@nexus update monitoring "…"`),
where the incident number can be left out."""

NEEDS_INCIDENT = {"status", "ack", "resolve", "escalate", "timeline", "review"}
MAX_UPDATE_TEXT = 1000
_NUMBER = re.compile(r"^#?(\d{1,9})$")

ROLE_ALIASES: dict[str, str] = {
    **{role: role for role in ASSIGNABLE_ROLES},
    "ic": "commander",
    "incident-commander": "commander",
    "tl": "tech-lead",
    "tech": "tech-lead",
    "technical-lead": "tech-lead",
    "communications": "comms",
}
_ROLE_USAGE = "usage: `/incident role <commander|tech-lead|comms> <@user> [N]`"
# Slack sends a mention escaped: `<@U0123ABC>` or `<@U0123ABC|name>` for a user
# (W… on Enterprise Grid), `<!subteam^S0123|@group>` for a user group. The label
# after `|` is display text only; we keep the ID, which is what never changes.
_ID_BODY = r"[A-Z0-9]{2,30}"
_USER_MENTION = re.compile(rf"^<@(?P<id>[UW]{_ID_BODY})(?:\|[^<>|\x00-\x1f]{{0,80}})?>$")
_GROUP_MENTION = re.compile(rf"^<!subteam\^(?P<id>S{_ID_BODY})(?:\|[^<>|\x00-\x1f]{{0,80}})?>$")
_BARE_ID = re.compile(rf"^(?P<id>[UWS]{_ID_BODY})$")

# Quoted text, then optionally the incident number (bare N is unambiguous after a quote).
# Text with quotes inside (`"a" and "b"`) is taken as written, quotes and all.
_QUOTED = re.compile(r"^[\"“](?P<body>[^\"“”]*)[\"”](?:\s+(?P<number>#?\d+|#))?$")
# After unquoted text only `#N` is the incident number ("back under 5" keeps its 5);
# a lone `#` is a number forgotten, not text.
_TRAILING_NUMBER = re.compile(r"^#\d*$")
# Control characters would reach the status page, email and terminals; the bidi
# overrides and isolates can make a public update read differently than it was
# written ("Trojan Source"). Newlines and tabs are ordinary text.
_FORBIDDEN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SLACK_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))


class CommandError(ValueError):
    """Input that is not a valid command; the message says what is wrong."""


@dataclass(frozen=True)
class IncidentCommand:
    verb: str
    incident: int | None = None
    title: str | None = None
    playbook: str | None = None
    level: int | None = None
    # `role`: the role (commander, tech-lead, comms) and its new holder's Slack ID (U…/W…/S…).
    role: str | None = None
    assignee: str | None = None
    # `update`: the public status; `update` and `note`: the text as written.
    public_status: str | None = None
    text: str | None = None


class UpdateArguments(NamedTuple):
    """A status update's words, parsed: shared by `/incident update` and the CLI."""

    status: str
    text: str
    incident: int | None


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
    if verb == "component":
        if len(rest) != 2 or not all(re.fullmatch(r"[A-Za-z0-9_-]{1,63}", w) for w in rest):
            raise CommandError(
                "usage: `/incident component <name> <operational|degraded|partial|major|auto>`"
            )
        return IncidentCommand("component", title=rest[0], text=rest[1])
    if verb == "drill":
        if len(rest) != 1 or not re.fullmatch(r"--all|all|list|[a-z0-9][a-z0-9-]{0,62}", rest[0]):
            raise CommandError("usage: `/incident drill <scenario|all|list>`")
        return IncidentCommand("drill", title=rest[0].removeprefix("--"))
    if verb == "playbook":
        if len(rest) != 1 or not re.fullmatch(r"[a-z0-9][a-z0-9-]{1,62}", rest[0]):
            raise CommandError("usage: `/incident playbook <ID>`, e.g. `schema-mismatch`")
        return IncidentCommand("playbook", playbook=rest[0])
    if verb == "role":
        return _role(rest)
    if verb in ("update", "note"):
        return _update_or_note(verb, text)
    if verb in ("acknowledge", "ack"):
        verb = "ack"
    if verb in NEEDS_INCIDENT:
        return _incident_verb(verb, rest)
    raise CommandError(f"unknown command `{_shown(verb)}`")


def parse_update_arguments(words: Sequence[str]) -> UpdateArguments:
    """`STATUS TEXT… [#N]` → (status, text, incident number or None).

    The text may be quoted ("…" or “…”; the quotes are dropped). The incident
    number is a trailing `#N`, or a trailing bare `N` only after quoted text, so
    "error rate back under 5" keeps its 5. Raises CommandError.
    """
    if not words:
        raise CommandError(f"the update needs a status: {_statuses()}")
    status = words[0].lower()
    if status not in PUBLIC_STATUSES:
        raise CommandError(f"unknown status `{_shown(words[0])}`: use {_statuses()}")
    text, number = parse_text_and_number(words[1:])
    return UpdateArguments(status, text, number)


def parse_text_and_number(words: Sequence[str]) -> tuple[str, int | None]:
    """`TEXT… [#N]` (an update's or a note's text) → (text, incident number or None)."""
    joined = " ".join(words).strip()
    quoted = _QUOTED.match(joined)
    if quoted is not None:
        text, number_word = quoted["body"], quoted["number"]
    else:
        last = joined.rsplit(None, 1)[-1] if joined else ""
        number_word = last if _TRAILING_NUMBER.match(last) else None
        text = joined[: len(joined) - len(last)] if number_word else joined
    number = _incident_number(number_word) if number_word is not None else None
    return _checked_text(text), number


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


def _role(rest: list[str]) -> IncidentCommand:
    if not rest:
        raise CommandError(_ROLE_USAGE)
    role = ROLE_ALIASES.get(rest[0].lower())
    if role is None:
        raise CommandError(f"unknown role `{_shown(rest[0])}`; {_ROLE_USAGE}")
    if not rest[1:]:
        raise CommandError(f"who gets the role? {_ROLE_USAGE}")
    # Re-joined so that a label with a space (`<@U1|Ada L>`) stays one mention.
    match = re.fullmatch(r"(?P<who><[^<>]*>|\S+)(?:\s+(?P<number>\S+))?", " ".join(rest[1:]))
    if match is None:
        raise CommandError(_ROLE_USAGE)
    assignee = _slack_id(match["who"])
    number = _incident_number(match["number"]) if match["number"] is not None else None
    return IncidentCommand("role", incident=number, role=role, assignee=assignee)


def _slack_id(word: str) -> str:
    for pattern in (_USER_MENTION, _GROUP_MENTION, _BARE_ID):
        match = pattern.match(word)
        if match is not None:
            return match["id"]
    raise CommandError(
        f"`{_shown(word)}` is not a Slack user: mention them (`@name`) so Slack sends "
        f"their ID, or give the ID (`U0123ABC`); {_ROLE_USAGE}"
    )


def _update_or_note(verb: str, text: str) -> IncidentCommand:
    # Split off only the verb (and the status): the text keeps its own line breaks.
    if verb == "update":
        words = text.split(None, 2)[1:]
        update = parse_update_arguments(_unescaped(words))
        return IncidentCommand(
            "update", incident=update.incident, public_status=update.status, text=update.text
        )
    note, number = parse_text_and_number(_unescaped(text.split(None, 1)[1:]))
    return IncidentCommand("note", incident=number, text=note)


def _unescaped(words: list[str]) -> list[str]:
    """Slack sends `&`, `<`, `>` as HTML entities; the stored text is what was typed."""
    decoded = []
    for word in words:
        for entity, character in _SLACK_ENTITIES:
            word = word.replace(entity, character)
        decoded.append(word)
    return decoded


def _checked_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        raise CommandError('say what changed, e.g. `update identified "bad config pushed"`')
    if len(text) > MAX_UPDATE_TEXT:
        raise CommandError(f"the text is longer than {MAX_UPDATE_TEXT} characters")
    if _FORBIDDEN.search(text):
        raise CommandError("the text contains control characters")
    return text


def _incident_number(word: str) -> int:
    match = _NUMBER.match(word)
    if match is None:
        raise CommandError(f"`{_shown(word)}` is not an incident number (e.g. `#12`)")
    return int(match[1])


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


def _statuses() -> str:
    return ", ".join(PUBLIC_STATUSES)


def _shown(word: str) -> str:
    """Echo user input back safely: short, printable, no backticks to break the code span."""
    return "".join(c if c.isprintable() and c != "`" else "?" for c in word[:40])
