"""``python -m kokaq.server``: the same as ``kokaq server``."""

from kokaq.repl.cli import server

server()
