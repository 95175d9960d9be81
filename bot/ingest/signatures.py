"""Webhook authentication: PagerDuty v1 signatures and Alertmanager bearer tokens."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable


def pagerduty_signature(body: bytes, secret: str) -> str:
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_pagerduty_signature(body: bytes, header: str | None, secrets: Iterable[str]) -> bool:
    """True when any `v1=` value of the header matches any configured secret.

    PagerDuty sends several comma-separated signatures while a secret is being
    rotated; any one match authenticates. Every comparison is constant-time
    and runs over the raw body bytes exactly as received.
    """
    if not header:
        return False
    offered = [part.strip() for part in header.split(",") if part.strip().startswith("v1=")]
    if not offered or len(offered) > 16:
        return False
    matched = False
    for secret in secrets:
        expected = pagerduty_signature(body, secret).encode()
        for signature in offered:
            # No early exit: the time taken does not depend on which one matched.
            matched |= hmac.compare_digest(expected, signature.encode())
    return matched


def verify_bearer(header: str | None, token: str) -> bool:
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer ") :].strip().encode(), token.encode())
