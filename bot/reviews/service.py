"""`/incident review [N]`: ask for the post-incident review (filed once as a GitHub issue).

A warning or critical incident's review is filed when it resolves; this use case
files it on demand, or says where it is. A recovery drill gets no review: its
scorecard is filed when it ends (this says where, once it is). Filing is
find-or-create in the GitHub output (one issue per incident, however often it
is asked for); without GitHub the draft is printed by `nexus-bot review N`.
"""

from __future__ import annotations

from bot.incidents.service import Outcome
from bot.store.models import Incident
from bot.store.repository import Repository
from bot.timeline.events import Kind
from bot.timeline.recorder import Timeline, read_timeline


class ReviewService:
    def __init__(self, repo: Repository, timeline: Timeline, publishes_to: str | None) -> None:
        self.repo = repo
        self.timeline = timeline
        # The GitHub repository reviews are filed in, or None (no repo or no credentials).
        self.publishes_to = publishes_to

    def request(self, number: int, actor: str) -> Outcome:
        with self.repo.session() as s:
            incident = s.get(Incident, number)
            if incident is None:
                return Outcome(message=f"There is no incident #{number}.")
            drill = incident.drill_run_id is not None
            linked = [e for e in read_timeline(s, number) if e.kind == Kind.REVIEW_LINKED]
            if linked:
                url = linked[-1].fact("url")
                what = "scorecard of drill" if drill else "review of"
                return Outcome(incidents=[number], message=f"The {what} #{number}: {url}")
            if drill:
                # A drill gets no post-incident review: its scorecard is filed when it ends.
                return Outcome(
                    incidents=[number],
                    message=f"#{number} is a DRILL: its scorecard is filed when the drill ends.",
                )
            if self.publishes_to is None:
                return Outcome(
                    incidents=[number],
                    message=(
                        f"`nexus-bot review {number}` prints the draft. To file reviews as "
                        "GitHub issues, set `review.repo` and a GitHub token."
                    ),
                )
            self.timeline.record(
                s, number, Kind.REVIEW_REQUESTED, actor, requested_by=actor, published=True
            )
        return Outcome(
            incidents=[number],
            changed=True,
            message=(
                f"Filing the review of #{number} in {self.publishes_to}; "
                "its link will be in the thread."
            ),
        )
