"""Playbooks as code: the source playbook's risk scenarios, loaded from YAML.

A playbook file holds one scenario: its risk level, probability, impact,
description, mitigations, the rules that match alerts to it, and its rollback
steps. A step is either a registered action the bot can run (after approval)
or a manual command shown to humans with the values filled in.

    id: frenly-ai-dangerous-edit
    title: Frenly AI proposing dangerous automated edits
    risk_level: HIGH
    match:
      - labels: {alertname: FrenlyAIDangerousEdit}
      - title: "(?i)frenly ai.*dangerous"
    rollback:
      - id: close-pr
        title: Reject the AI proposal
        action: github.close_pr
        params: {repo: "{{ repo }}", pr: "{{ pr }}"}
      - id: verify
        title: Verify integrity
        manual: python scripts/validate_ssot.py ssot_plan/ssot_manifest_proposal.yaml
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

import bot.actions.catalog  # noqa: F401  (registers the actions)
from bot.actions.registry import REGISTRY, ActionParams, Target, refusal_for_params
from bot.domain.alerts import Alert, AlertSource
from bot.domain.playbook_review import PlaybookReview
from bot.domain.procedures import PROCEDURES, Procedure, ProcedureKind
from bot.domain.templates import TemplateError, parse_template
from bot.settings import AllowedTargets
from bot.yamlfile import KeyPath, YamlFileError, load_yaml_mapping, nearest_line

_ID = r"^[a-z0-9][a-z0-9-]{1,62}$"


class RiskLevel(StrEnum):
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"


class Likelihood(StrEnum):
    LOW = "Low"
    MEDIUM = "Medium"
    HIGH = "High"
    CRITICAL = "Critical"


class MatchRule(BaseModel):
    """All conditions of one rule must hold; a playbook matches if any rule does.

    A label value is compared exactly, or as a regular expression when it
    starts with `~`. `title` is always a regular expression (searched).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    labels: dict[str, str] = Field(default_factory=dict)
    title: str | None = None

    @model_validator(mode="after")
    def _check(self) -> MatchRule:
        if not self.labels and self.title is None:
            raise ValueError("a match rule needs `labels` or `title`")
        patterns = [v[1:] for v in self.labels.values() if v.startswith("~")]
        for pattern in [*patterns, *([self.title] if self.title is not None else [])]:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bad regular expression {pattern!r}: {exc}") from None
        return self

    def explain(self, alert: Alert) -> str | None:
        """Why this rule matches `alert` (e.g. `alertname=X`), or None if it does not."""
        reasons = []
        for name, expected in self.labels.items():
            actual = alert.labels.get(name)
            if actual is None:
                return None
            if expected.startswith("~"):
                if not re.search(expected[1:], actual):
                    return None
                reasons.append(f"{name}~/{expected[1:]}/")
            elif actual != expected:
                return None
            else:
                reasons.append(f"{name}={expected}")
        if self.title is not None:
            if not re.search(self.title, alert.title):
                return None
            reasons.append(f"title~/{self.title}/")
        return " and ".join(reasons)


class RollbackStep(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=_ID)
    title: str = Field(min_length=1, max_length=150)
    action: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    manual: str | None = Field(None, min_length=1, max_length=2000)
    note: str | None = Field(None, max_length=500)
    # Another step of this playbook run automatically once this one succeeded
    # (e.g. the validation Job after a restore); the approval covers both.
    verify: str | None = Field(None, pattern=_ID)

    @model_validator(mode="after")
    def _one_kind(self) -> RollbackStep:
        if (self.action is None) == (self.manual is None):
            raise ValueError("a step needs exactly one of `action` (the bot runs it) or `manual`")
        if self.manual is not None and self.params:
            raise ValueError("`params` belong to an `action` step, not a `manual` one")
        if self.manual is not None and self.verify is not None:
            raise ValueError("`verify` belongs to an `action` step, not a `manual` one")
        return self


