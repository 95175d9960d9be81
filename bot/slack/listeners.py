"""Bolt listeners: the `/incident` command, root and playbook buttons, @mentions.

Every listener acknowledges first (Slack wants an answer within 3 s) and
then does the work in a worker thread: database calls are synchronous.
Effects are idempotent in the database, so a retried or doubled request
changes nothing twice.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import structlog
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.drills.service import DrillService, UnknownScenario
from bot.incidents.service import IncidentService, Outcome
from bot.remediation.flow import RemediationFlow
from bot.remediation.policy import expand_approvers
from bot.reviews.service import ReviewService
from bot.slack.blocks import (
    ACTION_ACKNOWLEDGE,
    ACTION_RESOLVE,
    escape,
)
from bot.slack.commands import HELP, CommandError, IncidentCommand, parse_incident_command
from bot.slack.outage import UNREACHABLE, DatabaseWatch, is_outage
from bot.slack.payloads import incident_number
from bot.slack.remediation import UserGroups, register_remediation_listeners
from bot.slack.timeline_text import timeline_lines
from bot.store.models import Incident
from bot.timeline.recorder import read_timeline
from bot.web.components import StatusComponents

log = structlog.get_logger("bot.slack")
# The bot's own mention that starts "@nexus ack": only that one goes; `@nexus role comms
# @bob` keeps @bob for the parser.
LEADING_MENTION = re.compile(r"^\s*<@[UWB][A-Z0-9]+(?:\|[^>]*)?>")


def register_listeners(
    app: AsyncApp,
    service: IncidentService,
    flow: RemediationFlow,
    components: StatusComponents,
    reviews: ReviewService,
    watch: DatabaseWatch,
    drills: DrillService | None = None,
) -> None:
    commands = CommandRunner(service, reviews)
    groups = UserGroups()

    async def start_drill(parsed: IncidentCommand, user: str, client: AsyncWebClient) -> str:
        """Approvers, drill participants and the Incident Commander may start drills."""
        if drills is None:
            return "Drills are not available here."
        settings = service.settings
        listed = [
            *settings.approvals.approvers,
            *settings.nexus_approvers,
            *settings.drills.participants,
            *settings.roles.commander.slack,
        ]
        members = await groups.members(client, [g for g in listed if g.startswith("S")])
        if user not in expand_approvers(listed, members):
            return (
                "Only approvers, drill participants (`drills.participants`) or the Incident "
                "Commander may start a drill."
            )
        return await asyncio.to_thread(drill_command, drills, parsed.title or "", user)

    async def set_component(parsed: IncidentCommand, user: str, client: AsyncWebClient) -> str:
        """The Communications role (and the Incident Commander) set components by hand."""
        roles = service.settings.roles
        listed = [*roles.comms.slack, *roles.commander.slack]
        members = await groups.members(client, [g for g in listed if g.startswith("S")])
        if user not in expand_approvers(listed, members):
            return (
                "Only the Communications role (or the Incident Commander) in `roles:` "
                "may set status page components."
            )
        return await asyncio.to_thread(
            components.set_state, parsed.title or "", parsed.text or "", user
        )

    @app.command("/incident")
    async def incident_command(
        ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        structlog.contextvars.bind_contextvars(user=command.get("user_id"), command="/incident")
        try:
            parsed = parse_incident_command(command.get("text", ""))
        except CommandError as exc:
            await ack(text=f":warning: {exc}\n\n{HELP}", response_type="ephemeral")
            return
        root = command.get("thread_ts")  # not sent by Slack today; honoured if it ever is
        if parsed.verb in ("drill", "component"):
            starting = (
                "Starting the drill…" if parsed.verb == "drill" else "Updating the status page…"
            )
            await ack(text=starting, response_type="ephemeral")
            work = start_drill if parsed.verb == "drill" else set_component
            try:
                answer = await work(parsed, command["user_id"], client)
            except Exception as exc:  # acknowledged: nothing may escape (see declare)
                if not is_outage(exc):
                    log.exception(f"{parsed.verb}_failed")
                    answer = f":warning: The `{parsed.verb}` command failed; the error is logged."
                else:
                    watch.failed(exc)
                    answer = UNREACHABLE
            await respond(text=answer, response_type="ephemeral", replace_original=False)
            return
        if parsed.verb == "declare":
            await ack(text=f"Declaring *{escape(parsed.title or '')}*…", response_type="ephemeral")
            # Acknowledged: nothing may escape from here on. Bolt (1.30) clears an
            # acknowledgement when the listener fails before its ~10 ms poll saw it,
            # and the ack would never reach Slack (a database that refuses at once).
            try:
                answer = await asyncio.to_thread(
                    commands.run, parsed, command["user_id"], command.get("channel_id"), root
                )
            except Exception as exc:
                if not is_outage(exc):
                    log.exception("declare_failed")
                    answer = ":warning: Declaring failed; the error is logged."
                else:
                    watch.failed(exc)
                    answer = UNREACHABLE
            await respond(text=answer, response_type="ephemeral", replace_original=False)
            return
        answer = await asyncio.to_thread(
            commands.run, parsed, command["user_id"], command.get("channel_id"), root
        )
        await ack(text=answer, response_type="ephemeral")

    @app.event("app_mention")
    async def mentioned(event: dict[str, Any], client: AsyncWebClient) -> None:
        text = LEADING_MENTION.sub("", event.get("text", ""), count=1).strip()
        user, channel = event.get("user", ""), event.get("channel", "")
        try:
            parsed = parse_incident_command(text)
        except CommandError as exc:
            answer = f":warning: {exc}\n\n{HELP}"
        else:
            if parsed.verb == "component":
                answer = await set_component(parsed, user, client)
            elif parsed.verb == "drill":
                answer = await start_drill(parsed, user, client)
            else:
                answer = await asyncio.to_thread(
                    commands.run, parsed, user, channel, event.get("thread_ts")
                )
        await client.chat_postEphemeral(
            channel=channel, user=user, text=answer, thread_ts=event.get("thread_ts")
        )

    @app.action(ACTION_ACKNOWLEDGE)
    async def acknowledge(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        number = incident_number(body)
        if number is not None:
            outcome = await asyncio.to_thread(service.acknowledge, number, body["user"]["id"])
            await _tell_if_unchanged(respond, outcome)

    @app.action(ACTION_RESOLVE)
    async def resolve(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        number = incident_number(body)
        if number is not None:
            outcome = await asyncio.to_thread(service.resolve, number, body["user"]["id"])
            await _tell_if_unchanged(respond, outcome)

    register_remediation_listeners(app, flow)


async def _tell_if_unchanged(respond: AsyncRespond, outcome: Outcome) -> None:
    if not outcome.changed:
        await respond(text=outcome.message, response_type="ephemeral", replace_original=False)


def drill_command(drills: DrillService, what: str, user: str) -> str:
    """`/incident drill SCENARIO|all|list`: start drills (or list the scenarios)."""
    scenarios = list(drills.scenarios)
    if what == "list":
        lines = [
            f"• `{sid}` — {s.title} (playbook `{s.playbook}`)"
            for sid, s in drills.scenarios.items()
        ]
        return "*Drill scenarios*\n" + "\n".join(lines)
    chosen = scenarios if what == "all" else [what]
    try:
        started = drills.start(chosen, "slack", user)
    except UnknownScenario as exc:
        return f":warning: {exc}"
    drills.audit_started(started, "slack", user)
    runs = ", ".join(f"{sid} (run {run_id})" for run_id, sid in started.runs)
    return (
        f"Drill started: {runs}. Its thread opens in the drill channel; "
        "nothing real changes (rehearsal mode)."
    )


class CommandRunner:
    """Runs a parsed `/incident` command and returns the text to show the user."""

    def __init__(self, service: IncidentService, reviews: ReviewService) -> None:
        self.service = service
        self.reviews = reviews

    def run(
        self, command: IncidentCommand, user: str, channel: str | None, thread_ts: str | None
    ) -> str:
        repo = self.service.repo
        if command.verb == "help":
            return HELP
        if command.verb == "list":
            return self._list()
        if command.verb == "playbook":
            return self._playbook(command.playbook or "")
        if command.verb == "declare":
            outcome = self.service.declare(command.title or "", user, command.playbook)
            if not outcome.incidents:
                return outcome.message
            return f"Opened incident #{outcome.incidents[0]}: {escape(command.title or '')}"
        number = command.incident
        if number is None and channel and thread_ts:
            incident = repo.get_incident_by_root(channel, thread_ts)
            number = incident.id if incident else None
        if number is None:
            return (
                f"Which incident? Use `/incident {command.verb} <number>` (see `/incident list`)."
            )
        incident = repo.get_incident(number)
        if incident is None:
            return f"There is no incident #{number}."
        if command.verb == "status":
            return self._status(incident)
        if command.verb == "ack":
            return self.service.acknowledge(number, user).message
        if command.verb == "resolve":
            return self.service.resolve(number, user).message
        if command.verb == "escalate":
            return self.service.escalate(number, user, command.level).message
        if command.verb == "role":
            holders = [command.assignee] if command.assignee else []
            return self.service.assign_role(number, command.role or "", holders, user).message
        if command.verb == "update":
            return self.service.post_update(
                number, command.public_status or "", command.text or "", user
            ).message
        if command.verb == "note":
            return self.service.add_note(number, command.text or "", user).message
        if command.verb == "review":
            return self.reviews.request(number, user).message
        return self._timeline(incident)

    def _list(self) -> str:
        incidents = self.service.repo.list_open_incidents(limit=20)
        if not incidents:
            return "No open incidents."
        lines = [
            f"• #{i.id} *{i.severity}* {i.status} — {escape(i.title)} "
            f"(`{i.playbook_id}`, level {i.escalation_level})"
            for i in incidents
        ]
        return "*Open incidents*\n" + "\n".join(lines)

    def _status(self, incident: Incident) -> str:
        counts = self.service.repo.alert_counts(incident.id)
        ack = (
            f", acknowledged by {escape(incident.acknowledged_by or '')}"
            if incident.acknowledged_by
            else ""
        )
        return (
            f"*#{incident.id} {escape(incident.title)}*\n"
            f"{incident.severity}, {incident.status}{ack}; "
            f"escalation level {incident.escalation_level}; "
            f"playbook `{incident.playbook_id}`; alerts {counts.get('firing', 0)} firing, "
            f"{counts.get('resolved', 0)} resolved; opened {incident.created_at:%Y-%m-%d %H:%M} UTC"
        )

    def _timeline(self, incident: Incident) -> str:
        with self.service.repo.session() as s:
            events = read_timeline(s, incident.id, limit=40)
        drill = incident.drill_run_id is not None
        lines = [f"• {line}" for line in timeline_lines(events, drill=drill)]
        return f"*Timeline of #{incident.id}*\n" + ("\n".join(lines) or "nothing yet")

    def _playbook(self, playbook_id: str) -> str:
        playbook = self.service.playbooks.get(playbook_id)
        if playbook is None:
            known = ", ".join(f"`{p.id}`" for p in self.service.playbooks.playbooks)
            return f"Unknown playbook `{escape(playbook_id)}`. Known: {known}"
        steps = "\n".join(
            f"{n}. {escape(s.title)}"
            + (f" — `{s.action}`" if s.action else f" — `{escape(s.manual or '')}`")
            for n, s in enumerate(playbook.rollback, 1)
        )
        return (
            f"*{escape(playbook.title)}* (`{playbook.id}`): {playbook.risk_level.value} risk, "
            f"{playbook.procedure_steps.title.lower()}\n{escape(playbook.description)}\n{steps}"
        )
