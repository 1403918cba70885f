"""``kokaq repl``: an interactive shell over the same command table as ``kokaq``.

Every line is split like a shell would and run through the click commands
(``kokaq.repl.cli``), with one ``Session`` kept for the whole shell. On top of
them the shell adds ``namespace use``, ``queue use`` (after which queue
commands take that queue: ``enqueue '{"a": 1}'``), ``$ID`` and ``$LOCK`` (the
first message the last ``dequeue`` leased: ``ack $ID $LOCK``), ``help``,
``exit``, and kokaq-repl's ``dlq reprocess`` (= ``dlq redrive``).
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click
from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, History, InMemoryHistory

from kokaq.core import KokaqError
from kokaq.repl.session import Session

__all__ = ["Shell", "history_path"]

_BUILTINS = ["exit", "help", "quit"]
_ALIASES = {("dlq", "reprocess"): ["dlq", "redrive"]}


def history_path() -> Path:
    return Path(os.environ.get("KOKAQ_HISTORY", Path.home() / ".kokaq_history"))


def _root() -> click.Group:
    from kokaq.repl.cli import cli  # noqa: PLC0415 (the CLI imports this module)

    return cli


def _resolve(args: list[str]) -> tuple[click.Command, int]:
    """The command the leading words name, and how many words that took."""
    command: click.Command = _root()
    used = 0
    while isinstance(command, click.Group) and used < len(args):
        sub = command.commands.get(args[used])
        if sub is None:
            break
        command, used = sub, used + 1
    return command, used


def _arguments(command: click.Command) -> list[click.Argument]:
    return [p for p in command.params if isinstance(p, click.Argument)]


def _positionals(command: click.Command, words: list[str]) -> list[str]:
    """The words that are arguments, not options or option values."""
    takes_value = {
        name
        for p in command.params
        if isinstance(p, click.Option) and not p.is_flag and not p.count
        for name in p.opts
    }
    found, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word.startswith("-") and word != "-":
            skip = word in takes_value
        else:
            found.append(word)
    return found


class Shell:
    def __init__(
        self,
        session: Session,
        *,
        history: History | None = None,
        echo_input: bool = False,
        **prompt_options: Any,
    ) -> None:
        self.session = session
        self.echo_input = echo_input  # transcripts show each line as typed
        self._depth: tuple[float, str] = (0.0, "")
        self.prompt: PromptSession[str] = PromptSession(
            history=history if history is not None else InMemoryHistory(),
            completer=_Completer(self),
            bottom_toolbar=self.toolbar,
            **prompt_options,
        )

    def message(self) -> str:
        queue = f" [q: {self.session.queue_in_use}]" if self.session.queue_in_use else ""
        return f"kokaq [ns: {self.session.namespace}]{queue} > "

    def toolbar(self) -> str:
        """The server, its leader, the namespace, and the queue in use's counts,
        asked at most every two seconds."""
        asked, text = self._depth
        if time.monotonic() - asked > 2.0:
            text = f"{self._leader()}  ns {self.session.namespace}{self._queue_depth()}"
            self._depth = (time.monotonic(), text)
        return f" {','.join(self.session.servers)}  {text}"

    def _leader(self) -> str:
        try:
            status = self.session.client.cluster_status()
        except KokaqError as error:
            return f"({error.message})"
        return f"leader {status.leader_grpc or status.leader or 'none'}"

    def _queue_depth(self) -> str:
        name = self.session.queue_in_use
        if name is None:
            return ""
        try:
            stats = self.session.queue(name).stats()
        except KokaqError as error:
            return f"  q {name}: {error.message}"
        return f"  q {name}: {stats.ready} ready, {stats.leased} leased, {stats.dead} dead"

    def run(self) -> None:
        click.echo(
            "kokaq shell: help lists the commands; namespace use / queue use pick defaults;"
            " $ID $LOCK name the last leased message; Ctrl-D or exit leaves."
        )
        while True:
            try:
                line = self.prompt.prompt(self.message)
            except KeyboardInterrupt:  # Ctrl-C at the prompt: a fresh line
                continue
            except EOFError:  # Ctrl-D
                break
            if not self.execute(line):
                break

    def execute(self, line: str) -> bool:
        """Run one line; False when it asks to leave."""
        if self.echo_input:
            click.echo(f"> {line}")
        try:
            args = shlex.split(line)
        except ValueError as error:
            click.echo(f"Error: {error}", err=True)
            return True
        if not args:
            return True
        if args[0] in ("exit", "quit"):
            return False
        if args[0] == "help":
            args = [*args[1:], "--help"]
        if len(args) >= 2 and args[1] == "use" and args[0] in ("namespace", "queue"):
            self._use(args[0], args[2:])
            return True
        args = [self._expand(a) for a in args]
        if len(args) >= 2 and (alias := _ALIASES.get((args[0], args[1]))):
            args = alias + args[2:]
        self._run(self._with_queue_in_use(args))
        self._depth = (0.0, "")
        return True

    def _expand(self, word: str) -> str:
        """$ID and $LOCK: the id and lock of the first message the last dequeue leased."""
        if word in ("$ID", "$LOCK") and self.session.last_leased:
            first = self.session.last_leased[0]
            return first.id if word == "$ID" else first.lock_id or ""
        return word

    def _use(self, what: str, rest: list[str]) -> None:
        if len(rest) != 1:
            click.echo(f"Error: usage: {what} use NAME ({what} use - forgets it)", err=True)
            return
        name = None if rest[0] == "-" else rest[0]
        try:
            if what == "namespace":
                if name is not None:
                    self.session.client.get_namespace(name)
                self.session.namespace = name or "default"
                self.session.queue_in_use = None
            else:
                if name is not None:
                    self.session.client.get_queue(self.session.namespace, name)
                self.session.queue_in_use = name
        except KokaqError as error:
            click.echo(f"Error: {error.message}", err=True)

    def _with_queue_in_use(self, args: list[str]) -> list[str]:
        """After ``queue use Q``, commands acting on a queue get Q as their first argument."""
        if self.session.queue_in_use is None or "--help" in args:
            return args
        command, used = _resolve(args)
        arguments = _arguments(command)
        if not arguments or arguments[0].name != "queue":
            return args
        variadic = any(a.nargs == -1 for a in arguments)
        if variadic or len(_positionals(command, args[used:])) < len(arguments):
            return [*args[:used], self.session.queue_in_use, *args[used:]]
        return args  # every argument given: the queue too

    def _run(self, args: list[str]) -> None:
        try:
            _root().main(args, prog_name="kokaq", standalone_mode=False, obj=self.session)
        except click.exceptions.Exit:
            pass  # an error already printed, with its exit code
        except click.ClickException as error:
            error.show()
        except (click.Abort, KeyboardInterrupt):
            click.echo("cancelled", err=True)


class _Completer(Completer):
    """Commands, options, and namespace / queue names fetched from the server."""

    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        self._names: dict[str, tuple[float, list[str]]] = {}

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        text = document.text_before_cursor
        try:
            words = shlex.split(text)
        except ValueError:
            return
        current = "" if not text or text[-1].isspace() else words.pop()
        command, used = _resolve(words)
        if current.startswith("-"):
            candidates = [o for p in command.params for o in p.opts if o.startswith("--")]
        elif isinstance(command, click.Group) and used == len(words):
            candidates = list(command.commands) + (_BUILTINS if used == 0 else [])
            if used == 1 and words[0] in ("namespace", "queue"):
                candidates.append("use")
        else:
            candidates = self._names_for(words, command, used)
        for candidate in sorted(set(candidates)):
            if candidate.startswith(current):
                yield Completion(candidate, start_position=-len(current))

    def _names_for(self, words: list[str], command: click.Command, used: int) -> list[str]:
        """Namespace or queue names where the next argument is one."""
        positional = _positionals(command, words[used:])
        group = words[0] if words[0] in ("namespace", "queue") else None
        if group and positional == ["use"]:
            return self._names_of(group)
        if positional:
            return []
        if group and used == 2 and command.name != "create":
            return self._names_of(group)
        arguments = _arguments(command)
        if arguments and arguments[0].name == "queue" and self.shell.session.queue_in_use is None:
            return self._names_of("queue")
        return []

    def _names_of(self, kind: str) -> list[str]:
        session = self.shell.session
        key = f"{kind} in {session.namespace}"
        asked, names = self._names.get(key, (0.0, []))
        if time.monotonic() - asked > 5.0:
            try:
                if kind == "queue":
                    names = [q.name for q in session.client.list_queues(session.namespace)]
                else:
                    names = [n.name for n in session.client.list_namespaces()]
            except KokaqError:
                names = []
            self._names[key] = (time.monotonic(), names)
        return names


def open_history() -> History:
    path = history_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileHistory(str(path))
    except OSError:
        return InMemoryHistory()
