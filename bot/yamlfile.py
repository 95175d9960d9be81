"""YAML loading that remembers where every key is, so errors can say `file:line`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

KeyPath = tuple[str | int, ...]


class YamlFileError(Exception):
    """A file that cannot be read as a YAML mapping; `line` is 1-based when known."""

    def __init__(self, path: Path, line: int | None, message: str) -> None:
        self.path, self.line, self.message = path, line, message
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


def load_yaml_mapping(path: Path) -> tuple[dict[str, Any], dict[KeyPath, int]]:
    """Parse a YAML mapping and the 1-based line of every key and list item."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlFileError(path, None, f"cannot read: {exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlFileError(
            path, mark.line + 1 if mark else None, f"not valid YAML: {problem}"
        ) from None
    except RecursionError:
        raise YamlFileError(path, None, "not valid YAML: nested too deeply") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise YamlFileError(path, 1, "expected a mapping (key: value) at the top level")
    lines: dict[KeyPath, int] = {}
    _record_lines(node, (), lines, set())
    return data, lines


def _record_lines(
    node: yaml.Node | None, prefix: KeyPath, out: dict[KeyPath, int], seen: set[int]
) -> None:
    # An alias points at a node already walked: walking it again loops forever on a
    # recursive alias (`a: &a [*a]`) and multiplies work on nested aliases.
    if node is None or id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*prefix, str(key_node.value))
            out[key] = key_node.start_mark.line + 1
            _record_lines(value_node, key, out, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            key = (*prefix, index)
            out[key] = item.start_mark.line + 1
            _record_lines(item, key, out, seen)


def nearest_line(lines: dict[KeyPath, int], loc: KeyPath) -> int | None:
    """The line of `loc`, or of its closest enclosing key."""
    for cut in range(len(loc), 0, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return None
