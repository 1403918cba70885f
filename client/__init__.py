"""kokaq.client: the SDK.

``Client`` (blocking) and ``AsyncClient`` (asyncio) talk to one or several
nodes; ``Producer`` batches enqueues in the background; ``Worker`` runs job
handlers on jobs the node pushes over a stream;
``kokaq.client.testing`` runs an engine in process for users' own tests.
"""

from kokaq.client._async.client import AsyncClient, AsyncLeased, AsyncQueue, AsyncTransport
from kokaq.client._sync.client import Client, Leased, Queue, Transport
from kokaq.client.producer import Producer
from kokaq.client.transport import AsyncGrpcTransport, GrpcTransport, RetryPolicy
from kokaq.client.worker import Job, Worker

__all__ = [
    "AsyncClient",
    "AsyncGrpcTransport",
    "AsyncLeased",
    "AsyncQueue",
    "AsyncTransport",
    "Client",
    "GrpcTransport",
    "Job",
    "Leased",
    "Producer",
    "Queue",
    "RetryPolicy",
    "Transport",
    "Worker",
]
