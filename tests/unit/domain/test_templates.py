"""The two template forms, `{{ label }}` and `{{ label | default('value') }}`, and nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.templates import TemplateError, parse_template


def test_literal_text_is_unchanged() -> None:
    template = parse_template("python scripts/sync_services_ssot.py --force")
    assert template.is_literal
    assert template.variables == set()
    rendered = template.render({"anything": "x"})
    assert rendered.text == "python scripts/sync_services_ssot.py --force"
    assert rendered.missing == ()


def test_render_fills_labels() -> None:
    template = parse_template("git revert {{ commit }} on {{repo}}")
    assert template.variables == {"commit", "repo"}
    assert not template.is_literal
    rendered = template.render({"commit": "9fceb02", "repo": "nexus/ssot"})
    assert rendered.text == "git revert 9fceb02 on nexus/ssot"
    assert rendered.missing == ()


def test_default_is_used_only_when_the_label_is_absent_or_empty() -> None:
    template = parse_template("{{ branch | default('main') }}")
    assert template.render({}).text == "main"
    assert template.render({"branch": ""}).text == "main"
    assert template.render({"branch": "release/1.4"}).text == "release/1.4"
    assert template.render({}).missing == ()


def test_default_may_be_empty_and_contain_punctuation() -> None:
    assert parse_template("a{{ x | default('') }}b").render({}).text == "ab"
    text = parse_template("{{x|default('a b|c)(-.')}}").render({}).text
    assert text == "a b|c)(-."


def test_missing_values_are_marked_and_listed_once() -> None:
    template = parse_template("psql -U {{ db_user }} -d {{ database }} # {{ db_user }}")
    rendered = template.render({"database": "ssot"})
    assert rendered.text == "psql -U <db_user> -d ssot # <db_user>"
    assert rendered.missing == ("db_user",)


def test_custom_missing_marker() -> None:
    rendered = parse_template("x={{ pr }}").render({}, missing_marker="?{name}?")
    assert rendered.text == "x=?pr?"


def test_values_are_not_rendered_again() -> None:
    rendered = parse_template("{{ a }}").render({"a": "{{ b }}", "b": "evil"})
    assert rendered.text == "{{ b }}"


def test_placeholder_positions() -> None:
    template = parse_template("ab{{ x }}cd")
    (holder,) = template.placeholders
    assert (holder.start, holder.end, holder.name, holder.default) == (2, 9, "x", None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ repo", "column 1: '{{' is never closed with '}}'"),
        ("echo {{ a }} {{ b", "column 14: '{{' is never closed with '}}'"),
        ("repo }}", "column 6: '}}' without a matching '{{'"),
        ("}} {{ a }}", "column 1: '}}' without a matching '{{'"),
        ("{{ }}", "column 1: {{ }} is not a template"),
        ("{{}}", "column 1: {{}} is not a template"),
        ("x {{ Repo }}", "column 3: {{ Repo }} is not a template"),
        ("{{ 1abc }}", "is not a template"),
        ("{{ a-b }}", "is not a template"),
        ("{{ a.b }}", "is not a template"),
        ("{{ a | upper }}", "is not a template"),
        ('{{ a | default("x") }}', "is not a template"),
        ("{{ a | default('x' }}", "is not a template"),
        ("{{ a | default('x') | default('y') }}", "is not a template"),
        ("{{ a b }}", "is not a template"),
        ("{{ a }} {{ {{ b }} }}", "column 9:"),
        ("{% if a %}{{ a }}", None),
    ],
)
def test_malformed_templates_are_errors(text: str, message: str | None) -> None:
    if message is None:  # Jinja statements are plain text here, not a syntax
        assert parse_template(text).render({"a": "1"}).text == "{% if a %}1"
        return
    with pytest.raises(TemplateError) as caught:
        parse_template(text)
    assert message in str(caught.value)


def test_error_message_says_what_is_allowed() -> None:
    with pytest.raises(TemplateError) as caught:
        parse_template("{{ Foo }}")
    assert "use {{ label }} or {{ label | default('value') }}" in str(caught.value)


names = st.from_regex(r"[a-z_][a-z0-9_]{0,15}", fullmatch=True)
plain = st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=20)


@given(before=plain, name=names, after=plain, value=st.text(max_size=20))
def test_any_valid_placeholder_renders_its_value(
    before: str, name: str, after: str, value: str
) -> None:
    rendered = parse_template(f"{before}{{{{ {name} }}}}{after}").render({name: value})
    if value:
        assert rendered.text == f"{before}{value}{after}"
        assert rendered.missing == ()
    else:
        assert rendered.missing == (name,)


@given(text=st.text(max_size=40))
def test_parse_template_either_parses_or_raises_template_error(text: str) -> None:
    try:
        template = parse_template(text)
    except TemplateError as exc:
        assert str(exc).startswith("column ")
    else:
        assert template.render({}).text.count("<") >= len(
            [p for p in template.placeholders if p.default is None]
        )