class Drill(BaseModel):
    """The source playbook's recovery-testing schedule for this scenario."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scenario: str = Field(min_length=1)
    cadence: str = Field("weekly", pattern=r"^(weekly|monthly|quarterly)$")


class Playbook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=_ID)
    title: str = Field(min_length=1, max_length=150)
    risk_level: RiskLevel
    probability: Likelihood
    impact: Likelihood
    procedure: ProcedureKind | None = None
    priority: int = 0
    description: str = Field(min_length=1)
    mitigations: list[str] = Field(default_factory=list)
    match: list[MatchRule] = Field(default_factory=list)
    incident_key: str | None = None
    rollback: list[RollbackStep] = Field(default_factory=list)
    drill: Drill | None = None
    # Owner and review cadence (bot.domain.playbook_review); `validate` warns when overdue.
    review: PlaybookReview | None = None

    @field_validator("incident_key")
    @classmethod
    def _key_template(cls, value: str | None) -> str | None:
        if value is not None:
            parse_template(value)
        return value

    @property
    def procedure_kind(self) -> ProcedureKind:
        """HIGH risk follows the emergency procedure unless the playbook says otherwise."""
        if self.procedure is not None:
            return self.procedure
        return (
            ProcedureKind.EMERGENCY if self.risk_level is RiskLevel.HIGH else ProcedureKind.STANDARD
        )

    @property
    def procedure_steps(self) -> Procedure:
        return PROCEDURES[self.procedure_kind]

    def step(self, step_id: str) -> RollbackStep | None:
        return next((s for s in self.rollback if s.id == step_id), None)

    @model_validator(mode="after")
    def _verify_steps(self) -> Playbook:
        for step in self.rollback:
            if step.verify is None:
                continue
            check = self.step(step.verify)
            if check is None or check.action is None:
                raise ValueError(
                    f"step {step.id!r}: verify names {step.verify!r}, which is not a step "
                    "with an action in this playbook"
                )
            if check.verify is not None or check.id == step.id:
                raise ValueError(f"step {step.id!r}: its verify step must not verify in turn")
        return self


GENERIC_TRIAGE = Playbook(
    id="generic-triage",
    title="Generic triage",
    risk_level=RiskLevel.LOW,
    probability=Likelihood.MEDIUM,
    impact=Likelihood.LOW,
    procedure=ProcedureKind.STANDARD,
    description="No SSOT playbook matched this alert. Triage it by hand and, if it turns "
    "out to be an SSOT scenario, declare it with `/incident declare --playbook ID`.",
    mitigations=[
        "Check the alert's dashboard and recent deploys",
        "Check recent SSOT commits and open Frenly AI pull requests",
    ],
    rollback=[
        RollbackStep(
            id="recent-ssot-commits",
            title="List recent SSOT changes",
            manual="git log --oneline -n 20 -- ssot_plan/",
            note="Reading the history is triage for a human; the bot acts only through playbooks.",
        ),
    ],
)


# --- loading and validation --------------------------------------------------


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line or 1}: {self.message}"


@dataclass
class LoadedPlaybooks:
    playbooks: list[Playbook] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    sources: dict[str, Path] = field(default_factory=dict)

    def get(self, playbook_id: str) -> Playbook | None:
        if playbook_id == GENERIC_TRIAGE.id:
            return GENERIC_TRIAGE
        return next((p for p in self.playbooks if p.id == playbook_id), None)


def playbook_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        else:
            files.append(path)
    return files


def load_playbooks(paths: Iterable[Path], allowed: AllowedTargets | None = None) -> LoadedPlaybooks:
    """Load and validate every playbook file; collect every problem, never stop at the first."""
    result = LoadedPlaybooks()
    seen: dict[str, tuple[Path, int | None]] = {}
    for path in playbook_files(paths):
        if not path.exists():
            result.problems.append(Problem(path, None, "no such file or folder"))
            continue
        try:
            data, lines = load_yaml_mapping(path)
        except YamlFileError as exc:
            result.problems.append(Problem(path, exc.line, exc.message))
            continue
        playbook, problems = _validate_one(path, data, lines, allowed)
        result.problems += problems
        if playbook is None:
            continue
        if playbook.id in seen:
            other, other_line = seen[playbook.id]
            result.problems.append(
                Problem(
                    path,
                    lines.get(("id",)),
                    f"duplicate playbook id {playbook.id!r} (also in {other}:{other_line or 1})",
                )
            )
            continue
        seen[playbook.id] = (path, lines.get(("id",)))
        result.playbooks.append(playbook)
        result.sources[playbook.id] = path
    result.playbooks.sort(key=lambda p: (-p.priority, p.id))
    return result


def _validate_one(
    path: Path, data: dict[str, Any], lines: dict[KeyPath, int], allowed: AllowedTargets | None
) -> tuple[Playbook | None, list[Problem]]:
    def problem(loc: KeyPath, message: str) -> Problem:
        return Problem(path, nearest_line(lines, loc), message)

    try:
        playbook = Playbook.model_validate(data)
    except ValidationError as exc:
        return None, [_pydantic_problem(problem, e) for e in exc.errors(include_url=False)]
    problems: list[Problem] = []
    step_ids: set[str] = set()
    for index, step in enumerate(playbook.rollback):
        loc: KeyPath = ("rollback", index)
        if step.id in step_ids:
            problems.append(problem((*loc, "id"), f"duplicate step id {step.id!r}"))
        step_ids.add(step.id)
        if step.manual is not None:
            try:
                parse_template(step.manual)
            except TemplateError as exc:
                problems.append(problem((*loc, "manual"), f"bad template: {exc}"))
            continue
        for where, message in check_step_params(step, allowed):
            problems.append(problem((*loc, *where), message))
    return (playbook if not problems else None), problems


def _pydantic_problem(problem: Any, error: Any) -> Problem:
    loc = tuple(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = f"unknown key {loc[-1]!r}"
    elif error["type"] == "missing":
        message = f"missing required key {loc[-1]!r}"
    key = ".".join(str(p) for p in loc)
    result: Problem = problem(loc, f"{key}: {message}" if key else message)
    return result


def check_step_params(
    step: RollbackStep, allowed: AllowedTargets | None
) -> list[tuple[KeyPath, str]]:
    """Load-time checks of an action step: known action, known params, literal types, allow-list.

    Templated values are checked for syntax only; their type is checked when an
    alert fills them in.
    """
    assert step.action is not None
    if step.action not in REGISTRY:
        return [
            (("action",), f"unknown action {step.action!r}; known: {', '.join(REGISTRY.names())}")
        ]
    model = REGISTRY.get(step.action).params
    fields = model.model_fields
    errors: list[tuple[KeyPath, str]] = []
    templated: set[str] = set()
    for name, value in step.params.items():
        if name not in fields:
            errors.append(
                (
                    ("params", name),
                    f"unknown parameter {name!r} for {step.action}; known: {', '.join(fields)}",
                )
            )
        elif _templates(value):
            templated.add(name)
            try:
                for template in _templates(value):
                    parse_template(template)
            except TemplateError as exc:
                errors.append((("params", name), f"bad template: {exc}"))
    for name, info in fields.items():
        if info.is_required() and name not in step.params:
            errors.append((("params",), f"missing required parameter {name!r} for {step.action}"))
    if errors:
        return errors
    literal = {k: v for k, v in step.params.items() if k not in templated}
    try:
        model.model_validate(literal)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            name = str(error["loc"][0]) if error["loc"] else ""
            if error["type"] == "missing" and name in templated:
                continue
            message = str(error["msg"]).removeprefix("Value error, ")
            errors.append((("params", name), f"parameter {name!r}: {message}"))
    if errors or allowed is None:
        return errors
    # With the alert's labels absent, defaults fill in: if that yields a full target, check it.
    planned = plan_step(step, {}, allowed)
    if planned.refusal and not planned.missing:
        errors.append((("params",), f"target refused: {planned.refusal}"))
        return errors
    refusal = _literal_target_refusal(model, literal, templated, allowed)
    if refusal is not None:
        errors.append((("params",), f"target refused: {refusal}"))
    return errors


def _templates(value: Any) -> list[str]:
    """The template strings in a parameter: itself, or the items of a list (Job args)."""
    items = value if isinstance(value, list) else [value]
    return [v for v in items if isinstance(v, str) and ("{{" in v or "}}" in v)]


def _literal_target_refusal(
    model: type[ActionParams],
    literal: Mapping[str, Any],
    templated: set[str],
    allowed: AllowedTargets,
) -> str | None:
    """The refusal of a target built from literal parameters alone.

    A step whose target is literal but which waits for the alert for another
    parameter (`github.close_pr` with a literal `repo` and `pr: "{{ pr }}"`)
    never yields a full plan at load time; its target is judged all the same.
    The literal values were validated above; a target that needs a templated
    parameter cannot be built and is judged when the alert fills it in.
    """
    partial = model.model_construct(**literal)
    for name in templated:
        partial.__dict__.pop(name, None)  # a default must not stand in for the alert's value
    try:
        return refusal_for_params(partial, allowed)
    except AttributeError:
        return None


# --- matching and planning ---------------------------------------------------


@dataclass(frozen=True)
class PlaybookMatch:
    playbook: Playbook
    explanation: str


def match_playbook(alert: Alert, playbooks: Iterable[Playbook]) -> PlaybookMatch:
    """The first playbook (by priority, then id) with a rule that matches; else generic triage."""
    for playbook in playbooks:
        for rule in playbook.match:
            why = rule.explain(alert)
            if why is not None:
                return PlaybookMatch(playbook, f"matched `{playbook.id}` on {why}")
    return PlaybookMatch(GENERIC_TRIAGE, "no playbook matched: generic triage")


def template_values(alert: Alert) -> dict[str, str]:
    """Annotations, then labels on top: labels are the stronger signal."""
    return {**alert.annotations, **alert.labels}


def incident_key(alert: Alert, playbook: Playbook) -> str:
    """The key that groups alerts into one incident.

    A playbook-defined key groups across sources (an Alertmanager alert and a
    PagerDuty incident about the same thing share a thread); otherwise the
    Alertmanager group key (split by playbook, so a broad `group_by` does not
    put two scenarios in one thread), PagerDuty incident id or generic key.
    """
    if playbook.incident_key is not None:
        rendered = parse_template(playbook.incident_key).render(template_values(alert))
        if not rendered.missing:
            return f"{playbook.id}/{rendered.text}"
    if alert.source is AlertSource.ALERTMANAGER:
        return f"alertmanager:{alert.group_key or alert.fingerprint}#{playbook.id}"
    return f"{alert.source.value}:{alert.group_key or alert.fingerprint}"


@dataclass(frozen=True)
class PlannedStep:
    step: RollbackStep
    command: str | None = None  # manual steps, values filled in
    params: dict[str, Any] = field(default_factory=dict)  # action steps, as rendered
    missing: tuple[str, ...] = ()  # parameters a human must supply
    invalid: tuple[str, ...] = ()  # parameter: reason, for values the alert got wrong
    refusal: str | None = None
    description: str | None = None
    target: Target | None = None

    @property
    def runnable(self) -> bool:
        return self.step.action is not None and self.refusal is None

    @property
    def needs_input(self) -> bool:
        return bool(self.missing or self.invalid)


def plan_step(
    step: RollbackStep, values: Mapping[str, str], allowed: AllowedTargets
) -> PlannedStep:
    """Fill a step from alert values; say what is missing, invalid or refused."""
    if step.manual is not None:
        rendered = parse_template(step.manual).render(values)
        return PlannedStep(step, command=rendered.text, missing=rendered.missing)
    assert step.action is not None
    params: dict[str, Any] = {}
    missing: list[str] = []
    for name, value in step.params.items():
        if isinstance(value, str):
            rendered = parse_template(value).render(values)
            if rendered.missing:
                missing.append(name)
                continue
            value = rendered.text
        elif isinstance(value, list) and _templates(value):
            items = [parse_template(v).render(values) if isinstance(v, str) else v for v in value]
            # The variables, not the parameter: a form asks for `anchor`, not `args`.
            wanted = [m for i in items if not isinstance(i, str | int | float) for m in i.missing]
            if wanted:
                missing.extend(m for m in wanted if m not in missing)
                continue
            value = [i if isinstance(i, str | int | float) else i.text for i in items]
        params[name] = value
    if missing:
        return PlannedStep(step, params=params, missing=tuple(missing))
    model = REGISTRY.get(step.action).params
    try:
        validated: ActionParams = model.model_validate(params)
    except ValidationError as exc:
        invalid = tuple(
            f"{'.'.join(str(p) for p in e['loc'])}: {str(e['msg']).removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False)
        )
        return PlannedStep(step, params=params, invalid=invalid)
    target = validated.target()
    return PlannedStep(
        step,
        params=validated.model_dump(mode="json"),
        refusal=refusal_for_params(validated, allowed),
        description=validated.describe(),
        target=target,
    )


def plan_playbook(playbook: Playbook, alert: Alert, allowed: AllowedTargets) -> list[PlannedStep]:
    values = template_values(alert)
    return [plan_step(step, values, allowed) for step in playbook.rollback]
