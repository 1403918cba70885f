"""``kokaq schedule``: jobs submitted at the times of a cron expression."""

from __future__ import annotations

import click

from kokaq.client import calls
from kokaq.core import ScheduleSpec
from kokaq.protocol.jobs import job_spec, schedule_json
from kokaq.repl.jobs import parse_payload, run_making_queue, show_fields
from kokaq.repl.params import DURATION
from kokaq.repl.render import emit, table
from kokaq.repl.session import Session, client_command

__all__ = ["schedule"]


@click.group()
def schedule() -> None:
    """Schedules: a job submitted at each time of a cron expression."""


@schedule.command(
    "put",
    epilog="""\b
Examples:
  kokaq schedule put nightly-report report_build '{"kind": "daily"}' --cron "0 2 * * *"
  kokaq schedule put heartbeat ping --cron "*/10 * * * * *"     # every 10 s (seconds first)
  kokaq schedule put standup remind --cron "30 9 * * 1-5" --timezone Europe/Paris
  kokaq schedule put nightly-report report_build --cron "0 2 * * *" --paused""",
)
@click.argument("name")
@click.argument("job_type")
@click.argument("payload", default="{}")
@click.option("--cron", required=True, help="5 fields (min hour day month weekday), or 6.")
@click.option("--timezone", "-z", default="UTC", show_default=True, help="IANA name.")
@click.option("--queue", "-q", default="default", show_default=True, help="Made on first use.")
@click.option("--priority", "-p", type=int, default=0, show_default=True, help="0 to 2^64-1.")
@click.option("--max-retries", type=click.IntRange(0, 10_000), default=3, show_default=True)
@click.option("--ttl", type=DURATION, help="Give up on a job not done within this long.")
@click.option("--fairness-key", help="The tenant its jobs are fair-shared as.")
@click.option("--paused", is_flag=True, help="Keep it, fire nothing (put it again to resume).")
@click.option(
    "--skip-if-running", is_flag=True, help="No new job while its last one waits or runs."
)
@client_command
def put(
    session: Session,
    name: str,
    job_type: str,
    payload: str,
    cron: str,
    timezone: str,
    queue: str,
    priority: int,
    max_retries: int,
    ttl: int | None,
    fairness_key: str | None,
    paused: bool,
    skip_if_running: bool,
) -> None:
    """Create schedule NAME, or replace what it does (its history stays): a
    TYPE job with the JSON PAYLOAD (default {}) at each time of --cron."""
    template = job_spec(
        job_type,
        parse_payload(payload),
        priority=priority,
        max_retries=max_retries,
        ttl_ms=ttl,
        fairness_key=fairness_key,
    )
    spec = ScheduleSpec(queue, cron, template, timezone, paused, skip_if_running)
    info = run_making_queue(session, queue, calls.put_schedule(session.namespace, name, spec))
    shown = schedule_json(info)
    state = "paused" if paused else f"next at {shown['next_fire_at']}"
    emit(session, shown, lambda: click.echo(f"schedule {name}: {state}"))


@schedule.command("list", epilog="Example: kokaq schedule list -n billing")
@client_command
def schedule_list(session: Session) -> None:
    """The namespace's schedules: what, when next, how often fired."""
    shown = [schedule_json(info) for info in session.client.list_schedules(session.namespace)]
    rows = [
        [
            s["name"],
            s["type"],
            s["queue"],
            s["cron"],
            s["timezone"],
            "paused" if s["paused"] else s["next_fire_at"],
            s["fired"],
            s["last_error"],
        ]
        for s in shown
    ]
    headers = ["name", "type", "queue", "cron", "timezone", "next", "fired", "last_error"]
    emit(session, shown, lambda: table(rows, headers))


@schedule.command("get", epilog="Example: kokaq schedule get nightly-report --json")
@click.argument("name")
@client_command
def schedule_get(session: Session, name: str) -> None:
    """One schedule, with its last fire and the job it submitted."""
    shown = schedule_json(session.client.get_schedule(session.namespace, name))
    emit(session, shown, lambda: show_fields(shown))


@schedule.command("trigger", epilog="Example: kokaq schedule trigger nightly-report")
@click.argument("name")
@client_command
def schedule_trigger(session: Session, name: str) -> None:
    """Submit the schedule's job now, besides its fires (paused or not)."""
    result = session.client.trigger_schedule(session.namespace, name)
    emit(session, {"id": result.message_id}, lambda: click.echo(f"submitted {result.message_id}"))


@schedule.command("pause", epilog="Example: kokaq schedule pause nightly-report")
@click.argument("name")
@client_command
def schedule_pause(session: Session, name: str) -> None:
    """Fire nothing until the schedule is resumed."""
    session.client.pause_schedule(session.namespace, name)
    emit(session, {"paused": name}, lambda: click.echo(f"paused schedule {name}"))


@schedule.command("resume", epilog="Example: kokaq schedule resume nightly-report")
@click.argument("name")
@client_command
def schedule_resume(session: Session, name: str) -> None:
    """Fire again from the next time to come (times passed while paused are skipped)."""
    session.client.resume_schedule(session.namespace, name)
    emit(session, {"resumed": name}, lambda: click.echo(f"resumed schedule {name}"))


@schedule.command("delete", epilog="Example: kokaq schedule delete nightly-report")
@click.argument("name")
@client_command
def schedule_delete(session: Session, name: str) -> None:
    """Delete a schedule (the jobs it submitted stay)."""
    session.client.delete_schedule(session.namespace, name)
    emit(session, {"deleted": name}, lambda: click.echo(f"deleted schedule {name}"))
