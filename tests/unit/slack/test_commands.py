"""The pure `/incident` parser: every verb, and the hostile input Slack may pass on."""

from __future__ import annotations

import pytest

from bot.communication import ASSIGNABLE_ROLES, PUBLIC_STATUSES
from bot.slack.commands import (
    HELP,
    CommandError,
    IncidentCommand,
    UpdateArguments,
    parse_incident_command,
    parse_text_and_number,
    parse_update_arguments,
)

# -- the verbs that were there before: unchanged ----------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", IncidentCommand("help")),
        ("  help ", IncidentCommand("help")),
        ("--help", IncidentCommand("help")),
        ("list", IncidentCommand("list")),
        ("ack 12", IncidentCommand("ack", incident=12)),
        ("acknowledge #12", IncidentCommand("ack", incident=12)),
        ("resolve", IncidentCommand("resolve")),
        ("status 7", IncidentCommand("status", incident=7)),
        ("timeline #3", IncidentCommand("timeline", incident=3)),
        ("escalate 4 --to 3", IncidentCommand("escalate", incident=4, level=3)),
        ("playbook schema-mismatch", IncidentCommand("playbook", playbook="schema-mismatch")),
        (
            "declare can't sync --playbook configuration-drift",
            IncidentCommand("declare", title="can't sync", playbook="configuration-drift"),
        ),
    ],
)
def test_existing_verbs_parse_as_before(text: str, expected: IncidentCommand) -> None:
    assert parse_incident_command(text) == expected


@pytest.mark.parametrize(
    "text", ["list 3", "ack twelve", "ack 1 2", "escalate 1 --to 9", "declare", "frobnicate"]
)
def test_existing_verbs_still_refuse_bad_input(text: str) -> None:
    with pytest.raises(CommandError):
        parse_incident_command(text)


# -- role ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "role", "assignee", "incident"),
    [
        ("role commander <@U0123ABC>", "commander", "U0123ABC", None),
        ("role ic <@U0123ABC|ada> 12", "commander", "U0123ABC", 12),
        ("role Incident-Commander <@W0123ABC|ada.l> #12", "commander", "W0123ABC", 12),
        ("role tech-lead <@U1AB|Ada Lovelace> #9", "tech-lead", "U1AB", 9),
        ("role tl U0123ABC", "tech-lead", "U0123ABC", None),
        ("role tech U0123ABC", "tech-lead", "U0123ABC", None),
        ("role TECHNICAL-LEAD U0123ABC 3", "tech-lead", "U0123ABC", 3),
        ("role comms <!subteam^S0123ABC|@product>", "comms", "S0123ABC", None),
        ("role communications <!subteam^S0123ABC> 5", "comms", "S0123ABC", 5),
    ],
)
def test_role_takes_a_mention_a_group_or_an_id(
    text: str, role: str, assignee: str, incident: int | None
) -> None:
    parsed = parse_incident_command(text)
    assert parsed == IncidentCommand("role", incident=incident, role=role, assignee=assignee)


def test_every_assignable_role_is_accepted_by_its_own_name() -> None:
    for role in ASSIGNABLE_ROLES:
        assert parse_incident_command(f"role {role} <@U0123ABC>").role == role


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("role", "usage"),
        ("role commander", "who gets the role"),
        ("role stakeholders <@U0123ABC>", "unknown role"),
        ("role king <@U0123ABC>", "unknown role"),
        ("role commander @ada", "not a Slack user"),
        ("role commander ada", "not a Slack user"),
        ("role commander <@u0123abc>", "not a Slack user"),
        ("role commander <@U0123ABC", "not a Slack user"),
        ("role commander <@>", "not a Slack user"),
        ("role commander <@U1>", "not a Slack user"),  # too short to be an ID
        ("role commander <!here>", "not a Slack user"),
        ("role commander <!channel>", "not a Slack user"),
        ("role commander <#C0123ABC|general>", "not a Slack user"),
        ("role commander <!subteam^U0123ABC|@x>", "not a Slack user"),
        ("role commander <@S0123ABC>", "not a Slack user"),
        ("role commander <@U0123ABC|a|b>", "not a Slack user"),
        ("role commander <@U0123ABC><@U0456DEF>", "not a Slack user"),
        ("role commander <@U" + "A" * 200 + ">", "not a Slack user"),
        ("role commander <@U0123ABC> #", "not an incident number"),
        ("role commander <@U0123ABC> #0x10", "not an incident number"),
        ("role commander <@U0123ABC> 1234567890", "not an incident number"),
        ("role commander <@U0123ABC> 12 13", "usage"),
    ],
)
def test_role_refuses_what_is_not_a_role_a_person_or_a_number(text: str, says: str) -> None:
    with pytest.raises(CommandError, match=says):
        parse_incident_command(text)


def test_an_error_echoes_hostile_input_harmlessly() -> None:
    with pytest.raises(CommandError) as caught:
        parse_incident_command("role `\x1b[31mking` <@U0123ABC>")
    message = str(caught.value)
    assert "\x1b" not in message and "`\x1b" not in message
    assert "?" in message


