"""kokaq.repl: the ``kokaq`` command and its interactive shell."""

# ``kokaq server`` imports the client, and so grpc, before the node's code:
# load kokaq.server's package first, which turns gRPC's fork handlers off
# (they must be off before grpc loads; see kokaq/server/__init__.py).
import kokaq.server  # noqa: F401
