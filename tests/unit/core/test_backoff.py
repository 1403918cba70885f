from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kokaq.core import BackoffPolicy
from kokaq.core.backoff import retry_delay


def test_exponential_then_capped() -> None:
    policy = BackoffPolicy(base_ms=1_000, factor=2.0, cap_ms=5_000)
    assert [retry_delay(policy, "m", n) for n in range(1, 6)] == [1_000, 2_000, 4_000, 5_000, 5_000]


def test_goquorra_default_shape() -> None:
    # GoQuorra: min(2^attempt s, 1 h) -- base 2 s, factor 2, cap 1 h.
    policy = BackoffPolicy(base_ms=2_000, factor=2.0, cap_ms=3_600_000)
    assert [retry_delay(policy, "m", n) for n in (1, 2, 3, 12, 40)] == [
        2_000,
        4_000,
        8_000,
        3_600_000,
        3_600_000,
    ]


def test_factor_one_is_constant_and_huge_attempts_are_cheap() -> None:
    assert retry_delay(BackoffPolicy(base_ms=700, factor=1.0), "m", 10**9) == 700
    assert retry_delay(BackoffPolicy(base_ms=0, cap_ms=0), "m", 5) == 0


@given(st.text(min_size=1, max_size=20), st.integers(1, 50), st.floats(0, 1))
def test_jitter_is_deterministic_and_bounded(message_id: str, attempt: int, jitter: float) -> None:
    policy = BackoffPolicy(base_ms=1_000, factor=2.0, cap_ms=60_000, jitter=jitter)
    plain = retry_delay(
        BackoffPolicy(base_ms=1_000, factor=2.0, cap_ms=60_000), message_id, attempt
    )
    delay = retry_delay(policy, message_id, attempt)
    assert delay == retry_delay(policy, message_id, attempt)
    assert plain - int(plain * jitter) <= delay <= plain


def test_jitter_spreads_messages() -> None:
    policy = BackoffPolicy(base_ms=10_000, jitter=1.0)
    delays = {retry_delay(policy, f"m{i}", 1) for i in range(100)}
    assert len(delays) > 90
