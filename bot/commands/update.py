"""`nexus-bot update ID STATUS TEXT`: a public status update without Slack.

For scripts and for installations without Slack. The update is the same
timeline event a `/incident update` records, with the same outputs: the Slack
thread (when a channel is configured), the stakeholders' email, the status
page. A running bot delivers what this command enqueues; `resolved` also
resolves the incident.
"""

from __future__ import annotations

import sys

import sqlalchemy as sa

from bot.commands.database import login_name, migrated_database, say_unavailable
from bot.core import build_core
from bot.domain.playbooks import load_playbooks
from bot.settings import Settings
from bot.slack.commands import CommandError, parse_update_arguments

EXIT_REFUSED = 1
EXIT_UNAVAILABLE = 2


def run_update(settings: Settings, number: int, status: str, words: list[str]) -> int:
    try:
        parsed = parse_update_arguments([status, *words])
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    if parsed.incident is not None and parsed.incident != number:
        print(f"error: the text names incident #{parsed.incident}, not #{number}", file=sys.stderr)
        return EXIT_REFUSED
    playbooks = load_playbooks([settings.nexus_playbooks], settings.allowed_targets)
    actor = f"cli:{login_name()}"
    try:
        with migrated_database(settings) as engine:
            core = build_core(settings, engine, playbooks)
            outcome = core.incidents.post_update(
                number, parsed.status, parsed.text, actor, via="cli"
            )
    except sa.exc.SQLAlchemyError as exc:
        say_unavailable(exc)
        return EXIT_UNAVAILABLE
    if not outcome.changed:
        print(f"error: {outcome.message}", file=sys.stderr)
        return EXIT_REFUSED
    print(outcome.message)
    return 0
