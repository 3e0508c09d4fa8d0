"""The operator API of the sagas a service orchestrates (ops.v1.SagaService), over its `Saga`
and its store: list the sagas (those parked as needing an operator, the oldest first), look at
one with its whole history, send a parked saga's compensation again, or resolve it.

Guarantees:
- a call names the service it is for (`service`), and a service answers only for itself
  (ordermesh.operations.addressed): a call that reached the wrong service is refused;
- every action needs a reason and names who took it (the caller's verified token:
  ordermesh.operations.acting); what it does, and that it is idempotent, recorded in the saga's
  own history and logged, is the engine's (ordermesh.saga);
- an unknown saga is NOT_FOUND and a page token this service did not issue INVALID_ARGUMENT,
  as the gRPC edge maps domain errors (ordermesh.failures).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeAlias

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from ordermesh.contracts.ops.v1 import ops_service_pb2 as pb
from ordermesh.contracts.ops.v1 import ops_service_pb2_grpc as pb_grpc
from ordermesh.grpc import Service
from ordermesh.operations import acting, addressed
from ordermesh.saga import Saga, SagaView
from ordermesh.saga_record import SagaStatus
from ordermesh.store import Store
from ordermesh.vocabulary import enum_name, enum_value

__all__ = ["SagaOperations", "entry_proto", "saga_proto", "service", "status_of"]

Context: TypeAlias = grpc.aio.ServicerContext

# The wire's value of each history kind, by the kind's name (ordermesh.saga_record.HistoryKind).
_KINDS = {enum_name(pb.SagaHistoryKind, value): value for value in pb.SagaHistoryKind.values()}


def status_of(status: pb.SagaStatus.ValueType) -> SagaStatus | None:
    """The status a request names; None for SAGA_STATUS_UNSPECIFIED (any status)."""
    if status == pb.SAGA_STATUS_UNSPECIFIED:
        return None
    return SagaStatus(enum_name(pb.SagaStatus, status))


def _timestamp(time: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(time)
    return value


def saga_proto(saga: SagaView) -> pb.Saga:
    return pb.Saga(
        saga_id=saga.saga_id,
        status=enum_value(pb.SagaStatus, saga.status),
        state=saga.state,
        step=saga.step,
        start_time=_timestamp(saga.started_at),
        update_time=_timestamp(saga.updated_at),
        failure_reason=saga.failure_reason,
        correlation_id=saga.correlation_id,
        trace_id=saga.trace_id,
    )


def entry_proto(entry: Mapping[str, Any]) -> pb.SagaHistoryEntry:
    """A history entry (ordermesh.saga_record.record); one of a kind this version does not know
    (written by a newer one, during a rollout) is of kind UNSPECIFIED, its detail kept."""
    return pb.SagaHistoryEntry(
        time=_timestamp(datetime.fromisoformat(entry["time"])),
        kind=_KINDS.get(entry["kind"], pb.SAGA_HISTORY_KIND_UNSPECIFIED),
        step=entry["step"],
        message_type=entry["message_type"],
        saga_state=entry["state"],
        detail=entry["detail"],
        # Entries written before operators' actions were recorded name no actor.
        actor=entry.get("actor", ""),
    )


class SagaOperations(pb_grpc.SagaServiceServicer):
    def __init__(self, saga: Saga, store: Store, *, service_name: str):
        self._saga = saga
        self._store = store
        self._service_name = service_name

    async def ListSagas(
        self, request: pb.ListSagasRequest, context: Context
    ) -> pb.ListSagasResponse:
        addressed(request.service, self._service_name)
        sagas, next_token = await self._saga.list_sagas(
            self._store,
            status=status_of(request.status),
            min_age_s=request.min_age_seconds,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListSagasResponse(
            sagas=[saga_proto(s) for s in sagas], next_page_token=next_token
        )

    async def GetSaga(self, request: pb.GetSagaRequest, context: Context) -> pb.GetSagaResponse:
        addressed(request.service, self._service_name)
        saga = await self._saga.get(self._store, request.saga_id)
        return pb.GetSagaResponse(
            saga=saga_proto(saga), history=[entry_proto(e) for e in saga.history]
        )

    async def RetryCompensation(
        self, request: pb.RetryCompensationRequest, context: Context
    ) -> pb.RetryCompensationResponse:
        addressed(request.service, self._service_name)
        operator = acting(request.reason)
        saga = await self._saga.retry_compensation(
            self._store, request.saga_id, actor=operator.actor, reason=operator.reason
        )
        return pb.RetryCompensationResponse(saga=saga_proto(saga))

    async def ResolveSaga(
        self, request: pb.ResolveSagaRequest, context: Context
    ) -> pb.ResolveSagaResponse:
        addressed(request.service, self._service_name)
        operator = acting(request.reason)
        saga = await self._saga.resolve(
            self._store, request.saga_id, actor=operator.actor, reason=operator.reason
        )
        return pb.ResolveSagaResponse(saga=saga_proto(saga))


def service(saga: Saga, store: Store, *, service_name: str) -> Service:
    """ops.v1.SagaService over `saga`'s sagas in `store`, answering for `service_name` only."""
    return Service(
        descriptor=pb.DESCRIPTOR.services_by_name["SagaService"],
        servicer=SagaOperations(saga, store, service_name=service_name),
        add_to_server=pb_grpc.add_SagaServiceServicer_to_server,
    )
