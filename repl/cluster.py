"""``kokaq cluster status``."""

from __future__ import annotations

import click

from kokaq.repl.render import emit, table
from kokaq.repl.session import Session, client_command

__all__ = ["cluster"]


@click.group()
def cluster() -> None:
    """The Raft group: who leads, and how far each member is."""


@cluster.command(
    "status",
    epilog="""\b
Examples:
  kokaq cluster status
  kokaq cluster status --server 10.0.0.6:9000 --json   # one member's view""",
)
@client_command
def status(session: Session) -> None:
    """The node's view: role, leader, term, commit and applied index, members."""
    found = session.client.cluster_status()

    def human() -> None:
        click.echo(f"node:     {found.node} ({found.role})")
        click.echo(f"leader:   {found.leader or '-'} (gRPC {found.leader_grpc or 'unknown'})")
        click.echo(f"term:     {found.term}")
        click.echo(f"quorum:   {'yes' if found.has_quorum else 'no'}")
        click.echo(f"commit:   {found.commit_index}   applied: {found.applied_index}")
        if found.members:
            rows = [
                [
                    m.address,
                    "yes" if m.connected else "no",
                    m.match_index,
                    None if m.match_index is None else found.commit_index - m.match_index,
                ]
                for m in found.members
            ]
            table(rows, ["member", "connected", "match_index", "lag"])

    emit(session, found, human)
