"""What every client command shares: the connection options, applied by one
decorator, and the session they open (a lazily connected ``Client``).

The REPL keeps one ``Session`` for the whole shell and puts it in the click
context's ``obj``; a command run from the shell uses it instead of opening one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from kokaq.client import Client, Queue, RetryPolicy
from kokaq.core import MessageView

__all__ = ["Session", "client_command"]

_F = TypeVar("_F", bound=Callable[..., Any])

#: How long a command keeps retrying an unreachable node before it gives up.
RETRY_SECONDS = 5.0


@dataclass
class Session:
    servers: tuple[str, ...] = ("127.0.0.1:9000",)
    api_key: str | None = None
    namespace: str = "default"
    as_json: bool = False
    queue_in_use: str | None = None  # the REPL's `queue use`
    last_leased: list[MessageView] = field(default_factory=list)  # for the REPL's $ID, $LOCK
    _client: Client | None = field(default=None, repr=False)

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(
                list(self.servers), api_key=self.api_key, retry=RetryPolicy(RETRY_SECONDS)
            )
        return self._client

    def queue(self, name: str) -> Queue:
        return self.client.queue(self.namespace, name)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def client_command(function: _F) -> _F:
    """Add --server, --api-key, --namespace and --json, and pass a ``Session``
    as the first argument. Options given override the shell's session."""

    @click.option(
        "--server",
        "servers",
        multiple=True,
        envvar="KOKAQ_SERVER",
        help="Node address host:port; repeat or comma-separate for a cluster "
        "[env KOKAQ_SERVER; default 127.0.0.1:9000].",
    )
    @click.option("--api-key", envvar="KOKAQ_API_KEY", help="API key [env KOKAQ_API_KEY].")
    @click.option(
        "--namespace",
        "-n",
        envvar="KOKAQ_NAMESPACE",
        help="Namespace [env KOKAQ_NAMESPACE; default: default].",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
    @functools.wraps(function)
    def run(
        servers: tuple[str, ...],
        api_key: str | None,
        namespace: str | None,
        as_json: bool,
        **kwargs: Any,
    ) -> Any:
        shell = click.get_current_context().find_object(Session)
        if shell is not None and not servers and api_key is None:
            session, own = shell, False
            saved = (session.namespace, session.as_json)
            session.namespace = namespace or session.namespace
            session.as_json = as_json or session.as_json
        else:
            session, own = (
                Session(
                    servers=servers or ("127.0.0.1:9000",),
                    api_key=api_key,
                    namespace=namespace or (shell.namespace if shell else "default"),
                    as_json=as_json,
                ),
                True,
            )
        try:
            return function(session, **kwargs)
        finally:
            if own:
                session.close()
            else:
                session.namespace, session.as_json = saved

    return run  # type: ignore[return-value]
