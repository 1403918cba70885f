from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from kokaq.client import AsyncClient, Client
from kokaq.client.testing import AsyncInProcessTransport, InProcessTransport
from tests.integration.blocking import Blocking, EventLoopThread
from tests.integration.nodes import NodeProcess, start_node


@pytest.fixture(scope="session", autouse=True)
def no_node_outlives_the_run() -> Iterator[None]:
    yield
    for process in NodeProcess.started:
        process.kill()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = start_node(str(tmp_path_factory.mktemp("node")))
    yield process
    process.kill()


@pytest.fixture(params=["node", "in_process", "async-node", "async-in_process"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Client]:
    """The SDK against a real node process and against the in-process transport,
    through the blocking ``Client`` and through ``AsyncClient``."""
    on_node = request.param.endswith("node")
    address = request.getfixturevalue("node").grpc if on_node else None
    if not request.param.startswith("async"):
        c = Client(address) if on_node else Client(transport=InProcessTransport())
        yield c
        c.close()
        return
    loop = EventLoopThread()
    target: Any = (
        AsyncClient(address) if on_node else AsyncClient(transport=AsyncInProcessTransport())
    )
    yield cast(Client, Blocking(target, loop))
    loop.run(target.close())
    loop.stop()
