"""One Slack Web API call made by the outbox worker: its timeout, its outcome, its metric.

`call` awaits a request and turns everything that can go wrong into a
`Failure` the outbox knows how to schedule: ``ratelimited`` (HTTP 429 or
``ratelimited``: wait ``Retry-After``, the attempt is given back),
``transient`` (5xx, network errors, timeouts, Slack's transient error codes:
back off and retry) or ``permanent`` (any other ``ok: false``: the row fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from prometheus_client import Counter
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.metrics import REGISTRY

__all__ = ["SLACK_CALLS", "TRANSIENT_ERRORS", "Failure", "call", "classify"]

log = structlog.get_logger("bot.slack.outbox")

# Slack error codes that describe Slack's (or our credentials') state rather
# than the message: retried with backoff instead of failing the row.
TRANSIENT_ERRORS = frozenset(
    {
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_expired",
        "token_revoked",
    }
)

SLACK_CALLS = Counter(
    "nexus_slack_calls_total",
    "Slack Web API calls made by the outbox, by method and outcome.",
    ["method", "outcome"],
    registry=REGISTRY,
)


@dataclass(frozen=True)
class Failure:
    kind: str  # ratelimited | transient | permanent
    error: str
    retry_after: float = 0.0


def _retry_after(headers: Any) -> float:
    raw = None
    with contextlib.suppress(Exception):
        raw = headers.get("Retry-After") if headers is not None else None
    try:
        value = float(raw) if raw is not None else 1.0
    except (TypeError, ValueError):
        value = 1.0
    return value if math.isfinite(value) and value > 0 else 1.0


def classify(exc: SlackApiError) -> Failure:
    response = exc.response
    status = getattr(response, "status_code", None) or getattr(response, "status", None) or 0
    data = getattr(response, "data", None)
    error = str(data.get("error") or "") if isinstance(data, Mapping) else ""
    if status == 429 or error == "ratelimited":
        return Failure(
            "ratelimited", "ratelimited", _retry_after(getattr(response, "headers", None))
        )
    if status >= 500 or status == 408:
        return Failure("transient", f"http_{status}")
    if error in TRANSIENT_ERRORS:
        return Failure("transient", error)
    if error:
        return Failure("permanent", error)
    # A 200 without a readable body, or an unexpected status without an error code.
    return Failure("transient", f"http_{status}_unreadable")


def _outcome_label(failure: Failure) -> str:
    if failure.kind == "ratelimited":
        return "ratelimited"
    if failure.kind == "permanent":
        return "error"
    if failure.error.startswith("http_"):
        return "server_error"
    if failure.error in ("timeout",) or failure.error.startswith("network"):
        return "network_error"
    return "retryable_error"


async def call(
    method: str, request: Awaitable[AsyncSlackResponse], seconds: float, **context: Any
) -> Mapping[str, Any] | Failure:
    """Await ``request`` (a call of ``method``) for at most ``seconds``.

    Returns Slack's answer (``ok: true``) or the `Failure`; never raises
    (but for cancellation), so a bug or an SDK surprise cannot kill the worker.
    """
    try:
        response = await asyncio.wait_for(request, seconds)
    except SlackApiError as exc:
        failure = classify(exc)
    except TimeoutError:
        failure = Failure("transient", "timeout")
    except (aiohttp.ClientError, OSError) as exc:
        failure = Failure("transient", f"network: {type(exc).__name__}")
    except Exception as exc:
        log.exception("outbox_send_crashed", method=method, **context)
        failure = Failure("transient", f"unexpected: {type(exc).__name__}")
    else:
        SLACK_CALLS.labels(method, "ok").inc()
        return response.data if isinstance(response.data, Mapping) else {}
    SLACK_CALLS.labels(method, _outcome_label(failure)).inc()
    return failure
