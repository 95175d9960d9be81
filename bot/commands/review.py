"""`nexus-bot review ID`: an incident's post-incident review, as Markdown on stdout.

The same draft the bot files as a GitHub issue, for installations without
GitHub credentials and for scripts (`nexus-bot review 42 > review-42.md`).
Read-only: it writes nothing but the migrations a one-shot command applies.
"""

from __future__ import annotations

import sys

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.commands.database import migrated_database
from bot.domain.playbooks import load_playbooks
from bot.reviews.draft import draft_review, slack_thread_url
from bot.reviews.facts import load_review_facts
from bot.settings import Settings
from bot.store.db import READ_ONLY_OPTIONS

EXIT_UNKNOWN = 1
# Like `incidents`: the command could not do its job at all, and a script must
# not take an empty stdout for a review.
EXIT_UNAVAILABLE = 2


def run_review(settings: Settings, number: int) -> int:
    # The playbook files give the review its "procedures to update" link; a
    # broken file elsewhere must not stop the review (validate reports it).
    playbooks = load_playbooks([settings.nexus_playbooks], settings.allowed_targets)
    try:
        with migrated_database(settings) as engine:
            reader = engine.execution_options(**READ_ONLY_OPTIONS)
            # One read transaction: the incident, its timeline and alerts agree.
            with Session(reader) as session, session.begin():
                facts = load_review_facts(session, number, playbooks)
    except sa.exc.SQLAlchemyError as exc:
        print(f"error: database unavailable: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if facts is None:
        print(f"error: there is no incident #{number}", file=sys.stderr)
        return EXIT_UNKNOWN
    thread = slack_thread_url(facts.incident.slack_channel, facts.incident.slack_root_ts)
    sys.stdout.write(draft_review(facts, thread))
    return 0
