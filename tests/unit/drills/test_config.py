"""The `drills:` section: defaults, the shipped config, cron reading and every refusal.

`nexus-bot validate` runs as a real process on a written config for the checks
that need the playbooks (unknown playbook, unknown step, manual step).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zoneinfo
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from bot.drills.config import DrillSchedule, DrillsConfig, cron_trigger, default_scenarios
from bot.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[3]
FIVE = ["schema-mismatch", "build-failure", "ai-malfunction", "data-loss", "performance-issues"]
UTC_ZONE = zoneinfo.ZoneInfo("UTC")
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def fires(expression: str, start: datetime, count: int, zone: zoneinfo.ZoneInfo) -> list[datetime]:
    """The next `count` fire times after `start`, as APScheduler computes them."""
    trigger = cron_trigger(expression, zone)
    found: list[datetime] = []
    previous: datetime | None = None
    now = start
    for _ in range(count):
        upcoming = trigger.get_next_fire_time(previous, now)
        assert upcoming is not None
        found.append(upcoming)
        previous, now = upcoming, upcoming + timedelta(seconds=1)
    return found


def refusal(**drills: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        DrillsConfig.model_validate(drills)
    return str(caught.value)


# -- defaults and the shipped config ------------------------------------------------


def test_defaults_are_three_schedules_and_the_five_scenarios() -> None:
    config = DrillsConfig()
    assert [(s.id, s.cron, s.run) for s in config.schedules] == [
        ("weekly", "0 10 * * TUE", "rotation"),
        ("monthly", "0 10 1-7 * WED", "all"),
        ("quarterly", "0 10 1-7 1,4,7,10 MON", "review"),
    ]
    assert list(config.scenarios) == FIVE
    assert config.enabled is True and config.timezone == "UTC"
    assert config.timeout == timedelta(minutes=30)
    assert config.escalation == [timedelta(minutes=m) for m in (2, 4, 6)]
    assert config.participants == [] and config.channel is None
    # Every synthetic alert is marked as a drill in its title.
    assert all("(drill)" in s.alert.title for s in config.scenarios.values())
    assert default_scenarios()["ai-malfunction"].steps == ["close-pr", "scale-to-zero"]


def test_the_shipped_config_drills_section_equals_the_code_defaults() -> None:
    shipped = yaml.safe_load((REPO_ROOT / "config" / "nexus.yaml").read_text())["drills"]
    assert DrillsConfig.model_validate(shipped) == DrillsConfig()


def test_settings_read_the_drills_section_from_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "nexus.yaml"
    path.write_text(
        yaml.safe_dump({"drills": {"timezone": "Europe/Berlin", "participants": ["U0CAROL"]}})
    )
    monkeypatch.setenv("NEXUS_CONFIG", str(path))
    settings = Settings()
    assert settings.drills.timezone == "Europe/Berlin"
    assert settings.drills.participants == ["U0CAROL"]
    assert list(settings.drills.scenarios) == FIVE  # the rest stays the default


# -- cron --------------------------------------------------------------------------


def test_five_and_six_fields_are_accepted() -> None:
    start = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # a Monday
    assert fires("0 10 * * TUE", start, 1, UTC_ZONE) == [datetime(2026, 3, 3, 10, 0, tzinfo=UTC)]
    # Six fields: seconds first.
    assert fires("30 0 10 * * TUE", start, 1, UTC_ZONE) == [
        datetime(2026, 3, 3, 10, 0, 30, tzinfo=UTC)
    ]
    assert DrillSchedule(id="x", cron="30 0 10 * * TUE").cron == "30 0 10 * * TUE"


@pytest.mark.parametrize("weekday", ["2", "1-5", "MON,3", "0"])
def test_numeric_weekdays_are_refused_with_the_reason(weekday: str) -> None:
    expression = f"0 10 * * {weekday}"
    with pytest.raises(ValueError, match="write weekdays as names") as caught:
        cron_trigger(expression, UTC_ZONE)
    assert "cron and APScheduler number them differently" in str(caught.value)
    with pytest.raises(ValidationError, match="write weekdays as names"):
        DrillSchedule(id="weekly", cron=expression)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "expected 5 cron fields"),
        ("every tuesday", "expected 5 cron fields"),
        ("0 10 * *", "expected 5 cron fields"),
        ("0 0 10 * * TUE extra", "expected 5 cron fields"),
        ("0 25 * * TUE", "invalid cron expression"),
        ("61 10 * * TUE", "invalid cron expression"),
        ("0 10 * * FUNDAY", "invalid cron expression"),
        ("0 10 32 * *", "invalid cron expression"),
        ("0 10 * 13 *", "invalid cron expression"),
    ],
)
def test_garbage_cron_is_refused(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cron_trigger(expression, UTC_ZONE)
    with pytest.raises(ValidationError, match=message):
        DrillSchedule(id="weekly", cron=expression)


def test_first_wednesday_means_only_the_first_wednesday_of_each_month() -> None:
    times = fires("0 10 1-7 * WED", datetime(2026, 1, 1, tzinfo=UTC), 12, UTC_ZONE)
    days = [t.date() for t in times]
    assert days == [
        date(2026, 1, 7),
        date(2026, 2, 4),
        date(2026, 3, 4),
        date(2026, 4, 1),
        date(2026, 5, 6),
        date(2026, 6, 3),
        date(2026, 7, 1),
        date(2026, 8, 5),
        date(2026, 9, 2),
        date(2026, 10, 7),
        date(2026, 11, 4),
        date(2026, 12, 2),
    ]
    for moment in times:  # one a month, a Wednesday in the first seven days, at 10:00
        assert moment.weekday() == 2 and moment.day <= 7 and moment.hour == 10


def test_quarterly_fires_on_the_first_monday_of_each_quarter() -> None:
    times = fires("0 10 1-7 1,4,7,10 MON", datetime(2026, 1, 1, tzinfo=UTC), 4, UTC_ZONE)
    assert [t.date() for t in times] == [
        date(2026, 1, 5),
        date(2026, 4, 6),
        date(2026, 7, 6),
        date(2026, 10, 5),
    ]


def test_the_time_zone_is_honoured() -> None:
    config = DrillsConfig(timezone="Europe/Berlin")
    weekly = config.schedules[0]
    start = datetime(2026, 1, 1, tzinfo=UTC)  # winter: Berlin is UTC+1
    upcoming = config.trigger(weekly).get_next_fire_time(None, start.astimezone(config.zone()))
    assert upcoming is not None
    assert (upcoming.hour, upcoming.astimezone(UTC).hour) == (10, 9)
    assert upcoming.astimezone(UTC) == datetime(2026, 1, 6, 9, 0, tzinfo=UTC)
    # Summer time: 10:00 in Berlin is 08:00 UTC.
    summer = fires("0 10 * * TUE", datetime(2026, 7, 1, tzinfo=UTC), 1, BERLIN)[0]
    assert summer.astimezone(UTC) == datetime(2026, 7, 7, 8, 0, tzinfo=UTC)


# -- refusals --------------------------------------------------------------------------


def test_unknown_time_zone_is_refused() -> None:
    message = refusal(timezone="Mars/Olympus_Mons")
    assert "unknown time zone 'Mars/Olympus_Mons'" in message
    assert "unknown time zone" in refusal(timezone="../../etc/passwd")


@pytest.mark.parametrize("channel", ["#incidents", "c0lower", "U0USER1", "C0", "", "C0DRILLS\n"])
def test_a_bad_channel_id_is_refused(channel: str) -> None:
    assert "expected a Slack channel ID like C0123ABCD" in refusal(channel=channel)


def test_a_good_channel_id_is_accepted() -> None:
    assert DrillsConfig(channel="C0DRILLS").channel == "C0DRILLS"


@pytest.mark.parametrize("participant", ["@carol", "C0CHANNEL", "u0lower", "U0", "U0CAROL\n"])
def test_a_bad_participant_id_is_refused(participant: str) -> None:
    message = refusal(participants=["U0CAROL", participant])
    assert "expected a Slack user (U…) or group (S…) ID" in message
    assert repr(participant) in message


def test_a_schedule_naming_an_unknown_scenario_is_refused() -> None:
    message = refusal(schedules=[{"id": "weekly", "cron": "0 10 * * TUE", "run": "fire-drill"}])
    assert "schedule 'weekly': run must be rotation, all, review or a scenario id" in message
    assert "got 'fire-drill'" in message and "ai-malfunction" in message
    # A scenario id is a valid run.
    config = DrillsConfig.model_validate(
        {"schedules": [{"id": "weekly", "cron": "0 10 * * TUE", "run": "data-loss"}]}
    )
    assert config.schedules[0].run == "data-loss"


def test_duplicate_schedule_ids_are_refused() -> None:
    twice = [
        {"id": "weekly", "cron": "0 10 * * TUE"},
        {"id": "weekly", "cron": "0 10 * * FRI"},
    ]
    assert "schedule 'weekly' is listed twice" in refusal(schedules=twice)


# A trailing newline (a YAML block scalar) is refused too, not only a visible typo.
@pytest.mark.parametrize(
    "schedule_id", ["Weekly", "weekly drill", "-weekly", "", "w" * 64, "weekly\n"]
)
def test_a_bad_schedule_id_is_refused(schedule_id: str) -> None:
    message = refusal(schedules=[{"id": schedule_id, "cron": "0 10 * * TUE"}])
    assert "expected a lower-case id like 'weekly'" in message


@pytest.mark.parametrize(
    ("ladder", "message"),
    [
        (["4m", "2m", "6m"], "expected delays in increasing order"),
        (["2m", "2m", "6m"], "expected delays in increasing order"),
        (["2m", "4m"], "expected three delays"),
        (["0s", "4m", "6m"], "expected delays greater than zero"),
    ],
)
def test_a_non_increasing_escalation_is_refused(ladder: list[str], message: str) -> None:
    assert message in refusal(escalation=ladder)


@pytest.mark.parametrize("field", ["timeout", "misfire_grace"])
def test_durations_must_be_positive(field: str) -> None:
    assert "expected a duration greater than zero" in refusal(**{field: "0s"})


def test_a_bad_scenario_id_and_unknown_keys_are_refused() -> None:
    alert = {"title": "x"}
    scenario = {"title": "t", "playbook": "schema-mismatch", "alert": alert}
    assert "scenario id 'Bad Id'" in refusal(scenarios={"Bad Id": scenario})
    assert "scenario id 'x\\n'" in refusal(scenarios={"x\n": scenario})
    assert "Extra inputs are not permitted" in refusal(pagers=["x"])
    assert "Extra inputs are not permitted" in refusal(
        scenarios={"x": {**scenario, "surprise": True}}
    )


# -- `nexus-bot validate` as a real process ----------------------------------------------


def test_validate_reports_unknown_playbook_unknown_step_and_manual_step(tmp_path: Path) -> None:
    alert = {"title": "Drill", "labels": {"severity": "warning"}}
    shipped = yaml.safe_load((REPO_ROOT / "config" / "nexus.yaml").read_text())
    config = tmp_path / "nexus.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                **shipped,
                "drills": {
                    "schedules": [],
                    "scenarios": {
                        "ghost": {"title": "g", "playbook": "no-such-playbook", "alert": alert},
                        "typo": {
                            "title": "t",
                            "playbook": "schema-mismatch",
                            "steps": ["revert-comit"],
                            "alert": alert,
                        },
                        "by-hand": {
                            "title": "m",
                            "playbook": "by-hand",
                            "steps": ["page-a-human"],
                            "alert": alert,
                        },
                        "fine": {
                            "title": "f",
                            "playbook": "schema-mismatch",
                            "steps": ["revert-commit"],
                            "alert": alert,
                        },
                    },
                },
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    playbooks = tmp_path / "playbooks"
    shutil.copytree(REPO_ROOT / "playbooks", playbooks)
    (playbooks / "by-hand.yaml").write_text(
        "id: by-hand\ntitle: By hand\nrisk_level: LOW\nprobability: Low\nimpact: Low\n"
        "description: d\nrollback:\n  - id: page-a-human\n    title: Page a human\n"
        "    manual: echo call someone\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "validate"],
        cwd=REPO_ROOT,
        env={
            **env,
            "NEXUS_CONFIG": str(config),
            "NEXUS_PLAYBOOKS": str(playbooks),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.db'}",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    where = f"{config}: drills.scenarios"
    lines = proc.stdout.splitlines()
    assert f"{where}.ghost: unknown playbook 'no-such-playbook'" in lines
    assert any(
        line.startswith(f"{where}.typo: playbook schema-mismatch has no step 'revert-comit'")
        and "revert-commit" in line
        for line in lines
    ), lines
    assert (
        f"{where}.by-hand: step 'page-a-human' of by-hand is manual; "
        "a drill can rehearse only steps with an action"
    ) in lines
    assert not any(".fine:" in line for line in lines)
    assert lines[-1] == "3 error(s)"
