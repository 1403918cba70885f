"""Output: aligned tables and readable times for people, one JSON document
with stable keys for scripts (``--json``)."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import click

from kokaq.core import MessageView
from kokaq.repl.session import Session

__all__ = [
    "emit",
    "jsonable",
    "message_rows",
    "pretty_payload",
    "readable_ms",
    "readable_time",
    "table",
]


def jsonable(value: Any) -> Any:
    """Core results (NamedTuples, dataclasses, enums, bytes) as plain JSON values.
    A payload that is not UTF-8 text becomes ``payload_base64``."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(value).decode()}
    if hasattr(value, "_asdict"):
        return {k: jsonable(v) for k, v in value._asdict().items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def emit(session: Session, value: Any, human: Callable[[], None]) -> None:
    """Print ``value`` as JSON with --json, else call ``human`` to print it."""
    if session.as_json:
        click.echo(json.dumps(jsonable(value), indent=2, sort_keys=True))
    else:
        human()


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    """Columns padded to their widest cell; numbers right-aligned."""
    cells = [[_cell(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [bool(rows) and all(isinstance(r[i], int) for r in rows) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        padded = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        ]
        return "  ".join(padded).rstrip()

    click.echo(line([h.upper() for h in headers]))
    for row in cells:
        click.echo(line(row))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


def readable_time(ms: int | None) -> str:
    """Epoch milliseconds as UTC, to the second."""
    if ms is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def readable_ms(ms: int | None) -> str:
    """A duration: 1500 -> 1.5s, 90000 -> 1m30s."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:g}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"


def pretty_payload(payload: bytes) -> str:
    """A payload for reading: JSON indented, other text as is, binary as its size."""
    try:
        return json.dumps(json.loads(payload), indent=2, ensure_ascii=False)
    except ValueError:
        pass
    try:
        return payload.decode()
    except UnicodeDecodeError:
        return f"<{len(payload)} bytes, not UTF-8>"


def _preview(payload: bytes, width: int = 40) -> str:
    try:
        text = payload.decode()
    except UnicodeDecodeError:
        return f"<{len(payload)} bytes>"
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def message_rows(messages: Sequence[MessageView], *, with_lock: bool = False) -> None:
    headers = ["id", "state", "priority", "deliveries", "created", "payload"]
    if with_lock:
        headers[4:4] = ["lock_id", "lock_deadline"]
    rows = []
    for m in messages:
        row: list[Any] = [m.id, m.state, m.priority, m.deliveries, readable_time(m.created_at)]
        if with_lock:
            row[4:4] = [m.lock_id, readable_time(m.lock_deadline)]
        rows.append([*row, _preview(m.payload)])
    table(rows, headers)
