"""Command-line value types: durations, headers, JSON settings."""

from __future__ import annotations

import json
import re
from typing import Any

import click

__all__ = ["DURATION", "HEADER", "JSON_OBJECT"]

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?")


class Duration(click.ParamType[int, Any]):
    """``1500ms``, ``30s``, ``5m``, ``2h``, ``1d``, or ``1m30s``; a bare number is
    seconds. Converts to integer milliseconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        total, position = 0.0, 0
        for match in _DURATION.finditer(text):
            if match.start() != position:
                break
            total += float(match.group(1)) * _UNITS[match.group(2) or "s"]
            position = match.end()
        if not text or position != len(text):
            self.fail(f"{value!r} is not a duration (like 500ms, 30s, 5m, 2h)", param, ctx)
        return round(total)


class Header(click.ParamType[tuple[str, str], Any]):
    """``key=value``."""

    name = "key=value"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        key, sep, text = str(value).partition("=")
        if not sep or not key:
            self.fail(f"{value!r} is not key=value", param, ctx)
        return key, text


class JsonObject(click.ParamType[dict[str, Any], Any]):
    """A JSON object, given inline or as ``@file.json``."""

    name = "json"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        text = str(value)
        try:
            if text.startswith("@"):
                with open(text[1:], encoding="utf-8") as f:
                    text = f.read()
            data = json.loads(text)
        except OSError as error:
            self.fail(f"cannot read {text[1:]!r}: {error.strerror}", param, ctx)
        except json.JSONDecodeError as error:
            self.fail(f"not JSON: {error}", param, ctx)
        if not isinstance(data, dict):
            self.fail("must be a JSON object", param, ctx)
        return data


DURATION = Duration()
HEADER = Header()
JSON_OBJECT = JsonObject()