# -- update -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "status", "said", "incident"),
    [
        ("update identified bad config pushed", "identified", "bad config pushed", None),
        ("update Monitoring back under 5", "monitoring", "back under 5", None),
        ("update monitoring back under 5 #12", "monitoring", "back under 5", 12),
        ('update resolved "all clear" 12', "resolved", "all clear", 12),
        ('update resolved "all clear" #12', "resolved", "all clear", 12),
        ("update investigating “we are looking” 7", "investigating", "we are looking", 7),
        ('update identified "the cache" layer 5', "identified", '"the cache" layer 5', None),
        ('update identified "a" and "b"', "identified", '"a" and "b"', None),
        ('update identified "unclosed quote 5', "identified", '"unclosed quote 5', None),
        ("update identified see #general-ops", "identified", "see #general-ops", None),
        ("update identified a &amp; b &lt;3", "identified", "a & b <3", None),
        ("update identified &amp;lt;", "identified", "&lt;", None),
    ],
)
def test_update_parses_status_text_and_number(
    text: str, status: str, said: str, incident: int | None
) -> None:
    assert parse_incident_command(text) == IncidentCommand(
        "update", incident=incident, public_status=status, text=said
    )


def test_update_text_keeps_its_line_breaks() -> None:
    parsed = parse_incident_command("update identified line one\r\n  line two\n#4")
    assert parsed.text == "line one\n  line two" and parsed.incident == 4


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("update", "needs a status"),
        ("update fixed it", "unknown status"),
        ("update identified", "say what changed"),
        ("update identified #12", "say what changed"),
        ('update identified ""', "say what changed"),
        ('update identified "   " 3', "say what changed"),
        ("update identified it broke #", "not an incident number"),
        ("update identified it broke #1234567890", "not an incident number"),
        ('update identified "it broke" 1234567890', "not an incident number"),
        ('update identified "it broke" #', "not an incident number"),
        ("update identified " + "x" * 1001, "longer than 1000"),
        ("update identified " + "x" * 3000, "too long"),
        ("update identified bell\x07 here", "control characters"),
        ("update identified nul\x00 here", "control characters"),
        ("update identified \x1b[2Jcleared", "control characters"),
        ("update identified c1\x85 here", "control characters"),
        ("update identified evil\u202etxt.exe", "control characters"),
    ],
)
def test_update_refuses_missing_oversized_and_hostile_text(text: str, says: str) -> None:
    with pytest.raises(CommandError, match=says):
        parse_incident_command(text)


def test_update_text_of_exactly_the_limit_is_fine() -> None:
    assert parse_incident_command("update identified " + "x" * 1000).text == "x" * 1000


def test_every_public_status_is_accepted() -> None:
    for status in PUBLIC_STATUSES:
        assert parse_incident_command(f"update {status} ok").public_status == status


# -- the shared rules, as the command line calls them -----------------------


def test_parse_update_arguments_takes_argv_words_as_given() -> None:
    # A shell hands the quoted text over as one word with its quotes already gone.
    assert parse_update_arguments(["identified", "error rate back under 5"]) == UpdateArguments(
        "identified", "error rate back under 5", None
    )
    status, text, number = parse_update_arguments(["resolved", "a &amp; b\nsecond line", "#3"])
    assert (status, text, number) == ("resolved", "a &amp; b\nsecond line", 3)


def test_parse_update_arguments_refuses_like_the_slash_command() -> None:
    with pytest.raises(CommandError, match="needs a status"):
        parse_update_arguments([])
    with pytest.raises(CommandError, match="unknown status"):
        parse_update_arguments(["fixed", "it"])
    with pytest.raises(CommandError, match="say what changed"):
        parse_update_arguments(["identified"])


def test_parse_text_and_number_alone() -> None:
    assert parse_text_and_number(['"quoted"', "9"]) == ("quoted", 9)
    assert parse_text_and_number(["plain", "9"]) == ("plain 9", None)


# -- note ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "said", "incident"),
    [
        ("note rolled back by hand", "rolled back by hand", None),
        ("note rolled back at 5", "rolled back at 5", None),
        ("NOTE rolled back #5", "rolled back", 5),
        ('note "rolled back" 5', "rolled back", 5),
    ],
)
def test_note_parses_text_and_number(text: str, said: str, incident: int | None) -> None:
    assert parse_incident_command(text) == IncidentCommand("note", incident=incident, text=said)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("note", "say what changed"),
        ("note #5", "say what changed"),
        ("note x #", "not an incident number"),
        ("note x #99999999999", "not an incident number"),
        ("note \x1b]0;owned\x07", "control characters"),
        ("note " + "y" * 1001, "longer than 1000"),
    ],
)
def test_note_refuses_missing_and_hostile_text(text: str, says: str) -> None:
    with pytest.raises(CommandError, match=says):
        parse_incident_command(text)


# -- help ---------------------------------------------------------------------


def test_help_names_the_new_commands_and_mentions_in_threads() -> None:
    for words in ("/incident role", "/incident update", "/incident note", "@nexus"):
        assert words in HELP
    for status in PUBLIC_STATUSES:
        assert status in HELP
