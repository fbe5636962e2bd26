"""Noticing a Redis connection that went silent.

A connection whose peer vanished without closing it (a host lost, a failover behind an
address, a NAT or load-balancer entry dropped) reads like a quiet one: every read just times
out, and TCP gives up only after ~15 minutes of retransmissions. redis-py's health check sends
a PING but never waits for its answer. So a connection quiet for a while is asked for a PONG,
and one that gives none in time is broken.
"""

from __future__ import annotations

import time


class QuietWatch:
    """For a loop that reads a connection with a timeout: call :meth:`heard` for each message,
    and :meth:`ping_due` after each read that timed out."""

    def __init__(self, ping_after_s: float, answer_within_s: float) -> None:
        self._ping_after_s = ping_after_s
        self._answer_within_s = answer_within_s
        self._quiet_since = time.monotonic()
        self._pinged_at: float | None = None

    def heard(self, *, pong: bool) -> None:
        self._quiet_since = time.monotonic()
        if pong:
            self._pinged_at = None

    def ping_due(self) -> bool:
        """Whether to send a PING now; raises TimeoutError when the last one went unanswered
        for ``answer_within_s``."""
        now = time.monotonic()
        if self._pinged_at is not None:
            if now - self._pinged_at >= self._answer_within_s:
                raise TimeoutError(f"no PONG within {self._answer_within_s} s")
            return False
        if now - self._quiet_since < self._ping_after_s:
            return False
        self._pinged_at = now
        return True
