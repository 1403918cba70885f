"""``python -m kokaq.repl``: the ``kokaq`` command."""

from kokaq.repl.cli import main

main()
