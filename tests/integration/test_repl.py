"""The REPL: golden transcripts replayed through prompt_toolkit's pipe input
against a real node, and one run of ``kokaq repl`` in a real pseudo-terminal.

A transcript is the lines typed (``> …``) each followed by what the shell
printed, with ids and times masked. ``KOKAQ_REWRITE_TRANSCRIPTS=1`` rewrites
the files from what the shell prints now (review the diff before committing).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from kokaq.repl.session import Session
from kokaq.repl.shell import Shell
from tests.integration.nodes import NodeProcess, start_node

TRANSCRIPTS = Path(__file__).parent / "transcripts"
_ESCAPES = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")
_MASKS = [
    (re.compile(r"sdk-[0-9a-f]{24}-[0-9a-f]+"), "<dedup-key>"),
    (re.compile(r"\b[0-9a-f]{24}\b"), "<id>"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ"), "<time>"),
    (re.compile(r"oldest ready: \S+ ago"), "oldest ready: <age> ago"),
]


def mask(text: str) -> str:
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return text


def replay(node: NodeProcess, lines: list[str]) -> str:
    """Type the lines into a shell through a pipe; what it printed, masked."""
    printed = io.StringIO()
    session = Session(servers=(node.grpc,))
    with (
        create_pipe_input() as pipe,
        contextlib.redirect_stdout(printed),
        contextlib.redirect_stderr(printed),
    ):
        shell = Shell(session, echo_input=True, input=pipe, output=DummyOutput())
        pipe.send_text("".join(f"{line}\n" for line in lines))
        pipe.close()  # then Ctrl-D: end of input
        shell.run()
    session.close()
    return mask(printed.getvalue())


@pytest.mark.parametrize("path", sorted(TRANSCRIPTS.glob("*.txt")), ids=lambda p: p.stem)
def test_transcript(path: Path, tmp_path: Path) -> None:
    expected = path.read_text()
    lines = [line[2:] for line in expected.splitlines() if line.startswith("> ")]
    node = start_node(str(tmp_path))
    try:
        actual = replay(node, lines)
    finally:
        node.kill()
    if os.environ.get("KOKAQ_REWRITE_TRANSCRIPTS") == "1":
        path.write_text(actual)
    assert actual == expected


def test_repl_in_a_terminal(node: NodeProcess, tmp_path: Path) -> None:
    """``kokaq repl`` on a real pseudo-terminal: type, read the screen, leave."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the shell, its terminal the pty
        os.environ.update(KOKAQ_HISTORY=str(tmp_path / "history"), TERM="xterm")
        os.execv(
            sys.executable,
            [sys.executable, "-c", "from kokaq.repl.cli import main; main()",
             "repl", "--server", node.grpc],
        )  # fmt: skip
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    screen = b""

    def read_until(marker: bytes, timeout: float = 15.0) -> None:
        """Wait until ``marker`` is on the screen (terminal escape codes left out)."""
        nonlocal screen
        deadline = time.monotonic() + timeout
        while marker not in _ESCAPES.sub(b"", screen):
            left = deadline - time.monotonic()
            assert left > 0, f"{marker!r} never appeared on:\n{screen.decode(errors='replace')}"
            if select.select([fd], [], [], left)[0]:
                with contextlib.suppress(OSError):
                    chunk = os.read(fd, 65536)
                    screen += chunk
                    # Answer cursor position requests as a terminal would.
                    for _ in range(chunk.count(b"\x1b[6n")):
                        os.write(fd, b"\x1b[1;1R")

    try:
        read_until(b"kokaq [ns: default] >")
        os.write(fd, b"namespace create term-ns\r")
        read_until(b"created namespace term-ns")
        os.write(fd, b"namespace use term-ns\r")
        read_until(b"kokaq [ns: term-ns] >")
        os.write(fd, b"queue create jobs\r")
        read_until(b"created queue term-ns/jobs")
        os.write(fd, b"queue use jobs\r")
        read_until(b"[q: jobs] >")
        os.write(fd, b"enqueue hello\r")
        read_until(b"(ready)")
        read_until(b"1 ready")  # the bottom toolbar shows the queue's depth...
        read_until(f"leader {node.grpc}".encode())  # ...and the leader
        os.write(fd, b"queue get nosuch\r")
        read_until(b"Error: queue term-ns/nosuch not found")  # and the shell lives on
        os.write(fd, b"exit\r")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        history = (tmp_path / "history").read_text()
        assert "queue use jobs" in history  # kept for the next session
    finally:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)


def test_cli_entry_point_has_repl() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from kokaq.repl.cli import main; main()", "repl", "--help"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert "interactive shell" in result.stdout


def test_completion_of_commands_options_and_names(node: NodeProcess) -> None:
    session = Session(servers=(node.grpc,), namespace="completion")
    session.client.create_namespace("completion")
    for name in ("alpha", "beta"):
        session.client.create_queue("completion", name)
    shell = Shell(session)
    completer = shell.prompt.completer
    assert completer is not None

    def complete(text: str) -> list[str]:
        found = completer.get_completions(Document(text), CompleteEvent())
        return [c.text for c in found]

    try:
        assert {"enqueue", "queue", "namespace", "exit", "help"} <= set(complete(""))
        assert complete("dl") == ["dlq"]
        assert complete("queue st") == ["stats"]
        assert "use" in complete("queue ")
        assert complete("enqueue --pri") == ["--priority"]
        assert complete("queue use ") == ["alpha", "beta"]  # asked of the server
        assert complete("queue stats b") == ["beta"]
        assert complete("peek a") == ["alpha"]
        assert "completion" in complete("namespace use ")
        assert complete("queue create ") == []  # a new name: nothing to offer
        shell.execute("queue use alpha")
        assert complete("peek ") == []  # the queue in use is implied
    finally:
        session.close()
