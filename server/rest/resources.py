"""The engine over REST, for clients without gRPC: namespaces and queues
(create / get / list / update / delete / purge, stats) and messages
(enqueue, dequeue, get, list, ack, nack, extend, release). Each route is
the gRPC operation of the same name, run through the same gateway.

Configurations are the JSON form of ``QueueConfig`` / ``NamespaceConfig``
(``to_dict``); a bad one is refused naming the field (``config.backoff.factor``).
Payloads are text (``payload``) or bytes (``payload_base64``); messages come
back with both when the payload is UTF-8.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from kokaq.core import (
    MAX_BATCH,
    MAX_PRIORITY,
    BackoffPolicy,
    ConfigError,
    FailureReason,
    Headers,
    InvalidArgument,
    MessageSpec,
    MessageState,
    NamespaceConfig,
    QueueConfig,
)
from kokaq.protocol import convert as cv
from kokaq.protocol.jobs import progress_text
from kokaq.protocol.v1 import kokaq_pb2 as pb
from kokaq.server.rest.deps import CallerDep
from kokaq.server.rest.render import message_json
from kokaq.server.rest.stats import stats_json

__all__ = ["router"]

router = APIRouter(prefix="/v1/namespaces", tags=["engine"])

_NAME = r"^[A-Za-z0-9._-]+$"
#: A name in a path (a namespace, a queue, a schedule).
PathName = Annotated[str, Path(min_length=1, max_length=128, pattern=_NAME)]
NamespaceName = PathName
QueueName = PathName
MessageId = Annotated[str, Path(min_length=1, max_length=128)]
Force = Annotated[bool, Query(description="delete even when not empty")]
Config = Annotated[dict[str, Any] | None, Body(embed=True)]
Key = Annotated[str, Field(min_length=1, max_length=256)]
Millis = Annotated[int, Field(ge=0, le=2**53)]


def _config(cls: type[QueueConfig] | type[NamespaceConfig], data: dict[str, Any] | None) -> Any:
    if data is None:
        return None
    try:
        config = cls.from_dict(data)
        config.validate()
        return config
    except ConfigError as error:
        raise error.at("config") from None


def _config_proto(
    cls: type[QueueConfig] | type[NamespaceConfig], data: dict[str, Any] | None, message: Any
) -> Any:
    """The checked configuration as its protobuf ``message``; None when not given."""
    config = _config(cls, data)
    return None if config is None else cv.dict_to_message(config.to_dict(), message)


def _namespace(info: Any) -> dict[str, Any]:
    return {
        "name": info.name,
        "config": info.config.to_dict(),
        "created_at": info.created_at,
        "updated_at": info.updated_at,
        "queue_count": info.queue_count,
    }


def _queue(info: Any) -> dict[str, Any]:
    return {
        "namespace": info.namespace,
        "name": info.name,
        "config": info.config.to_dict(),
        "created_at": info.created_at,
        "updated_at": info.updated_at,
        "paused_at": info.paused_at,
    }


# -- namespaces ------------------------------------------------------------------------


class NamespaceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=128, pattern=_NAME)]
    config: dict[str, Any] | None = None


@router.get("", summary="List namespaces")
async def list_namespaces(caller: CallerDep) -> Any:
    infos = await caller.run("ListNamespaces", pb.ListNamespacesRequest())
    return {"namespaces": [_namespace(i) for i in infos]}


@router.post("", status_code=201, summary="Create a namespace")
async def create_namespace(body: NamespaceIn, caller: CallerDep) -> Any:
    config = _config_proto(NamespaceConfig, body.config, pb.NamespaceConfig())
    request = pb.NamespaceRequest(namespace=body.name, config=config)
    return _namespace(await caller.run("CreateNamespace", request))


@router.get("/{namespace}", summary="A namespace")
async def get_namespace(namespace: NamespaceName, caller: CallerDep) -> Any:
    request = pb.NamespaceRequest(namespace=namespace)
    return _namespace(await caller.run("GetNamespace", request))


@router.put("/{namespace}", summary="Replace a namespace's configuration")
async def update_namespace(namespace: NamespaceName, config: Config, caller: CallerDep) -> Any:
    if config is None:
        raise InvalidArgument("config", "give the new configuration")
    request = pb.NamespaceRequest(
        namespace=namespace, config=_config_proto(NamespaceConfig, config, pb.NamespaceConfig())
    )
    return _namespace(await caller.run("UpdateNamespace", request))


@router.delete("/{namespace}", status_code=204, summary="Delete a namespace")
async def delete_namespace(
    namespace: NamespaceName, caller: CallerDep, force: Force = False
) -> None:
    await caller.run("DeleteNamespace", pb.NamespaceRequest(namespace=namespace, force=force))


@router.post("/{namespace}/purge", summary="Remove every waiting message of a namespace")
async def purge_namespace(namespace: NamespaceName, caller: CallerDep) -> Any:
    count = await caller.run("PurgeNamespace", pb.NamespaceRequest(namespace=namespace))
    return {"count": count}


# -- queues ----------------------------------------------------------------------------


class QueueIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=128, pattern=_NAME)]
    config: dict[str, Any] | None = None


@router.get("/{namespace}/queues", summary="List the queues of a namespace")
async def list_queues(namespace: NamespaceName, caller: CallerDep) -> Any:
    infos = await caller.run("ListQueues", pb.ListQueuesRequest(namespace=namespace))
    return {"queues": [_queue(i) for i in infos]}


@router.post("/{namespace}/queues", status_code=201, summary="Create a queue")
async def create_queue(namespace: NamespaceName, body: QueueIn, caller: CallerDep) -> Any:
    config = _config_proto(QueueConfig, body.config, pb.QueueConfig())
    request = pb.QueueRequest(namespace=namespace, queue=body.name, config=config)
    return _queue(await caller.run("CreateQueue", request))


@router.get("/{namespace}/queues/{queue}", summary="A queue")
async def get_queue(namespace: NamespaceName, queue: QueueName, caller: CallerDep) -> Any:
    request = pb.QueueRequest(namespace=namespace, queue=queue)
    return _queue(await caller.run("GetQueue", request))


@router.put("/{namespace}/queues/{queue}", summary="Replace a queue's configuration")
async def update_queue(
    namespace: NamespaceName, queue: QueueName, config: Config, caller: CallerDep
) -> Any:
    """The new configuration applies to the messages already queued where
    that makes sense (scheduling reorders the backlog; retention applies)."""
    if config is None:
        raise InvalidArgument("config", "give the new configuration")
    config_proto = _config_proto(QueueConfig, config, pb.QueueConfig())
    request = pb.QueueRequest(namespace=namespace, queue=queue, config=config_proto)
    return _queue(await caller.run("UpdateQueue", request))


@router.delete("/{namespace}/queues/{queue}", status_code=204, summary="Delete a queue")
async def delete_queue(
    namespace: NamespaceName, queue: QueueName, caller: CallerDep, force: Force = False
) -> None:
    request = pb.QueueRequest(namespace=namespace, queue=queue, force=force)
    await caller.run("DeleteQueue", request)


@router.post("/{namespace}/queues/{queue}/purge", summary="Remove every waiting message")
async def purge_queue(namespace: NamespaceName, queue: QueueName, caller: CallerDep) -> Any:
    count = await caller.run("PurgeQueue", pb.QueueRequest(namespace=namespace, queue=queue))
    return {"count": count}


@router.post("/{namespace}/queues/{queue}/pause", summary="Dispatch nothing from a queue")
async def pause_queue(namespace: NamespaceName, queue: QueueName, caller: CallerDep) -> Any:
    """Until it is resumed, dequeues and workers get nothing from the queue;
    enqueues, peeks, settles and timers go on. Pausing a paused queue changes
    nothing. 409 while the cluster's log format is older than 3."""
    return _queue(await caller.run("PauseQueue", pb.QueueRequest(namespace=namespace, queue=queue)))


