"""What every webhook endpoint does before it looks at the payload.

Bodies are read with a hard size limit (413 past it), JSON is parsed with a
reason on failure (400), and every error is a small JSON object — never a
stack trace. The sender learns what to fix; nothing half-read is stored.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

MAX_BODY_BYTES = 1024 * 1024


class RejectedRequest(Exception):
    """An HTTP error answer with a reason."""

    def __init__(self, status: int, reason: str) -> None:
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


def parse_json(body: bytes) -> Any:
    if not body:
        raise RejectedRequest(400, "empty body: expected JSON")
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise RejectedRequest(400, "body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise RejectedRequest(
            400, f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise RejectedRequest(400, "JSON nested too deeply") from None


def accepted(**extra: Any) -> JSONResponse:
    return JSONResponse({"status": "accepted", **extra}, status_code=202)
