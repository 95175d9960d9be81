"""`Retry-After`-style delays from HTTP APIs, for the delivery queue's `Retry(after=...)`."""

from __future__ import annotations

import email.utils
import math
import time


def delay_seconds(value: str | None) -> float | None:
    """A header's delay: seconds (RFC 9110 delta-seconds) or an HTTP date; None if unreadable."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None
