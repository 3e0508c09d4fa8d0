"""What the console calls, and only through what the system publishes:

- the gateway (`Gateway`), like any client: gRPC (TLS with the deployment's CA, plaintext for
  an http:// URL) for the user service's sign-in RPCs (`Accounts`) and the operator API
  (`Operators`: ops.v1.OperatorService and SagaService, routed by the `x-ordermesh-service`
  metadata and the request's `service` field), each call with the signed-in admin's token;
  HTTPS for the token issuer's public keys (/.well-known/jwks.json);
- Prometheus's HTTP API (`Prometheus`): the figures of the live system in one query
  (`FIGURES`, each series labelled with its `figure`), and its firing alerts, or
  Alertmanager's (`Alertmanager`) where one is deployed.

A failed call is raised as a ordermesh.errors domain error (`ordermesh.failures.error_of`: the
table the services answer by, read backwards), its message naming the call and what the
gateway said.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import grpc
import grpc.aio
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from ordermesh.bounds import bounds_of
from ordermesh.contracts.ops.v1 import ops_service_pb2 as ops
from ordermesh.contracts.ops.v1 import ops_service_pb2_grpc as ops_grpc
from ordermesh.errors import (
    DomainError,
    Unavailable,
)
from ordermesh.failures import error_of
from ordermesh.timestamps import seconds_of, time_of
from ordermesh.vocabulary import enum_name, enum_value
from ordermesh.web.sessions import Tokens
from ordermesh.web.site import naming_the_browser
from user.v1 import user_service_pb2 as user_pb
from user.v1 import user_service_pb2_grpc as user_grpc

from services.console.domain import (
    AlertView,
    DeadLetterView,
    MessageEvent,
    ParkedView,
    SagaStep,
    SagaView,
    Series,
)

__all__ = [
    "FIGURES",
    "MAX_IDS",
    "Accounts",
    "Alertmanager",
    "Gateway",
    "Operators",
    "Prometheus",
    "figures_query",
]


def _most_ids(*requests: Descriptor) -> int:
    """The fewest event ids any of these ops.v1 requests takes (its contract's bound)."""
    limits = [bounds_of(r.fields_by_name["event_ids"]) for r in requests]
    return min(b.max_items for b in limits if b is not None)


# The most event ids one call of the operator API names.
MAX_IDS = _most_ids(
    ops.UnparkMessagesRequest.DESCRIPTOR,
    ops.ReplayDeadLettersRequest.DESCRIPTOR,
    ops.DiscardDeadLettersRequest.DESCRIPTOR,
    ops.GetMessageHistoryRequest.DESCRIPTOR,
)


def _failure(exc: grpc.aio.AioRpcError, what: str) -> DomainError:
    return error_of(exc.code())(f"{what}: {exc.code().name}: {exc.details() or 'no detail'}")


class NamingTheBrowser(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Names the browser a call is made for (ordermesh.web.site.naming_the_browser), so that the
    gateway counts an admin's sign-in against the admin's browser, not the console."""

    def __init__(self, internal_token: str):
        self._internal_token = internal_token

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        named = naming_the_browser(self._internal_token)
        if named:
            metadata = (*(client_call_details.metadata or ()), *named.items())
            client_call_details = client_call_details._replace(metadata=metadata)
        return await continuation(client_call_details, request)


class Gateway:
    """The console's one way into the system's APIs: a gRPC channel to the gateway and its
    HTTPS origin."""

    def __init__(
        self, url: str, *, ca: bytes | None, http: aiohttp.ClientSession, internal_token: str
    ):
        """`url`: http(s)://host[:port]; `ca`: the PEM of the CA that issued the gateway's
        certificate (None: the system's trusted authorities); `internal_token`: the internal
        hops' secret, with which a call names its admin's browser."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"GATEWAY_URL={url!r} is not http(s)://host[:port]")
        self.url = url.rstrip("/")
        self.tls = parts.scheme == "https"
        port = parts.port or (443 if self.tls else 80)
        self.target = f"{parts.hostname}:{port}"
        self._http = http
        self._ssl = ssl.create_default_context(cadata=ca.decode()) if ca else None
        naming = [NamingTheBrowser(internal_token)]
        self.channel = (
            grpc.aio.secure_channel(
                self.target, grpc.ssl_channel_credentials(ca), interceptors=naming
            )
            if self.tls
            else grpc.aio.insecure_channel(self.target, interceptors=naming)
        )

    async def jwks(self) -> Mapping[str, Any]:
        """The token issuer's public keys, as the gateway publishes them (a KeySet source)."""
        async with self._http.get(
            f"{self.url}/.well-known/jwks.json", ssl=self._ssl or True
        ) as answer:
            answer.raise_for_status()
            keys: Mapping[str, Any] = await answer.json(content_type=None)
            return keys

    async def close(self) -> None:
        await self.channel.close()


def _body(message: Message) -> str:
    if not message.HasField("body"):
        return ""
    return json.dumps(json_format.MessageToDict(message.body), indent=2, sort_keys=True)  # type: ignore[attr-defined]


class Accounts:
    """The user service's sign-in RPCs, through the gateway."""

    def __init__(self, gateway: Gateway, *, timeout_s: float):
        self._stub = user_grpc.UserServiceStub(gateway.channel)
        self._timeout_s = timeout_s

    @staticmethod
    def _tokens(pair: user_pb.TokenPair) -> Tokens:
        return Tokens(
            access_token=pair.access_token,
            access_expires_at=seconds_of(pair.access_token_expire_time),
            refresh_token=pair.refresh_token,
            refresh_expires_at=seconds_of(pair.refresh_token_expire_time),
        )

    async def login(self, email: str, password: str) -> Tokens:
        try:
            answer = await self._stub.Login(
                user_pb.LoginRequest(email=email, password=password), timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise _failure(exc, "sign-in") from None
        return self._tokens(answer.tokens)

    async def refresh(self, refresh_token: str) -> Tokens:
        try:
            answer = await self._stub.RefreshToken(
                user_pb.RefreshTokenRequest(refresh_token=refresh_token), timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise _failure(exc, "refreshing the session") from None
        return self._tokens(answer.tokens)

    async def logout(self, refresh_token: str) -> None:
        try:
            await self._stub.Logout(
                user_pb.LogoutRequest(refresh_token=refresh_token), timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise _failure(exc, "signing out") from None

    async def profile(self, access_token: str) -> tuple[str, str]:
        """The signed-in user's e-mail and display name."""
        try:
            answer = await self._stub.GetProfile(
                user_pb.GetProfileRequest(),
                metadata=(("authorization", f"Bearer {access_token}"),),
                timeout=self._timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            raise _failure(exc, "reading the profile") from None
        return answer.profile.email, answer.profile.display_name


def _saga(saga: ops.Saga) -> SagaView:
    return SagaView(
        saga_id=saga.saga_id,
        status=enum_name(ops.SagaStatus, saga.status),
        state=saga.state,
        step=saga.step,
        started_at=time_of(saga, "start_time"),
        updated_at=time_of(saga, "update_time"),
        failure_reason=saga.failure_reason,
        correlation_id=saga.correlation_id,
        trace_id=saga.trace_id,
    )


class Operators:
    """The operator API of every service, through the gateway, as the signed-in admin."""

    def __init__(self, gateway: Gateway, *, timeout_s: float):
        self._messages = ops_grpc.OperatorServiceStub(gateway.channel)
        self._sagas = ops_grpc.SagaServiceStub(gateway.channel)
        self._timeout_s = timeout_s

    async def _call(self, method: Any, request: Message, token: str, service: str) -> Any:
        metadata = (("authorization", f"Bearer {token}"), ("x-ordermesh-service", service))
        try:
            return await method(request, metadata=metadata, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            name = type(request).__name__.removesuffix("Request")
            raise _failure(exc, f"{service}: {name}") from None

    async def dead_letters(
        self, token: str, service: str, *, queue: str = ""
    ) -> tuple[list[DeadLetterView], dict[str, int]]:
        """The service's dead letters (of one queue, or all) and the depth of each queue."""
        request = ops.ListDeadLettersRequest(service=service, queue=queue, page_size=500)
        answer = await self._call(self._messages.ListDeadLetters, request, token, service)
        letters = [
            DeadLetterView(
                queue=d.queue,
                event_id=d.event_id,
                type=d.type,
                correlation_id=d.correlation_id,
                error=f"{d.failure.error_class}: {d.failure.error_message}".strip(": "),
                attempts=d.failure.attempts,
                consumer=d.failure.consumer,
                instance=d.failure.instance,
                failed_at=time_of(d.failure, "failed_time"),
                original_route=f"{d.original_exchange} / {d.original_routing_key}",
                replays=[
                    f"{r.time.ToDatetime(tzinfo=UTC):%Y-%m-%d %H:%M:%S} by {r.actor}: {r.reason}"
                    for r in d.replays
                ],
                body=_body(d),
            )
            for d in answer.dead_letters
        ]
        return letters, {q.name: q.messages for q in answer.queues}

    async def replay(
        self, token: str, service: str, *, queue: str, event_ids: Sequence[str], reason: str
    ) -> int:
        request = ops.ReplayDeadLettersRequest(
            service=service, queue=queue, event_ids=event_ids, reason=reason
        )
        answer = await self._call(self._messages.ReplayDeadLetters, request, token, service)
        return int(answer.replayed)

    async def discard(
        self, token: str, service: str, *, queue: str, event_ids: Sequence[str], reason: str
    ) -> int:
        request = ops.DiscardDeadLettersRequest(
            service=service, queue=queue, event_ids=event_ids, reason=reason
        )
        answer = await self._call(self._messages.DiscardDeadLetters, request, token, service)
        return int(answer.discarded)

    async def parked(self, token: str, service: str) -> list[ParkedView]:
        request = ops.ListParkedMessagesRequest(service=service, page_size=500)
        answer = await self._call(self._messages.ListParkedMessages, request, token, service)
        return [
            ParkedView(
                seq=m.seq,
                event_id=m.event_id,
                type=m.type,
                route=f"{m.exchange} / {m.routing_key}",
                reason=m.reason,
                parked_at=time_of(m, "parked_time"),
                correlation_id=m.correlation_id,
                body=_body(m),
            )
            for m in answer.messages
        ]

    async def unpark(
        self, token: str, service: str, *, event_ids: Sequence[str], reason: str
    ) -> int:
        request = ops.UnparkMessagesRequest(service=service, event_ids=event_ids, reason=reason)
        answer = await self._call(self._messages.UnparkMessages, request, token, service)
        return int(answer.unparked)

    async def message_history(
        self, token: str, service: str, *, correlation_id: str = "", event_ids: Sequence[str] = ()
    ) -> list[MessageEvent]:
        """What `service` did with the messages of `correlation_id` and with `event_ids` (at
        most 100)."""
        request = ops.GetMessageHistoryRequest(
            service=service, correlation_id=correlation_id, event_ids=event_ids
        )
        answer = await self._call(self._messages.GetMessageHistory, request, token, service)
        return [
            MessageEvent(
                service=service,
                time=time_of(e, "time"),
                fate=enum_name(ops.MessageFate, e.fate).lower().replace("_", "-"),
                event_id=e.event_id,
                type=e.type,
                where=e.where,
                instance=e.instance,
                actor=e.actor,
                detail=e.detail,
            )
            for e in answer.entries
        ]

    async def sagas(
        self,
        token: str,
        service: str,
        *,
        status: str = "",
        min_age_s: int = 0,
        page_token: str = "",
        page_size: int = 50,
    ) -> tuple[list[SagaView], str]:
        """A page of sagas (in `status`, e.g. NEEDS_OPERATOR; all if empty), and the next
        page's token ("" on the last)."""
        request = ops.ListSagasRequest(
            service=service,
            status=enum_value(ops.SagaStatus, status) if status else ops.SAGA_STATUS_UNSPECIFIED,
            min_age_seconds=min_age_s,
            page_size=page_size,
            page_token=page_token,
        )
        answer = await self._call(self._sagas.ListSagas, request, token, service)
        return [_saga(s) for s in answer.sagas], answer.next_page_token

    async def saga(self, token: str, service: str, saga_id: str) -> tuple[SagaView, list[SagaStep]]:
        request = ops.GetSagaRequest(service=service, saga_id=saga_id)
        answer = await self._call(self._sagas.GetSaga, request, token, service)
        history = [
            SagaStep(
                time=time_of(h, "time"),
                kind=enum_name(ops.SagaHistoryKind, h.kind).lower().replace("_", " "),
                step=h.step,
                message_type=h.message_type,
                saga_state=h.saga_state,
                detail=h.detail,
                actor=h.actor,
            )
            for h in answer.history
        ]
        return _saga(answer.saga), history

    async def retry_compensation(
        self, token: str, service: str, saga_id: str, *, reason: str
    ) -> SagaView:
        request = ops.RetryCompensationRequest(service=service, saga_id=saga_id, reason=reason)
        answer = await self._call(self._sagas.RetryCompensation, request, token, service)
        return _saga(answer.saga)

    async def resolve_saga(
        self, token: str, service: str, saga_id: str, *, reason: str
    ) -> SagaView:
        request = ops.ResolveSagaRequest(service=service, saga_id=saga_id, reason=reason)
        answer = await self._call(self._sagas.ResolveSaga, request, token, service)
        return _saga(answer.saga)


# The live system's figures, each named by its `figure` label, asked of Prometheus as one
# query (the recording rules of monitoring/rules.yml, as `make status` reads them).
FIGURES: Mapping[str, str] = {
    "rps": "service:grpc_server_handled:rate1m",
    "errors": "service:grpc_server_errors:ratio_rate1m",
    "p99_ms": "service:grpc_server_handling_seconds:p99_1m * 1000",
    "outbox_age_s": "service:ordermesh_outbox_oldest_age_seconds:max",
    "dead_letters": "queue:ordermesh_dead_letter_queue_messages:max",
    "waiting": "max by (queue) (ordermesh_queue_messages)",
    "consumers": "max by (queue) (ordermesh_queue_consumers)",
    "open_breaker": "destination:ordermesh_circuit_breaker_open:sum > 0",
    "up": 'up{job="ordermesh"}',
    # Per consumer queue, deliveries by outcome; with no queue, what a service published.
    "messages": "sum by (service, queue, stage) (rate(ordermesh_messages_total[1m]))",
}


def figures_query() -> str:
    return " or ".join(
        f'label_replace({expr}, "figure", "{name}", "", "")' for name, expr in FIGURES.items()
    )


class Prometheus:
    """Prometheus's HTTP API at `url` (its /api/v1)."""

    def __init__(self, url: str, *, http: aiohttp.ClientSession, timeout_s: float = 2.0):
        self.url = url.rstrip("/")
        self._http = http
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def _data(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        async with self._http.get(
            f"{self.url}/api/v1/{path}", params=params, timeout=self._timeout
        ) as answer:
            body = await answer.json(content_type=None)
        if not isinstance(body, dict) or body.get("status") != "success":
            raise Unavailable(f"Prometheus refused {path}: {str(body)[:200]}")
        return body["data"]

    async def query(self, expr: str) -> list[Series]:
        data = await self._data("query", {"query": expr})
        return [
            Series(labels=dict(r["metric"]), value=float(r["value"][1])) for r in data["result"]
        ]

    async def alerts(self) -> list[AlertView]:
        """The alerts firing now, as its rules decide them."""
        data = await self._data("alerts")
        return [
            _alert(a["labels"], a.get("annotations", {}), a.get("activeAt", ""))
            for a in data["alerts"]
            if a.get("state") == "firing"
        ]


class Alertmanager:
    """Alertmanager's API v2 at `url`: the alerts firing, neither silenced nor inhibited."""

    def __init__(self, url: str, *, http: aiohttp.ClientSession, timeout_s: float = 2.0):
        self.url = url.rstrip("/")
        self._http = http
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def alerts(self) -> list[AlertView]:
        params = {"active": "true", "silenced": "false", "inhibited": "false"}
        async with self._http.get(
            f"{self.url}/api/v2/alerts", params=params, timeout=self._timeout
        ) as answer:
            answer.raise_for_status()
            alerts = await answer.json(content_type=None)
        return [
            _alert(a["labels"], a.get("annotations", {}), a.get("startsAt", "")) for a in alerts
        ]


def _alert(labels: Mapping[str, str], annotations: Mapping[str, str], since: str) -> AlertView:
    return AlertView(
        name=labels.get("alertname", "?"),
        severity=labels.get("severity", ""),
        summary=annotations.get("summary", ""),
        since=since[:19].replace("T", " "),
        labels={k: v for k, v in labels.items() if k not in ("alertname", "severity")},
    )
