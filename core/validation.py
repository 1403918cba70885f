"""Input checks shared by the engine and the configuration objects.

Each check raises ``InvalidArgument`` (or the class passed as ``error``) naming
the field and the rule, and returns the value so calls can be chained.
"""

from __future__ import annotations

import re

from kokaq.core.errors import InvalidArgument

__all__ = [
    "MAX_PRIORITY",
    "check_bool",
    "check_id",
    "check_int",
    "check_key",
    "check_name",
    "check_optional_int",
    "check_text",
]

#: Priorities are unsigned 64-bit integers; larger is served first.
MAX_PRIORITY = 2**64 - 1

_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def check_name(field: str, value: object) -> str:
    """Namespace and queue names: 1-128 characters of ``[A-Za-z0-9._-]``."""
    if type(value) is not str or _NAME.fullmatch(value) is None:
        raise InvalidArgument(field, "must be 1-128 characters of A-Z a-z 0-9 . _ -")
    return value


def check_id(field: str, value: object) -> str:
    """Message and lock ids: 1-128 characters of ``[A-Za-z0-9._:-]``."""
    if type(value) is str and value.isalnum() and value.isascii() and len(value) <= 128:
        return value  # the common case, without the regex
    if type(value) is not str or _ID.fullmatch(value) is None:
        raise InvalidArgument(field, "must be 1-128 characters of A-Z a-z 0-9 . _ : -")
    return value


def check_key(
    field: str,
    value: object,
    max_len: int = 128,
    error: type[InvalidArgument] = InvalidArgument,
) -> str:
    """Free-form keys (fairness, dedup, header names): printable, 1..max_len."""
    if type(value) is not str or not 1 <= len(value) <= max_len or not value.isprintable():
        raise error(field, f"must be 1-{max_len} printable characters")
    return value


def check_text(
    field: str,
    value: object,
    max_bytes: int,
    error: type[InvalidArgument] = InvalidArgument,
) -> str:
    """Free text (error messages, descriptions): at most ``max_bytes`` of UTF-8."""
    if type(value) is not str:
        raise error(field, "must be a string")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise error(field, f"is {size} bytes of UTF-8, at most {max_bytes} allowed")
    return value


def check_int(
    field: str,
    value: object,
    low: int,
    high: int,
    error: type[InvalidArgument] = InvalidArgument,
) -> int:
    """An integer (not a bool) within ``[low, high]``."""
    if type(value) is not int:
        raise error(field, "must be an integer")
    if not low <= value <= high:
        raise error(field, f"must be between {low} and {high}, got {value}")
    return value


def check_optional_int(
    field: str,
    value: object,
    low: int,
    high: int,
    error: type[InvalidArgument] = InvalidArgument,
) -> int | None:
    if value is None:
        return None
    return check_int(field, value, low, high, error)


def check_bool(field: str, value: object, error: type[InvalidArgument] = InvalidArgument) -> bool:
    if type(value) is not bool:
        raise error(field, "must be true or false")
    return value
