"""Pacing and backoff shared by every output's delivery worker."""

from __future__ import annotations

import random


class TokenBucket:
    """Token bucket of one pacing key (a Slack channel, an SMTP host) plus a Retry-After block."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.updated = float(burst), now
        self.blocked_until = 0.0

    def _refill(self, now: float) -> None:
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def ready_at(self, now: float) -> float:
        self._refill(now)
        token_at = now if self.tokens >= 1 else now + (1 - self.tokens) / self.rate
        return max(token_at, self.blocked_until)

    def spend(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1

    def block(self, now: float, seconds: float) -> None:
        self._refill(now)
        self.tokens = 0.0
        self.blocked_until = max(self.blocked_until, now + seconds)


def backoff_delay(attempts: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with "equal jitter": between half and all of min(cap, base·2^(n-1))."""
    exponent = max(0, min(attempts - 1, 32))
    ceiling = min(cap, base * float(2**exponent))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)
