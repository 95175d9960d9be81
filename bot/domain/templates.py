"""Tiny, strict templates for playbook parameters and manual commands.

Only two forms exist, so a platform lead cannot write anything surprising:
``{{ label }}`` and ``{{ label | default('value') }}``. Values come from alert
labels (and annotations). A variable the alert lacks is reported as missing,
so the bot can ask a human for it instead of guessing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_NAME = r"[a-z_][a-z0-9_]*"
_EXPRESSION = re.compile(
    rf"^\s*(?P<name>{_NAME})\s*(?:\|\s*default\(\s*'(?P<default>[^'{{}}]*)'\s*\)\s*)?$"
)


class TemplateError(ValueError):
    """A malformed template; the message says what and where (column is 1-based)."""


@dataclass(frozen=True)
class Placeholder:
    start: int
    end: int
    name: str
    default: str | None


@dataclass(frozen=True)
class Rendered:
    text: str
    missing: tuple[str, ...]


@dataclass(frozen=True)
class Template:
    source: str
    placeholders: tuple[Placeholder, ...]

    @property
    def variables(self) -> set[str]:
        return {p.name for p in self.placeholders}

    @property
    def is_literal(self) -> bool:
        return not self.placeholders

    def render(self, values: Mapping[str, str], missing_marker: str = "<{name}>") -> Rendered:
        """Fill placeholders; a missing one becomes `<name>` and is listed in `missing`."""
        out, missing, cursor = [], [], 0
        for holder in self.placeholders:
            out.append(self.source[cursor : holder.start])
            value = values.get(holder.name) or holder.default
            if value is None:
                missing.append(holder.name)
                value = missing_marker.format(name=holder.name)
            out.append(value)
            cursor = holder.end
        out.append(self.source[cursor:])
        return Rendered("".join(out), tuple(dict.fromkeys(missing)))


def parse_template(text: str) -> Template:
    """Parse `text`, raising TemplateError for unbalanced braces or unknown syntax."""
    holders: list[Placeholder] = []
    cursor = 0
    while True:
        start = text.find("{{", cursor)
        stray = text.find("}}", cursor)
        if stray != -1 and (start == -1 or stray < start):
            raise TemplateError(f"column {stray + 1}: '}}}}' without a matching '{{{{'")
        if start == -1:
            break
        end = text.find("}}", start + 2)
        if end == -1:
            raise TemplateError(f"column {start + 1}: '{{{{' is never closed with '}}}}'")
        inner = text[start + 2 : end]
        match = _EXPRESSION.match(inner)
        if match is None:
            raise TemplateError(
                f"column {start + 1}: {{{{{inner}}}}} is not a template; use "
                "{{ label }} or {{ label | default('value') }} with a lower-case label name"
            )
        holders.append(Placeholder(start, end + 2, match["name"], match["default"]))
        cursor = end + 2
    return Template(text, tuple(holders))
