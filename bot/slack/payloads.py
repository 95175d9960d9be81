"""Reading what Slack sends back in interaction payloads."""

from __future__ import annotations

import json
from typing import Any


def button_value(body: dict[str, Any]) -> dict[str, Any]:
    """The clicked button's value as a JSON object; {} for anything else (it is outside input)."""
    actions = body.get("actions") or [{}]
    try:
        value = json.loads(actions[0].get("value") or "{}")
    except (ValueError, TypeError, AttributeError, RecursionError):
        # ValueError: also JSONDecodeError, and integers of more than 4,300 digits.
        return {}
    return value if isinstance(value, dict) else {}


def incident_number(body: dict[str, Any]) -> int | None:
    number = button_value(body).get("i")
    return (
        number if isinstance(number, int) and not isinstance(number, bool) and number > 0 else None
    )
