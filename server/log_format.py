"""Log formats: what the entries of the Raft log may hold, so that a cluster
of mixed builds (a rolling upgrade) never diverges.

Every member applies every entry. A member of an older build that meets an
operation it does not know skips it, and one that meets a field it does not
know ignores it: its state would silently differ from the others'. So a
write that needs a newer format goes to the log only once the cluster agreed
on that format (``LogFormat``, an entry of its own), and the cluster agrees
only when every member has announced that it applies it. Until then such a
write is proposed in the older format's terms (``in_format``). An agreed
format never goes back; a member that meets a format newer than its build's
stops rather than diverge. This is the rule of RabbitMQ's feature flags and
Kafka's ``metadata.version``.

1. the builds before the formats existed (they announce none);
2. job results (``AckBatchItem.result``) and progress reports (``ReportProgress``).
   In format 1 a result is not kept and a progress report is a ``Refresh``
   (the lease is still extended; the report itself is not kept).
3. paused queues (``PauseQueue``, ``ResumeQueue``; a paused queue's snapshot
   record). Before it they are refused: no older write means the same.
4. schedules (``PutSchedule``, ``PauseSchedule``, ``ResumeSchedule``,
   ``DeleteSchedule``, ``TriggerSchedule``, ``FireSchedule``; a namespace's
   schedules in snapshots). Refused before.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message as ProtoMessage

from kokaq.core import MAX_PROGRESS, FailedPrecondition
from kokaq.core.validation import check_text
from kokaq.protocol.v1 import kokaq_pb2 as pb

__all__ = ["FIRST", "HELD_BACK", "LOG_FORMAT", "format_needed", "in_format"]

#: The newest format this build writes and applies.
LOG_FORMAT = 4
#: The format of members that announce none (builds before formats existed).
FIRST = 1
#: What a cluster held to an older format does without, by the format that brings it.
HELD_BACK = {
    2: "job results and progress reports are not kept",
    3: "queues cannot be paused",
    4: "schedules cannot be made",
}
#: The writes that have no form in the formats before theirs: refused there.
_NEW_OPERATIONS = {
    "PauseQueue": 3,
    "ResumeQueue": 3,
    "PutSchedule": 4,
    "PauseSchedule": 4,
    "ResumeSchedule": 4,
    "DeleteSchedule": 4,
    "TriggerSchedule": 4,
    "FireSchedule": 4,
}


def format_needed(name: str, request: Any) -> int:
    """The oldest log format that holds this write as it is."""
    if name in _NEW_OPERATIONS:
        return _NEW_OPERATIONS[name]
    if name == "ReportProgress":
        return 2
    if name == "AckBatch" and any(item.result for item in request.items):
        return 2
    return FIRST


def in_format(name: str, request: Any, log_format: int) -> tuple[str, ProtoMessage]:
    """The write that an older ``log_format`` holds in place of this one."""
    needed = format_needed(name, request)
    if log_format >= needed:
        return name, request
    if name in _NEW_OPERATIONS:
        raise FailedPrecondition(
            f"the cluster's log format is {log_format}; {name} needs format {needed}: "
            "every member must run a build that applies it (kokaq cluster status)"
        )
    if name == "ReportProgress":
        # Refused as the newer build would refuse it, though it is not kept.
        check_text("progress", request.progress, MAX_PROGRESS)
        return "Refresh", request.lock
    without_results = pb.AckBatchRequest()
    without_results.CopyFrom(request)
    for item in without_results.items:
        item.ClearField("result")
    return name, without_results
