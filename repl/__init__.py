"""kokaq.repl: the ``kokaq`` command and its interactive shell."""
