"""Drive the asyncio SDK from blocking test code, so the one SDK suite also
runs ``AsyncClient`` (and the ``AsyncQueue`` / ``AsyncLeased`` it hands out)."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from typing import Any

from kokaq.client import AsyncClient, AsyncLeased, AsyncQueue

_ASYNC_SDK = (AsyncClient, AsyncQueue, AsyncLeased)


class EventLoopThread:
    """An event loop on its own thread; ``run`` waits for a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class Blocking:
    """A blocking view of an async SDK object: every coroutine method is awaited
    on the loop thread; SDK objects it returns are wrapped the same way."""

    def __init__(self, target: Any, loop: EventLoopThread) -> None:
        self._target = target
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return self._wrap(value)
        return self._blocking(value)

    def __repr__(self) -> str:
        return repr(self._target)

    def _blocking(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()})
            if inspect.iscoroutine(result):
                result = self._loop.run(result)
            return self._wrap(result)

        return call

    def _wrap(self, value: Any) -> Any:
        if isinstance(value, _ASYNC_SDK):
            return Blocking(value, self._loop)
        if isinstance(value, list):
            return [self._wrap(v) for v in value]
        return value


def _unwrap(value: Any) -> Any:
    if isinstance(value, Blocking):
        return value._target
    if type(value) in (list, tuple):  # not a NamedTuple such as MessageView
        return type(value)(_unwrap(v) for v in value)
    return value
