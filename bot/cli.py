"""`nexus-bot` — the command line.

    nexus-bot serve                      run the bot (HTTP on $PORT)
    nexus-bot validate [PATH…]           check config and playbooks (exit 1 on errors)
    nexus-bot simulate FILE [--json]     what the bot would do with an alert payload
    nexus-bot audit verify               check the audit log's hash chain
    nexus-bot db upgrade                 apply database migrations and exit
    nexus-bot inbox status               accepted webhooks waiting or failed
    nexus-bot inbox retry ID… | --all    put failed inbox rows back in line
    nexus-bot incidents [--open] [--json] [--limit N]
                                         incidents, newest first (default 50)
    nexus-bot update ID STATUS TEXT…     post a public status update
    nexus-bot review ID                  the incident's post-incident review (Markdown)
    nexus-bot report [--since 30d] [--json]
                                         incident figures per playbook and severity
    nexus-bot drill list [--json]        drill scenarios, schedules, next and last runs
    nexus-bot drill run SCENARIO|--all [--wait] [--json]
                                         start recovery drills (rehearsal mode)
    nexus-bot drill history [--json] [--limit N]
                                         past drills and missed scheduled ones
    nexus-bot deploy rbac [--namespace NS] [--service-account NAME] [--check FILE]
                                         least-privilege Kubernetes RBAC (YAML)

Exit codes: 0 fine, 1 the input or the data is wrong (validation errors, a
malformed payload, a broken audit chain), 2 the configuration or the command
line is wrong.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from bot.commands.deploy import add_deploy_parser
from bot.communication import PUBLIC_STATUSES
from bot.settings import Settings, SettingsError, load_settings, resolve_paths

EXIT_OK, EXIT_INVALID, EXIT_CONFIG = 0, 1, 2
INCIDENTS_DEFAULT_LIMIT, INCIDENTS_MAX_LIMIT = 50, 10_000
REPORT_DEFAULT_SINCE, REPORT_MAX_DAYS = "30d", 3650
_REPORT_SINCE = re.compile(r"([0-9]{1,7})([mhd])")
_REPORT_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_CONFIG, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nexus-bot", description="NEXUS incident bot")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.add_parser("serve", help="run the bot: HTTP server, Slack, scheduler")
    validate = commands.add_parser("validate", help="validate config and playbooks")
    validate.add_argument("paths", nargs="*", type=Path, help="playbook files or folders")
    simulate = commands.add_parser("simulate", help="show what the bot would do with a payload")
    simulate.add_argument("file", help="JSON payload file, or - for standard input")
    simulate.add_argument("--source", choices=["alertmanager", "pagerduty", "generic"])
    simulate.add_argument("--json", action="store_true", help="print a JSON array of incidents")
    audit = commands.add_parser("audit", help="audit trail tools")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, parser_class=_Parser)
    audit_commands.add_parser("verify", help="check the audit log's hash chain")
    db = commands.add_parser("db", help="database tools")
    db_commands = db.add_subparsers(dest="db_command", required=True, parser_class=_Parser)
    db_commands.add_parser("upgrade", help="apply migrations and exit")
    inbox = commands.add_parser("inbox", help="accepted webhook bodies not yet applied")
    inbox_commands = inbox.add_subparsers(dest="inbox_command", required=True, parser_class=_Parser)
    inbox_commands.add_parser("status", help="pending and failed counts, failed rows")
    retry = inbox_commands.add_parser("retry", help="requeue failed rows")
    retry.add_argument("ids", nargs="*", type=inbox_row_id, help="failed row ids")
    retry.add_argument("--all", action="store_true", dest="all_failed", help="every failed row")
    incidents = commands.add_parser("incidents", help="list incidents, newest first")
    incidents.add_argument("--open", action="store_true", dest="open_only", help="unresolved only")
    incidents.add_argument("--json", action="store_true", help="print a JSON array of incidents")
    incidents.add_argument(
        "--limit",
        type=incident_limit,
        metavar="N",
        default=INCIDENTS_DEFAULT_LIMIT,
        help=f"at most N, 1 to {INCIDENTS_MAX_LIMIT} (default {INCIDENTS_DEFAULT_LIMIT})",
    )
    report = commands.add_parser(
        "report", help="incident figures (MTTA, MTTR, remediations) per playbook and severity"
    )
    since_help = (
        f"incidents created in the last DURATION: 90m, 12h, 30d (default {REPORT_DEFAULT_SINCE})"
    )
    report.add_argument(
        "--since",
        type=report_since,
        metavar="DURATION",
        default=report_since(REPORT_DEFAULT_SINCE),
        help=since_help,
    )
    report.add_argument("--json", action="store_true", help="print the figures as JSON")
    update = commands.add_parser(
        "update", help="post a public status update (thread, stakeholder email, status page)"
    )
    update.add_argument("incident", type=incident_number, metavar="ID", help="incident number")
    update.add_argument("status", metavar="STATUS", help=", ".join(PUBLIC_STATUSES))
    update.add_argument("text", nargs="+", metavar="TEXT", help="the update, as customers read it")
    review = commands.add_parser(
        "review", help="print an incident's post-incident review as Markdown"
    )
    review.add_argument("incident", type=incident_number, metavar="ID", help="incident number")
    _add_drill_parser(commands)
    add_deploy_parser(commands)
    return parser


def _add_drill_parser(commands: argparse._SubParsersAction[_Parser]) -> None:
    drill = commands.add_parser("drill", help="recovery drills: rehearse the playbooks")
    drill_commands = drill.add_subparsers(dest="drill_command", required=True, parser_class=_Parser)
    listing = drill_commands.add_parser("list", help="scenarios, schedules, next and last runs")
    listing.add_argument("--json", action="store_true", help="print JSON")
    run = drill_commands.add_parser("run", help="start drills now (nothing real changes)")
    which = run.add_mutually_exclusive_group(required=True)
    which.add_argument("scenario", nargs="?", type=scenario_id, help="a scenario id")
    which.add_argument("--all", action="store_true", dest="all_scenarios", help="every scenario")
    run.add_argument(
        "--wait", action="store_true", help="wait for the scorecards; exit 1 if a step would fail"
    )
    run.add_argument("--json", action="store_true", help="print JSON")
    history = drill_commands.add_parser("history", help="past drills and missed scheduled ones")
    history.add_argument("--json", action="store_true", help="print JSON")
    history.add_argument(
        "--limit",
        type=incident_limit,
        metavar="N",
        default=INCIDENTS_DEFAULT_LIMIT,
        help=f"at most N runs (default {INCIDENTS_DEFAULT_LIMIT})",
    )


def scenario_id(text: str) -> str:
    """A drill scenario id: lower-case letters, digits and dashes."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", text):
        raise argparse.ArgumentTypeError(
            f"expected a scenario id like ai-malfunction, got {text[:40]!r}"
        )
    return text


