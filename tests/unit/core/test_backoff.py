from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kokaq.core import BackoffPolicy, Engine, InvalidArgument, MessageSpec, QueueConfig
from kokaq.core.backoff import retry_delay

from .conftest import Harness, older_snapshot


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


def test_a_message_s_own_backoff_overrides_the_queue_s() -> None:
    h = Harness(QueueConfig(backoff=BackoffPolicy(base_ms=1_000, factor=2.0)))
    own = BackoffPolicy(base_ms=50, factor=3.0, cap_ms=400)
    mine = h.put(backoff=own).message_id
    queue_s = h.put().message_id
    delays: dict[str, list[int]] = {}
    for _ in range(2):
        for message in h.take(2):
            result = h.engine.nack("ns", "q", message.id, message.lock_id or "", now=h.now)
            assert result.visible_at is not None
            delays.setdefault(message.id, []).append(result.visible_at - h.now)
        h.advance(10_000)
    assert delays[mine] == [50, 150]  # 50 * 3^(attempt-1)
    assert delays[queue_s] == [1_000, 2_000]
    assert h.get(mine).backoff == own and h.get(queue_s).backoff is None
    restored = Engine.restore(h.engine.snapshot())
    assert restored.get_message("ns", "q", mine).backoff == own


def test_a_bad_message_backoff_is_refused_naming_the_field() -> None:
    h = Harness()
    with pytest.raises(InvalidArgument) as raised:
        h.put(backoff=BackoffPolicy(factor=0.5))
    assert raised.value.field == "backoff.factor"
    with pytest.raises(InvalidArgument) as raised:
        h.put(backoff={"base_ms": 5})
    assert raised.value.field == "backoff"
    specs = [MessageSpec(payload=b"a"), MessageSpec(payload=b"b", backoff=BackoffPolicy(cap_ms=-1))]
    with pytest.raises(InvalidArgument) as raised:
        h.engine.enqueue_batch("ns", "q", specs, message_ids=["x1", "x2"], now=h.now)
    assert raised.value.field == "items[1].backoff.cap_ms"


def test_snapshots_from_before_message_backoff_still_load() -> None:
    h = Harness()
    h.put()
    old = older_snapshot(h.engine.snapshot(), "m1", 20)  # before backoff … progress
    assert Engine.restore(old).get_message("ns", "q", "m1").backoff is None
