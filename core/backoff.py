"""Retry delays: exponential backoff with deterministic jitter."""

from __future__ import annotations

import zlib

from kokaq.core.config import BackoffPolicy

__all__ = ["retry_delay"]


def retry_delay(policy: BackoffPolicy, message_id: str, attempt: int) -> int:
    """Milliseconds to wait before delivery ``attempt + 1`` after failure ``attempt``.

    ``min(cap, base * factor**(attempt-1))``, less up to ``jitter`` of itself.
    The jitter comes from a CRC of the message id and the attempt, not from a
    random source, so every replica computes the same delay. Only IEEE
    multiplications are used (no ``pow``), which are exact-rounded everywhere.
    """
    delay = float(policy.base_ms)
    cap = policy.cap_ms
    if policy.factor > 1:
        for _ in range(max(attempt, 1) - 1):
            if delay >= cap:
                break
            delay *= policy.factor
    delay_ms = min(cap, int(delay))
    if policy.jitter and delay_ms:
        spread = int(delay_ms * policy.jitter)
        digest = zlib.crc32(f"{message_id}:{attempt}".encode())
        delay_ms -= spread * digest // 2**32
    return delay_ms
