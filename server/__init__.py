"""kokaq.server: a node. The engine replicated with PySyncObj, served over gRPC."""

import os

# A node forks its snapshot writer (kokaq.server.dumps) while gRPC's threads
# run. gRPC's fork handlers then abort the child now and then (SIGABRT, seen in
# about one fork in five); the child never uses gRPC, so turn them off. This
# must happen before grpc is first imported, hence here.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