@router.post("/{namespace}/queues/{queue}/resume", summary="Dispatch from a paused queue again")
async def resume_queue(namespace: NamespaceName, queue: QueueName, caller: CallerDep) -> Any:
    request = pb.QueueRequest(namespace=namespace, queue=queue)
    return _queue(await caller.run("ResumeQueue", request))


@router.get("/{namespace}/queues/{queue}/stats", summary="Counts by state, oldest age, totals")
async def queue_stats(namespace: NamespaceName, queue: QueueName, caller: CallerDep) -> Any:
    stats = await caller.run("GetStats", pb.QueueRequest(namespace=namespace, queue=queue))
    return stats_json(stats)


@router.get(
    "/{namespace}/queues/{queue}/scheduling",
    summary="What each band and the most served fairness keys got, against their weights",
)
async def scheduling_stats(
    namespace: NamespaceName,
    queue: QueueName,
    caller: CallerDep,
    key_limit: Annotated[int, Query(ge=1, le=MAX_BATCH)] = 20,
) -> Any:
    request = pb.SchedulingStatsRequest(namespace=namespace, queue=queue, key_limit=key_limit)
    stats = await caller.run("GetSchedulingStats", request)
    return {
        "bands": [band._asdict() for band in stats.bands],
        "keys": [key._asdict() for key in stats.keys],
    }


# -- messages --------------------------------------------------------------------------


class HeadersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content_type: Key | None = None
    correlation_id: Key | None = None
    type: Key | None = None
    source: Key | None = None
    user: dict[str, str] = Field(default_factory=dict)


class BackoffIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_ms: Millis = 1_000
    factor: Annotated[float, Field(ge=1, le=100)] = 2.0
    cap_ms: Millis = 3_600_000
    jitter: Annotated[float, Field(ge=0, le=1)] = 0.0


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payload: str | None = Field(None, description="text, sent as UTF-8")
    payload_base64: str | None = Field(None, description="bytes; instead of payload")
    priority: Annotated[int, Field(ge=0, le=MAX_PRIORITY)] = 0
    headers: HeadersIn | None = None
    delay_ms: Millis | None = None
    run_at: Millis | None = None
    ttl_ms: Millis | None = None
    expires_at: Millis | None = None
    max_deliveries: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    dedup_key: Key | None = None
    fairness_key: Key | None = None
    cost: Annotated[int, Field(ge=1, le=2**31)] = 1
    backoff: BackoffIn | None = Field(None, description="retry delays; default: the queue's")

    def spec(self, field: str) -> MessageSpec:
        if (self.payload is None) == (self.payload_base64 is None):
            raise InvalidArgument(field, "give payload or payload_base64 (one of them)")
        payload = _bytes_of(self.payload, self.payload_base64, f"{field}.payload")
        h = self.headers
        return MessageSpec(
            payload=payload or b"",
            priority=self.priority,
            headers=None if h is None else Headers(**h.model_dump()),
            delay_ms=self.delay_ms,
            run_at=self.run_at,
            ttl_ms=self.ttl_ms,
            expires_at=self.expires_at,
            max_deliveries=self.max_deliveries,
            dedup_key=self.dedup_key,
            fairness_key=self.fairness_key,
            cost=self.cost,
            backoff=None if self.backoff is None else BackoffPolicy(**self.backoff.model_dump()),
        )


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    messages: Annotated[list[MessageIn], Field(min_length=1, max_length=MAX_BATCH)]


def _result(result: Any) -> dict[str, Any]:
    return {
        "message_id": result.message_id,
        "state": None if result.state is None else str(result.state),
        "visible_at": result.visible_at,
        "duplicate": result.duplicate,
    }


@router.post("/{namespace}/queues/{queue}/messages", status_code=201, summary="Enqueue")
async def enqueue(
    namespace: NamespaceName, queue: QueueName, body: MessageIn | BatchIn, caller: CallerDep
) -> Any:
    """One message, or ``{"messages": [...]}``: a batch of up to 1,000, all or nothing."""
    if isinstance(body, BatchIn):
        specs = [cv.spec_to_proto(m.spec(f"messages[{i}]")) for i, m in enumerate(body.messages)]
        request = pb.EnqueueBatchRequest(namespace=namespace, queue=queue, messages=specs)
        return {"results": [_result(r) for r in await caller.run("EnqueueBatch", request)]}
    one = pb.EnqueueRequest(
        namespace=namespace, queue=queue, message=cv.spec_to_proto(body.spec("body"))
    )
    return _result(await caller.run("Enqueue", one))


class DequeueIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_count: Annotated[int, Field(ge=1, le=MAX_BATCH)] = 1
    visibility_timeout_ms: Annotated[int, Field(ge=0, le=2**53)] | None = None


@router.post("/{namespace}/queues/{queue}/dequeue", summary="Lease messages")
async def dequeue(
    namespace: NamespaceName, queue: QueueName, caller: CallerDep, body: DequeueIn | None = None
) -> Any:
    body = body or DequeueIn()
    request = pb.DequeueRequest(
        namespace=namespace,
        queues=[pb.QueueWeight(queue=queue, weight=1)],
        max_count=body.max_count,
        visibility_timeout_ms=body.visibility_timeout_ms,
    )
    return {"messages": [message_json(v) for v in await caller.run("Dequeue", request)]}


@router.get("/{namespace}/queues/{queue}/messages", summary="The newest messages")
async def list_messages(
    namespace: NamespaceName,
    queue: QueueName,
    caller: CallerDep,
    state: Annotated[list[str] | None, Query(description="ready, delayed, leased, …")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_BATCH)] = 100,
) -> Any:
    states = []
    for name in state or []:
        number = _STATE_NUMBERS.get(name)
        if number is None:
            raise InvalidArgument("state", f"must be one of {', '.join(_STATE_NUMBERS)}")
        states.append(number)
    request = pb.ListMessagesRequest(namespace=namespace, queue=queue, states=states, limit=limit)
    return {"messages": [message_json(v) for v in await caller.run("ListMessages", request)]}


_STATE_NUMBERS = {str(state): cv.state_to_proto(state) for state in MessageState}