def incident_number(text: str) -> int:
    """An incident number: `12` or `#12`, 1 to 9 digits."""
    digits = text.removeprefix("#")
    if not (digits.isascii() and digits.isdecimal() and 1 <= len(digits) <= 9 and int(digits)):
        raise argparse.ArgumentTypeError(f"expected an incident number, got {text[:20]!r}")
    return int(digits)


def inbox_row_id(text: str) -> int:
    value = int(text.lstrip("#"))
    if value <= 0:
        raise ValueError(text)
    return value


def incident_limit(text: str) -> int:
    """`--limit`: a whole number from 1 to INCIDENTS_MAX_LIMIT (else argparse exits 2)."""
    value = int(text) if text.isascii() and text.isdecimal() and len(text) <= 6 else 0
    if not 1 <= value <= INCIDENTS_MAX_LIMIT:
        raise argparse.ArgumentTypeError(
            f"expected a whole number from 1 to {INCIDENTS_MAX_LIMIT}, got {text[:20]!r}"
        )
    return value


def report_since(text: str) -> timedelta:
    """`--since`: minutes, hours or days (`90m`, `12h`, `30d`), above zero, at most ten years."""
    match = _REPORT_SINCE.fullmatch(text)
    window = timedelta(seconds=int(match[1]) * _REPORT_UNIT_SECONDS[match[2]]) if match else None
    if window is None or not timedelta(0) < window <= timedelta(days=REPORT_MAX_DAYS):
        raise argparse.ArgumentTypeError(
            f"expected a duration like 90m, 12h or 30d (at most {REPORT_MAX_DAYS}d), "
            f"got {text[:20]!r}"
        )
    return window


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "validate":
        from bot.commands.validate import run_validate

        return run_validate(args.paths)
    settings = _settings_or_exit()
    if args.command != "serve":
        # One-shot commands: stdout is their answer (JSON, Markdown); log lines go
        # to stderr, warnings and worse only, redacted like the server's.
        from bot.logging import configure_logging

        configure_logging("warning", secrets=settings.secret_values())
    if args.command == "simulate":
        from bot.commands.simulate import run_simulate

        return run_simulate(settings, args.file, args.source, args.json)
    if args.command == "audit":
        from bot.commands.audit import run_audit_verify

        return run_audit_verify(settings)
    if args.command == "db":
        from bot.commands.audit import run_db_upgrade

        return run_db_upgrade(settings)
    if args.command == "inbox":
        from bot.commands.inbox import run_inbox_retry, run_inbox_status

        if args.inbox_command == "status":
            return run_inbox_status(settings)
        return run_inbox_retry(settings, args.ids, args.all_failed)
    if args.command == "incidents":
        from bot.commands.incidents import run_incidents

        return run_incidents(settings, args.open_only, args.json, args.limit)
    if args.command == "report":
        from bot.commands.report import run_report

        return run_report(settings, args.since, args.json)
    if args.command == "update":
        from bot.commands.update import run_update

        return run_update(settings, args.incident, args.status, args.text)
    if args.command == "review":
        from bot.commands.review import run_review

        return run_review(settings, args.incident)
    if args.command == "drill":
        from bot.commands.drill import drill_history, list_drills, run_drill

        if args.drill_command == "list":
            return list_drills(settings, args.json)
        if args.drill_command == "history":
            return drill_history(settings, args.json, args.limit)
        return run_drill(settings, args.scenario, args.all_scenarios, args.wait, args.json)
    if args.command == "deploy":
        from bot.commands.deploy import run_deploy_rbac

        return run_deploy_rbac(settings, args.namespace, args.service_account, args.check)
    from bot.server import run_server

    # Once, against the directory the bot was started from: git and other
    # helpers later run elsewhere (see resolve_paths). The one-shot commands
    # keep the paths as given, so what they print reads as the user wrote it.
    return run_server(resolve_paths(settings, Path.cwd()))


def _settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


if __name__ == "__main__":
    raise SystemExit(main())
