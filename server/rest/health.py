"""``/healthz``: the process answers. ``/readyz``: the node has a leader and
has applied everything it knows to be committed (503 otherwise)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

__all__ = ["Readiness", "router"]


class Readiness(NamedTuple):
    ready: bool
    reason: str  # why not, or "ok"
    leader: str | None
    commit_index: int
    applied_index: int


router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="A leader is known and this node has caught up")
async def readyz(request: Request) -> Any:
    check: Callable[[], Readiness] = request.app.state.readiness
    state = check()
    body = {"status": "ok" if state.ready else "unavailable"} | state._asdict()
    return JSONResponse(body, status_code=200 if state.ready else 503)
