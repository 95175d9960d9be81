"""What every webhook endpoint does before it looks at the payload.

Bodies are read with a hard size limit (413 past it), JSON is parsed with a
reason on failure (400), and every error is a small JSON object — never a
stack trace. The sender learns what to fix; nothing half-read is stored.

Whatever is answered 202 must be storable later, by the inbox worker, on
SQLite and PostgreSQL alike (issue 10). So `parse_storable` (and `parse_json`)
also makes the payload storable before anyone acknowledges it, and the inbox
keeps that payload: the received bytes as they are when nothing had to change
(nearly always), else the payload re-serialised as ASCII JSON.

* Text the databases refuse is *replaced*, not refused: a lone UTF-16
  surrogate (JSON ``"\\ud800"``, or UTF-8-encoded surrogate bytes, which
  json.loads lets through) cannot be encoded as UTF-8 for either database,
  and PostgreSQL text and jsonb hold no NUL (``"\\u0000"``). Each such
  character becomes U+FFFD, in every string, keys included. Why not a 400:
  Alertmanager does not retry a 4xx, so refusing would drop every good alert
  of the batch for one stray character, and U+FFFD keeps the place of what a
  human could not have read anyway. (Two keys of one object that differ only
  there end up as one, the later winning, as JSON duplicate keys do.)
* Values JSON cannot carry are a 400: an integer of more digits than
  Python converts (``sys.get_int_max_str_digits()``, 4300), a number too
  large for a float (``1e400``), NaN and Infinity (not JSON at all, and no
  sender we serve emits them).
* Nesting deeper than `MAX_DEPTH` is a 400: the worker re-parses the stored
  body and turns nested label values into JSON text, and it must never reach
  Python's recursion limit doing so, whatever its stack depth at the time.

Reasons are capped at `MAX_REASON_CHARS` (`RejectedRequest`), so a 400 never
echoes a 500 KB field back, nor writes it to the log.

The rest of what the worker could refuse is bounded by the parsers
(bot.domain.alerts), which intake runs before the 202 too: label and
annotation values become strings of at most 8192 characters (so a number in a
label is text the severity thresholds and action parameters parse later, and
a failed parse there is a refused step, not a failed row); fingerprints and
titles are cut; Alertmanager group keys too long for a unique index are
shortened with a digest, an over-long PagerDuty incident id is a 400. JSON
keys are always strings. Columns are unbounded text. The number of alerts is
bounded by the 1 MiB body: the worst case, about 38,000 minimal alerts in one
batch, is applied (slowly) on both databases.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

MAX_BODY_BYTES = 1024 * 1024
MAX_REASON_CHARS = 300
# Alertmanager and PagerDuty bodies nest about six deep; 64 is lenient and
# still far below the recursion limit wherever the worker runs.
MAX_DEPTH = 64
REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def shorten(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """`text`, or its first `limit` - 1 characters and an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class RejectedRequest(Exception):
    """An HTTP error answer with a reason (at most MAX_REASON_CHARS long)."""

    def __init__(self, status: int, reason: str) -> None:
        reason = shorten(reason)
        super().__init__(reason)
        self.status, self.reason = status, reason

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.reason}, status_code=self.status)


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, refusing anything over `limit` without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise RejectedRequest(400, "Content-Length is not a number") from None
        if size > limit:
            raise RejectedRequest(413, f"body of {size} bytes is over the {limit}-byte limit")
    chunks: list[bytes] = []
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise RejectedRequest(413, f"body is over the {limit}-byte limit")
            chunks.append(chunk)
    except ClientDisconnect:
        raise RejectedRequest(400, "client disconnected before sending the whole body") from None
    return b"".join(chunks)


@dataclass(frozen=True)
class JsonBody:
    """A parsed body and the text to store for it."""

    payload: Any
    # The body as received when it is plain UTF-8 that needed no change (nearly
    # always: the bytes that were verified are the bytes kept), else the
    # storable payload re-serialised.
    text: str


def parse_json(body: bytes) -> Any:
    """The payload of a JSON body, made storable (see the module docstring); 400 if it cannot be."""
    return parse_storable(body).payload


def parse_storable(body: bytes) -> JsonBody:
    if not body:
        raise RejectedRequest(400, "empty body: expected JSON")
    try:
        payload = json.loads(body, parse_float=_finite, parse_constant=_not_json)
    except UnicodeDecodeError:
        raise RejectedRequest(400, "body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise RejectedRequest(
            400, f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise RejectedRequest(400, "JSON nested too deeply") from None
    except ValueError as exc:
        # int() past the int-string conversion limit: the one ValueError json.loads
        # raises that is neither of the above. Its message quotes no digits.
        if "digits" in str(exc):
            raise RejectedRequest(
                400,
                f"a number has more than {sys.get_int_max_str_digits()} digits; "
                "send it as a string",
            ) from None
        raise RejectedRequest(400, f"JSON not readable: {exc}") from None
    text = _plain_text(body)
    if text is not None and _ESCAPED_UNSTORABLE.search(text) is None:
        # Nearly always: nothing to replace, so only the depth needs a look.
        _check_depth(payload, 0)
        return JsonBody(payload, text)
    cleaner = _Storable()
    payload = cleaner.clean(payload, 0)
    if text is None or cleaner.changed:
        # ensure_ascii: plain ASCII, readable back by json.loads(str) as it is.
        text = json.dumps(payload, allow_nan=False)
    return JsonBody(payload, text)


# A JSON escape of NUL or of a surrogate (paired ones are fine: the walk checks).
_ESCAPED_UNSTORABLE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_TOO_DEEP = f"JSON nested more than {MAX_DEPTH} levels deep"
_OUT_OF_RANGE = "a number is out of range (JSON has no NaN or Infinity; max about 1e308)"


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400, or 5000 digits and a fraction
        raise RejectedRequest(400, _OUT_OF_RANGE)
    return value


def _not_json(text: str) -> Any:
    raise RejectedRequest(400, _OUT_OF_RANGE)  # NaN, Infinity, -Infinity


def _plain_text(body: bytes) -> str | None:
    """The body as text if it is plain UTF-8 JSON the worker can read back as is."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None  # UTF-16/32, or surrogates json.loads took with surrogatepass
    if text.startswith("\ufeff") or "\x00" in text:
        return None  # a BOM, or UTF-16/32 that happened to decode; PostgreSQL refuses NUL
    return text


def _check_depth(value: Any, depth: int) -> None:
    """A 400 if containers nest MAX_DEPTH deep; visits containers only, so it is cheap."""
    items: Iterable[Any]
    if type(value) is dict:
        items = value.values()
    elif type(value) is list:
        items = value
    else:
        return
    if depth >= MAX_DEPTH:
        raise RejectedRequest(400, _TOO_DEEP)
    for item in items:
        kind = type(item)
        if kind is dict or kind is list:
            _check_depth(item, depth + 1)


class _Storable:
    """Rebuilds a parsed payload with unstorable characters replaced, checking depth."""

    def __init__(self) -> None:
        self.changed = False

    def text(self, value: str) -> str:
        if _UNSTORABLE.search(value) is None:
            return value
        self.changed = True
        return _UNSTORABLE.sub(REPLACEMENT, value)

    def clean(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict | list) and depth >= MAX_DEPTH:
            raise RejectedRequest(400, _TOO_DEEP)
        if isinstance(value, dict):
            return {self.text(k): self.clean(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [self.clean(v, depth + 1) for v in value]
        return value  # None, bool, int, finite float


def accepted(**extra: Any) -> JSONResponse:
    return JSONResponse({"status": "accepted", **extra}, status_code=202)
