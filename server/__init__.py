"""kokaq.server: a node. The engine replicated with PySyncObj, served over gRPC."""
