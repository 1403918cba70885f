from __future__ import annotations

import dataclasses

import pytest

from kokaq.core import BackoffPolicy, ConfigError, NamespaceConfig, QueueConfig, RetentionPolicy
from kokaq.core.config import MAX_PAYLOAD_LIMIT


def test_defaults_are_valid_and_documented_values() -> None:
    config = QueueConfig()
    config.validate()
    assert config.visibility_timeout_ms == 30_000
    assert config.max_deliveries == 10
    assert config.dead_letter is True
    assert config.default_ttl_ms is None
    assert (config.min_priority, config.max_priority) == (0, 2**64 - 1)
    assert config.backoff == BackoffPolicy(1_000, 2.0, 3_600_000, 0.0)
    assert config.retention == RetentionPolicy(3_600_000, 10_000)
    assert config.dedup_window_ms == 300_000
    assert config.max_length is None
    assert config.max_payload_bytes == 1024 * 1024


BAD = [
    ({"visibility_timeout_ms": 999}, "visibility_timeout_ms"),
    ({"visibility_timeout_ms": 12 * 3_600_000 + 1}, "visibility_timeout_ms"),
    ({"visibility_timeout_ms": 1.5}, "visibility_timeout_ms"),
    ({"max_deliveries": -1}, "max_deliveries"),
    ({"dead_letter": 1}, "dead_letter"),
    ({"default_ttl_ms": 0}, "default_ttl_ms"),
    ({"min_priority": -1}, "min_priority"),
    ({"max_priority": 2**64}, "max_priority"),
    ({"min_priority": 5, "max_priority": 4}, "min_priority"),
    ({"backoff": BackoffPolicy(base_ms=-1)}, "backoff.base_ms"),
    ({"backoff": BackoffPolicy(factor=0.5)}, "backoff.factor"),
    ({"backoff": BackoffPolicy(base_ms=10, cap_ms=5)}, "backoff.cap_ms"),
    ({"backoff": BackoffPolicy(jitter=1.5)}, "backoff.jitter"),
    ({"backoff": {"base_ms": 1}}, "backoff"),
    ({"retention": RetentionPolicy(period_ms=-1)}, "retention.period_ms"),
    ({"retention": RetentionPolicy(max_count=-1)}, "retention.max_count"),
    ({"dedup_window_ms": -1}, "dedup_window_ms"),
    ({"max_length": 0}, "max_length"),
    ({"max_payload_bytes": 0}, "max_payload_bytes"),
    ({"max_payload_bytes": MAX_PAYLOAD_LIMIT + 1}, "max_payload_bytes"),
]


@pytest.mark.parametrize(("changes", "field"), BAD)
def test_validate_names_the_broken_field(changes: dict[str, object], field: str) -> None:
    config = dataclasses.replace(QueueConfig(), **changes)  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as raised:
        config.validate()
    assert raised.value.field == field
    assert field in str(raised.value)


def test_round_trip_through_dict() -> None:
    config = QueueConfig(max_length=7, backoff=BackoffPolicy(jitter=0.5))
    assert QueueConfig.from_dict(config.to_dict()) == config


def test_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigError) as raised:
        QueueConfig.from_dict({"visibility_timeout": 5})
    assert raised.value.field == "visibility_timeout"
    with pytest.raises(ConfigError) as raised:
        QueueConfig.from_dict({"backoff": {"bsae_ms": 5}})
    assert raised.value.field == "backoff.bsae_ms"


def test_namespace_config() -> None:
    NamespaceConfig(description="team a", max_queues=3).validate()
    with pytest.raises(ConfigError, match="description"):
        NamespaceConfig(description="x" * 1025).validate()
    with pytest.raises(ConfigError, match="max_queues"):
        NamespaceConfig(max_queues=0).validate()
    assert NamespaceConfig.from_dict({"description": "d"}) == NamespaceConfig("d")
