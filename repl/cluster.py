"""``kokaq cluster status | add | remove | transfer``."""

from __future__ import annotations

from typing import Any

import click

from kokaq.repl.render import emit, table
from kokaq.repl.session import Session, client_command

__all__ = ["cluster"]


@click.group()
def cluster() -> None:
    """The Raft group: who leads, and how far each member is."""


def _show(session: Session, found: Any) -> None:
    def human() -> None:
        click.echo(f"node:     {found.node} ({found.role})")
        click.echo(f"leader:   {found.leader or '-'} (gRPC {found.leader_grpc or 'unknown'})")
        click.echo(f"term:     {found.term}")
        click.echo(f"quorum:   {'yes' if found.has_quorum else 'no'}")
        click.echo(f"commit:   {found.commit_index}   applied: {found.applied_index}")
        click.echo(f"log format: {found.log_format} (this node applies {found.node_log_format})")
        if found.members:
            rows = [
                [
                    m.address,
                    "yes" if m.connected else "no",
                    m.match_index,
                    None if m.match_index is None else found.commit_index - m.match_index,
                    m.log_format,
                ]
                for m in found.members
            ]
            table(rows, ["member", "connected", "match_index", "lag", "log_format"])

    emit(session, found, human)


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
    _show(session, session.client.cluster_status())


@cluster.command(
    "add",
    epilog="""\b
Start the new node first, with --peers naming the current members:
  kokaq server --raft-listen 10.0.0.8:9100 --peers 10.0.0.5:9100,10.0.0.6:9100,10.0.0.7:9100 \\
               --cluster-secret "$SECRET"
then, against any member:
  kokaq cluster add 10.0.0.8:9100""",
)
@click.argument("raft_address")
@client_command
def add(session: Session, raft_address: str) -> None:
    """Add a member (its Raft address); one change at a time."""
    _show(session, session.client.add_member(raft_address))


@cluster.command(
    "remove",
    epilog="""\b
Example:
  kokaq cluster remove 10.0.0.7:9100     # then stop that node""",
)
@click.argument("raft_address")
@client_command
def remove(session: Session, raft_address: str) -> None:
    """Remove a member (its Raft address) from the group."""
    _show(session, session.client.remove_member(raft_address))


@cluster.command(
    "transfer",
    epilog="""\b
Examples:
  kokaq cluster transfer                      # to the most caught-up follower
  kokaq cluster transfer --to 10.0.0.6:9100   # before restarting the leader""",
)
@click.option("--to", "target", help="A follower's Raft address (default: the most caught up).")
@client_command
def transfer(session: Session, target: str | None) -> None:
    """Hand leadership to a caught-up follower."""
    _show(session, session.client.transfer_leadership(target))
