"""The gRPC servicer of the operator API (ops.v1.OperatorService) over a service's `Operations`
(ordermesh.operations) and the fault switches its process follows (ordermesh.switches, changed in
their flag file by ordermesh.flag_file): translate and delegate. Every service with a store and a
broker serves it (ordermesh.defaults); the gRPC edge admits only administrators (the contract
says ADMIN).

A switch turned on through a service applies to that service (its `service` condition is the
one the call names, with the method, queue or type given): as from the command line, it is
written to the one flag file every process of the deployment follows, and replaces the switch's
earlier rule. Each change is logged with who made it and why ("operator action")."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import struct_pb2, timestamp_pb2

from ordermesh.contracts.ops.v1 import ops_service_pb2 as pb
from ordermesh.contracts.ops.v1 import ops_service_pb2_grpc as pb_grpc
from ordermesh.decoding import decoded
from ordermesh.errors import FailedPrecondition, InvalidArgument
from ordermesh.flag_file import FileMalformed, SwitchRefused, states, turn_off, turn_on
from ordermesh.grpc import Service
from ordermesh.logging import get_logger
from ordermesh.operations import (
    DeadLetter,
    HistoryEntry,
    Operations,
    acting,
    addressed,
)
from ordermesh.switches import Switches
from ordermesh.timestamps import timestamp
from ordermesh.vocabulary import enum_value

__all__ = ["OperatorApi", "service"]

log = get_logger(__name__)


def _iso_time(text: str) -> timestamp_pb2.Timestamp | None:
    stamp = timestamp_pb2.Timestamp()
    try:
        stamp.FromJsonString(text)
    except ValueError:
        return None
    return stamp


def _struct(body: dict[str, Any] | None) -> struct_pb2.Struct | None:
    if body is None:
        return None
    struct = struct_pb2.Struct()
    struct.update(body)
    return struct


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0


def _dead_letter(letter: DeadLetter) -> pb.DeadLetter:
    failure = letter.failure
    return pb.DeadLetter(
        queue=letter.queue,
        event_id=letter.event_id,
        type=letter.type,
        correlation_id=letter.correlation_id,
        failure=pb.Failure(
            error_class=failure.get("error-class", ""),
            error_message=failure.get("error-message", ""),
            attempts=_int(failure.get("attempts", "")),
            consumer=failure.get("consumer", ""),
            instance=failure.get("instance", ""),
            failed_time=_iso_time(failure.get("failed-at", "")),
        ),
        original_exchange=letter.original_exchange,
        original_routing_key=letter.original_routing_key,
        replays=[
            pb.Replay(
                time=_iso_time(replay.get("at", "")),
                actor=replay.get("by", ""),
                reason=replay.get("reason", ""),
                queue=replay.get("queue", ""),
            )
            for replay in letter.replays
        ],
        body=_struct(letter.body),
    )


def _entry(entry: HistoryEntry) -> pb.MessageHistoryEntry:
    return pb.MessageHistoryEntry(
        time=timestamp(entry.at),
        fate=enum_value(pb.MessageFate, entry.fate.value),
        event_id=entry.event_id,
        type=entry.type,
        correlation_id=entry.correlation_id,
        where=entry.where,
        instance=entry.instance,
        actor=entry.actor,
        detail=entry.detail,
    )


def _page(size: int) -> int:
    return 100 if size <= 0 else size


def _fault_switch(entry: Mapping[str, Any]) -> pb.FaultSwitch:
    """A switch as ordermesh.switches lists it."""
    settings = entry["settings"]
    return pb.FaultSwitch(
        name=entry["switch"],
        on=entry["on"],
        does=entry["does"],
        where={
            key: value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            for key, value in entry["where"].items()
        },
        settings=pb.FaultSettings(
            latency_ms=settings.get("latency_ms", 0),
            percent=round(settings.get("percent", 0)),
            status=settings.get("status", ""),
            http_status=settings.get("http_status", 0),
        ),
    )


def _requested(settings: pb.FaultSettings) -> dict[str, Any]:
    """A request's settings, with the command line's defaults for those left 0 (a latency has
    none: a latency switch without one is refused)."""
    return {
        "latency_ms": settings.latency_ms or None,
        "percent": settings.percent or 100,
        "status": settings.status or "UNAVAILABLE",
        "http_status": settings.http_status or 503,
    }


class OperatorApi(pb_grpc.OperatorServiceServicer):
    def __init__(self, operations: Operations, switches: Switches):
        self._ops = operations
        self._switches = switches

    async def ListParkedMessages(
        self, request: pb.ListParkedMessagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListParkedMessagesResponse:
        addressed(request.service, self._ops.service)
        parked = await self._ops.parked(limit=_page(request.page_size))
        return pb.ListParkedMessagesResponse(
            messages=[
                pb.ParkedMessage(
                    seq=p.row.seq,
                    event_id=p.row.message.envelope.event_id,
                    type=p.row.message.envelope.type,
                    exchange=p.row.message.route.exchange,
                    routing_key=p.row.message.route.routing_key,
                    reason=p.reason,
                    parked_time=timestamp(p.parked_at),
                    correlation_id=p.row.message.envelope.correlation_id,
                    body=_struct(decoded(p.row.message.envelope.type, p.row.message.payload)),
                )
                for p in parked
            ]
        )

    async def UnparkMessages(
        self, request: pb.UnparkMessagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.UnparkMessagesResponse:
        addressed(request.service, self._ops.service)
        by = acting(request.reason)
        return pb.UnparkMessagesResponse(
            unparked=await self._ops.unpark(set(request.event_ids), by)
        )

    async def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDeadLettersResponse:
        addressed(request.service, self._ops.service)
        letters = await self._ops.dead_letters(request.queue, limit=_page(request.page_size))
        depths = await self._ops.depths()
        return pb.ListDeadLettersResponse(
            dead_letters=[_dead_letter(letter) for letter in letters],
            queues=[pb.DeadLetterQueue(name=n, messages=c) for n, c in depths.items()],
        )

    async def ReplayDeadLetters(
        self, request: pb.ReplayDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReplayDeadLettersResponse:
        addressed(request.service, self._ops.service)
        by = acting(request.reason)
        replayed = await self._ops.replay(request.queue, set(request.event_ids), by)
        return pb.ReplayDeadLettersResponse(replayed=replayed)

    async def DiscardDeadLetters(
        self, request: pb.DiscardDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.DiscardDeadLettersResponse:
        addressed(request.service, self._ops.service)
        by = acting(request.reason)
        discarded = await self._ops.discard(request.queue, set(request.event_ids), by)
        return pb.DiscardDeadLettersResponse(discarded=discarded)

    async def GetMessageHistory(
        self, request: pb.GetMessageHistoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMessageHistoryResponse:
        addressed(request.service, self._ops.service)
        entries = await self._ops.history(
            event_ids=list(request.event_ids), correlation_id=request.correlation_id
        )
        return pb.GetMessageHistoryResponse(entries=[_entry(entry) for entry in entries])

    async def ListFaultSwitches(
        self, request: pb.ListFaultSwitchesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListFaultSwitchesResponse:
        addressed(request.service, self._ops.service)
        self._flag_file()
        return pb.ListFaultSwitchesResponse(
            switches=[_fault_switch(entry) for entry in self._switches.listed()]
        )

    async def TurnFaultSwitchOn(
        self, request: pb.TurnFaultSwitchOnRequest, context: grpc.aio.ServicerContext
    ) -> pb.TurnFaultSwitchOnResponse:
        addressed(request.service, self._ops.service)
        conditions = {
            "service": self._ops.service,
            "method": request.method,
            "queue": request.queue,
            "type": request.type,
        }
        settings = _requested(request.settings)
        entry = await self._change(request.name, request.reason, turn_on, conditions, settings)
        return pb.TurnFaultSwitchOnResponse(switch=entry)

    async def TurnFaultSwitchOff(
        self, request: pb.TurnFaultSwitchOffRequest, context: grpc.aio.ServicerContext
    ) -> pb.TurnFaultSwitchOffResponse:
        addressed(request.service, self._ops.service)
        entry = await self._change(request.name, request.reason, turn_off)
        return pb.TurnFaultSwitchOffResponse(switch=entry)

    def _flag_file(self) -> Path:
        if not self._switches.path:
            raise FailedPrecondition(
                "this deployment has no fault switches (its services were given no "
                "FAULT_FLAGS_FILE: make up and the tests give one; the production overlay "
                "forbids one)"
            )
        return Path(self._switches.path)

    async def _change(
        self, switch: str, reason: str, change: Callable[..., str], *args: Any
    ) -> pb.FaultSwitch:
        """Changes `switch` in the flag file (`change`: turn_on or turn_off); the switch as the
        file then says, the change logged with the caller and the reason."""
        path, by = self._flag_file(), acting(reason)

        def changed() -> tuple[str, dict[str, Any]]:
            said = change(path, switch, *args)
            return said, next(e for e in states(path) if e["switch"] == switch)

        try:
            said, entry = await asyncio.to_thread(changed)
        except FileMalformed as exc:
            raise FailedPrecondition(str(exc)) from None
        except SwitchRefused as exc:
            raise InvalidArgument(str(exc)) from None
        log.warning(
            "operator action",
            action="fault switch",
            switch=switch,
            outcome=said,
            reason=by.reason,
            user_id=by.actor,
        )
        return _fault_switch(entry)


def service(operations: Operations, switches: Switches) -> Service:
    return Service(
        descriptor=pb.DESCRIPTOR.services_by_name["OperatorService"],
        servicer=OperatorApi(operations, switches),
        add_to_server=pb_grpc.add_OperatorServiceServicer_to_server,
    )
