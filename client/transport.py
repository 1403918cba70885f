"""How calls reach a node: gRPC (blocking or asyncio), with leader following
and retries. ``kokaq.client.testing`` has the in-process transport.

Retries: ``Unavailable`` (which includes ``NotLeader`` and lost connections)
is retried with exponential backoff and jitter on the next address, until
``retry_timeout`` has passed. Every write the SDK sends is safe to repeat:
enqueues carry a dedup key, an ack repeated for the same lease succeeds
(while the message is retained), a nack or release repeated answers as the
first did (until the message is leased again), and an extend, refresh or
visibility change repeated moves the same live lease again.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import Any

import grpc

from kokaq.core import InvalidArgument, KokaqError, NotLeader, Unavailable
from kokaq.protocol.errors import ERROR_TRAILER, error_from_status
from kokaq.protocol.grpc_options import CLIENT_OPTIONS
from kokaq.protocol.v1 import kokaq_pb2 as pb
from kokaq.server.operations import OPERATIONS
from kokaq.server.service import CONSISTENCY_HEADER

__all__ = [
    "CLUSTER_CHANGES",
    "CLUSTER_STATUS",
    "END_LEASE",
    "SETTLE",
    "SETTLE_MANY",
    "AsyncGrpcTransport",
    "GrpcTransport",
    "RetryPolicy",
    "error_of_rpc",
]

#: The RPCs outside the engine's operation table: the node's Raft status, and
#: settling a job leased over the worker stream, and ending that stream.
CLUSTER_STATUS = "Status"
SETTLE = "Settle"
END_LEASE = "EndLease"
#: Membership and leadership changes (Cluster service): each answers a ClusterStatus.
CLUSTER_CHANGES = ("AddMember", "RemoveMember", "TransferLeadership")
SETTLE_MANY = "SettleMany"


class RetryPolicy:
    def __init__(
        self, timeout: float = 15.0, first_delay: float = 0.05, max_delay: float = 1.0
    ) -> None:
        self.timeout = timeout
        self.first_delay = first_delay
        self.max_delay = max_delay

    def delay(self, attempt: int) -> float:
        return random.uniform(0.5, 1.0) * min(self.max_delay, self.first_delay * 2.0**attempt)


def _addresses(addresses: str | Sequence[str]) -> list[str]:
    found = [addresses] if isinstance(addresses, str) else list(addresses)
    found = [a.strip() for item in found for a in item.split(",") if a.strip()]
    if not found:
        raise InvalidArgument("addresses", "give at least one node address")
    return found


def _metadata(api_key: str | None, consistency: str) -> tuple[tuple[str, str], ...]:
    if consistency not in ("leader", "strong"):
        raise InvalidArgument("consistency", "must be 'leader' or 'strong'")
    found = [("x-api-key", api_key)] if api_key else []
    if consistency == "strong":
        found.append((CONSISTENCY_HEADER, "strong"))
    return tuple(found)


def _route(name: str) -> tuple[str, Any]:
    """The RPC's method path and its response type."""
    if name == CLUSTER_STATUS or name in CLUSTER_CHANGES:
        return f"/kokaq.v1.Cluster/{name}", pb.ClusterStatus
    if name == SETTLE:
        return "/kokaq.v1.Workers/Settle", pb.SettleResponse
    if name == SETTLE_MANY:
        return "/kokaq.v1.Workers/SettleMany", pb.SettleManyResponse
    if name == END_LEASE:
        return "/kokaq.v1.Workers/EndLease", pb.EndLeaseResponse
    operation = OPERATIONS[name]
    return f"/kokaq.v1.{operation.service}/{name}", operation.response


def error_of_rpc(error: grpc.RpcError) -> KokaqError:
    call: Any = error  # a failed call is also a grpc.Call, with code and trailers
    trailer = None
    for key, value in call.trailing_metadata() or ():
        if key == ERROR_TRAILER:
            trailer = value
    return error_from_status(call.code(), call.details() or "", trailer)


class _Rotation:
    """The address in use, moved on when a node cannot serve."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self.current = 0

    def failed(self, error: KokaqError) -> None:
        """Go to the leader the error names (learning its address if it is new),
        else to the next address."""
        hint = error.leader_hint if isinstance(error, NotLeader) else None
        if hint:
            if hint not in self.addresses:
                self.addresses.append(hint)
            self.current = self.addresses.index(hint)
        else:
            self.current = (self.current + 1) % len(self.addresses)


class _GrpcBase:
    """What both gRPC transports share: addresses, key, retries, one channel each."""

    def __init__(
        self,
        addresses: str | Sequence[str],
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        consistency: str = "leader",
    ) -> None:
        self._rotation = _Rotation(_addresses(addresses))
        self._channels: dict[str, Any] = {}
        self._metadata = _metadata(api_key, consistency)
        self._timeout = timeout
        self._retry = retry or RetryPolicy()

    def _new_channel(self, address: str) -> Any:
        raise NotImplementedError

    def _channel(self) -> Any:
        address = self._rotation.addresses[self._rotation.current]
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = self._new_channel(address)
        return channel

    def failed(self, error: KokaqError) -> None:
        """Move on from the node in use (to the leader the error names, if any)."""
        self._rotation.failed(error)

    def _stub(self, name: str) -> Any:
        channel = self._channel()
        path, response = _route(name)
        return channel.unary_unary(
            path,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response.FromString,
        )

    def _retry_or_raise(self, error: KokaqError, started: float) -> None:
        if not isinstance(error, Unavailable) or time.monotonic() - started > self._retry.timeout:
            raise error
        self._rotation.failed(error)


class GrpcTransport(_GrpcBase):
    def _new_channel(self, address: str) -> Any:
        return grpc.insecure_channel(address, options=CLIENT_OPTIONS)

    def call(self, name: str, request: Any) -> Any:
        started, attempt = time.monotonic(), 0
        while True:
            try:
                return self._stub(name)(request, timeout=self._timeout, metadata=self._metadata)
            except grpc.RpcError as rpc_error:
                self._retry_or_raise(error_of_rpc(rpc_error), started)
            time.sleep(self._retry.delay(attempt))
            attempt += 1

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()


class AsyncGrpcTransport(_GrpcBase):
    def _new_channel(self, address: str) -> Any:
        return grpc.aio.insecure_channel(address, options=CLIENT_OPTIONS)

    async def call(self, name: str, request: Any) -> Any:
        started, attempt = time.monotonic(), 0
        while True:
            try:
                return await self._stub(name)(
                    request, timeout=self._timeout, metadata=self._metadata
                )
            except grpc.RpcError as rpc_error:
                self._retry_or_raise(error_of_rpc(rpc_error), started)
            await asyncio.sleep(self._retry.delay(attempt))
            attempt += 1

    def lease_stream(self, request: pb.LeaseRequest) -> Any:
        """Open ``Workers.Lease`` on the node in use: an async iterator of
        ``LeaseEvent``. No retries here: the worker reconnects (``failed``)."""
        open_stream = self._channel().unary_stream(
            "/kokaq.v1.Workers/Lease",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=pb.LeaseEvent.FromString,
        )
        return open_stream(request, metadata=self._metadata)

    def work_stream(self) -> Any:
        """Open ``Workers.Work`` on the node in use: a call to ``write``
        ``WorkRequest``s to and read ``WorkEvent``s from. No retries here:
        the worker reconnects (``failed``)."""
        open_stream = self._channel().stream_stream(
            "/kokaq.v1.Workers/Work",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=pb.WorkEvent.FromString,
        )
        return open_stream(metadata=self._metadata)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(None)
        self._channels.clear()