@router.get("/{namespace}/queues/{queue}/messages/{message_id}", summary="A message")
async def get_message(
    namespace: NamespaceName, queue: QueueName, message_id: MessageId, caller: CallerDep
) -> Any:
    request = pb.MessageRef(namespace=namespace, queue=queue, message_id=message_id)
    return message_json(await caller.run("GetMessage", request))


def _bytes_of(text: str | None, encoded: str | None, field: str) -> bytes | None:
    """Bytes given as text (sent as UTF-8) or as base64 (``{field}_base64``);
    None if neither."""
    if text is not None and encoded is not None:
        raise InvalidArgument(field, f"give {field} or {field}_base64, not both")
    if encoded is None:
        return None if text is None else text.encode()
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"{field}_base64", "is not base64") from None


class LockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lock_id: Annotated[str, Field(min_length=1, max_length=128)]


class AckIn(LockIn):
    result: str | None = Field(None, description="kept with the message: text, sent as UTF-8")
    result_base64: str | None = Field(None, description="bytes; instead of result")


class NackIn(LockIn):
    error: Annotated[str, Field(max_length=4096)] | None = None
    reason: FailureReason = FailureReason.PROCESSING_ERROR
    delay_ms: Millis | None = None
    dead_letter: bool = False


class ExtendIn(LockIn):
    add_ms: Annotated[int, Field(ge=1, le=2**53)]
    # The deadline the caller holds: a retried extend then adds once.
    from_deadline: Millis | None = None


class ProgressIn(LockIn):
    progress: JsonValue = Field(description="how far the work is: any JSON value, ≤ 4,096 bytes")


class ReleaseIn(LockIn):
    delay_ms: Millis | None = None


def _lock(namespace: str, queue: str, message_id: str, body: LockIn) -> pb.LockRef:
    return pb.LockRef(namespace=namespace, queue=queue, message_id=message_id, lock_id=body.lock_id)


_MESSAGE = "/{namespace}/queues/{queue}/messages/{message_id}"


@router.post(_MESSAGE + "/ack", summary="Settle a leased message as done")
async def ack(
    namespace: NamespaceName,
    queue: QueueName,
    message_id: MessageId,
    body: AckIn,
    caller: CallerDep,
) -> Any:
    """The message is kept as succeeded for the queue's retention, with the
    result if one is given (at most the queue's max payload)."""
    result = _bytes_of(body.result, body.result_base64, "result") or b""
    await caller.gateway.ack(_lock(namespace, queue, message_id, body), result, caller.key)
    return {"acked": True}


@router.post(_MESSAGE + "/nack", summary="Settle a leased message as failed")
async def nack(
    namespace: NamespaceName,
    queue: QueueName,
    message_id: MessageId,
    body: NackIn,
    caller: CallerDep,
) -> Any:
    request = pb.NackRequest(
        lock=_lock(namespace, queue, message_id, body),
        reason=cv.failure_reason_to_proto(body.reason),
        error=body.error,
        delay_ms=body.delay_ms,
        dead_letter=body.dead_letter,
    )
    result = await caller.run("Nack", request)
    return {"outcome": str(result.outcome), "visible_at": result.visible_at}


@router.post(_MESSAGE + "/extend", summary="Lengthen a lease")
async def extend(
    namespace: NamespaceName,
    queue: QueueName,
    message_id: MessageId,
    body: ExtendIn,
    caller: CallerDep,
) -> Any:
    request = pb.ExtendRequest(
        lock=_lock(namespace, queue, message_id, body),
        add_ms=body.add_ms,
        from_deadline=body.from_deadline,
    )
    return {"lock_deadline": await caller.run("Extend", request)}


@router.post(_MESSAGE + "/progress", summary="Say how far a leased message's work is")
async def report_progress(
    namespace: NamespaceName,
    queue: QueueName,
    message_id: MessageId,
    body: ProgressIn,
    caller: CallerDep,
) -> Any:
    """Shown with the message (and its job) until it is leased again; it
    restarts the visibility timeout, as a heartbeat."""
    request = pb.ProgressRequest(
        lock=_lock(namespace, queue, message_id, body), progress=progress_text(body.progress)
    )
    return {"lock_deadline": await caller.run("ReportProgress", request)}


@router.post(_MESSAGE + "/release", summary="Give a leased message back untried")
async def release(
    namespace: NamespaceName,
    queue: QueueName,
    message_id: MessageId,
    body: ReleaseIn,
    caller: CallerDep,
) -> Any:
    request = pb.ReleaseRequest(
        lock=_lock(namespace, queue, message_id, body), delay_ms=body.delay_ms
    )
    return {"visible_at": await caller.run("Release", request)}
