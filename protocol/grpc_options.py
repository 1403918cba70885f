"""The gRPC channel options both ends agree on.

Message size: batches of 1,000 messages of up to 1 MiB pass only with a
larger limit than gRPC's 4 MiB.

Keepalive: a node that stops answering without closing its connections (a
paused process, a partition) would hold every call sent to it until the call's
own deadline. The client pings each connection every ``KEEPALIVE_MS`` while it
has calls in flight, and drops it when a ping goes unanswered for
``KEEPALIVE_MS``: its calls fail ``UNAVAILABLE`` within about twice that, and
the SDK retries them on another node. gRPC's C core answers pings without the
Python code: a node busy in Python for seconds still answers them (tried). A
connection attempt that the peer's kernel accepts but its process never
answers gives up after ``CONNECT_TIMEOUT_MS`` (gRPC's default is 20 s). The
server accepts pings that often (by default it answers a ping more often than
every 5 minutes with GOAWAY).
"""

from __future__ import annotations

MAX_MESSAGE_BYTES = 80 * 1024 * 1024
KEEPALIVE_MS = 1_000
CONNECT_TIMEOUT_MS = 4_000

_SIZES = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]

CLIENT_OPTIONS = [
    *_SIZES,
    ("grpc.keepalive_time_ms", KEEPALIVE_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_MS),
    # gRPC 1.6x+ waits for a keepalive ping's ack by this one (default 60 s).
    ("grpc.http2.ping_timeout_ms", KEEPALIVE_MS),
    # A connection attempt to a node that accepts TCP but never speaks (paused)
    # gives up after this long instead of gRPC's 20 s.
    ("grpc.min_reconnect_backoff_ms", CONNECT_TIMEOUT_MS),
    ("grpc.http2.max_pings_without_data", 0),  # idle worker streams keep pinging
]

SERVER_OPTIONS = [
    *_SIZES,
    ("grpc.http2.min_ping_interval_without_data_ms", KEEPALIVE_MS // 2),
    ("grpc.http2.max_ping_strikes", 0),
]
