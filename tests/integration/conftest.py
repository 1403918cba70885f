from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kokaq.client.client import Client
from kokaq.client.testing import InProcessTransport
from tests.integration.nodes import NodeProcess, start_node


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = start_node(str(tmp_path_factory.mktemp("node")))
    yield process
    process.kill()


@pytest.fixture(params=["node", "in_process"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Client]:
    """The SDK against a real node process, and against the in-process transport."""
    if request.param == "node":
        c = Client(request.getfixturevalue("node").grpc)
    else:
        c = Client(transport=InProcessTransport())
    yield c
    c.close()
