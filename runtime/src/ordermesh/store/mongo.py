"""The MongoDB adapter of the storage port: PyMongo's async client, multi-document transactions.

Needs a replica set (MongoDB transactions do). A transaction that meets a concurrent write
(MongoDB's TransientTransactionError) raises VersionConflict, so `run_transaction` retries it;
a server that cannot be reached raises StoreUnavailable.
Outbox order comes from a counter document incremented in the same transaction: transactions
that publish are serialised on it, which is what keeps the order.

No MongoDB server can be installed on this project's machines: this adapter's run of the
storage behaviour suite happens only where MONGODB_URL is set (see tests/integration).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC
from typing import Any

import aio_pika
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, DuplicateKeyError, OperationFailure

from ordermesh.events import Envelope, Outgoing, Route
from ordermesh.store import (
    Collection,
    Document,
    DuplicateKey,
    Handled,
    OutboxRecord,
    OutboxRow,
    ParkedRow,
    StoreUnavailable,
    VersionConflict,
)

__all__ = ["MongoStore"]


def _document(raw: Mapping[str, Any]) -> Document:
    document = {k: v for k, v in raw.items() if k != "_v"}
    document["_version"] = raw["_v"]
    return document


def _body(document: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k not in ("_id", "_version")}


def _duplicate(exc: DuplicateKeyError, collection: str) -> DuplicateKey:
    fields = ", ".join((exc.details or {}).get("keyPattern", {}) or ["_id"])
    return DuplicateKey(f"{collection}: another document has the same {fields}")


class _Transaction:
    def __init__(self, db: AsyncDatabase[Any], session: AsyncClientSession):
        self._db = db
        self._session = session
        self.outgoing: list[tuple[Outgoing, str]] = []

    async def get(self, collection: str, id: str) -> Document | None:
        raw = await self._db[collection].find_one({"_id": id}, session=self._session)
        return _document(raw) if raw else None

    async def insert(self, collection: str, id: str, document: Mapping[str, Any]) -> Document:
        try:
            await self._db[collection].insert_one(
                {**_body(document), "_id": id, "_v": 1}, session=self._session
            )
        except DuplicateKeyError as exc:
            raise _duplicate(exc, collection) from None
        return {**document, "_id": id, "_version": 1}

    async def update(self, collection: str, document: Mapping[str, Any]) -> Document:
        id, version = document["_id"], document["_version"]
        try:
            result = await self._db[collection].replace_one(
                {"_id": id, "_v": version},
                {**_body(document), "_v": version + 1},
                session=self._session,
            )
        except DuplicateKeyError as exc:
            raise _duplicate(exc, collection) from None
        if result.matched_count != 1:
            raise VersionConflict(f"{collection}/{id} changed since version {version} was read")
        return {**document, "_version": version + 1}

    async def delete(self, collection: str, id: str) -> bool:
        result = await self._db[collection].delete_one({"_id": id}, session=self._session)
        return result.deleted_count == 1

    async def find(
        self,
        collection: str,
        *,
        where: Mapping[str, Any] | None = None,
        order_by: str = "_id",
        descending: bool = False,
        after: tuple[Any, str] | None = None,
        limit: int | None = None,
    ) -> list[Document]:
        query: dict[str, Any] = dict(where or {})
        if after is not None:
            beyond = "$lt" if descending else "$gt"
            value, id = after
            query["$or"] = [{order_by: {beyond: value}}, {order_by: value, "_id": {beyond: id}}]
        direction = DESCENDING if descending else ASCENDING
        sort = [(order_by, direction)] + ([("_id", direction)] if order_by != "_id" else [])
        cursor = self._db[collection].find(query, session=self._session, sort=sort)
        if limit is not None:
            cursor = cursor.limit(limit)
        return [_document(raw) async for raw in cursor]

    def publish(self, message: Outgoing, *, key: str = "") -> None:
        self.outgoing.append((message, key))

    async def first_time(self, consumer: str, event_id: str) -> bool:
        inbox = self._db["inbox"]
        id = f"{consumer}|{event_id}"
        if await inbox.find_one({"_id": id}, session=self._session):
            return False
        try:
            await inbox.insert_one(
                {"_id": id, "consumer": consumer, "processed_at": time.time()},
                session=self._session,
            )
        except DuplicateKeyError:
            # A concurrent transaction recorded it first; this one is aborted, so retry it.
            raise VersionConflict(f"{consumer} handled {event_id} concurrently") from None
        return True

    async def flush_outbox(self) -> None:
        counter = await self._db["counters"].find_one_and_update(
            {"_id": "outbox"},
            {"$inc": {"n": len(self.outgoing)}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
            session=self._session,
        )
        assert counter is not None, "an upsert with ReturnDocument.AFTER returns the document"
        first = counter["n"] - len(self.outgoing) + 1
        await self._db["outbox"].insert_many(
            [
                {
                    "_id": first + i,
                    "key": key,
                    "event_id": m.envelope.event_id,
                    "type": m.envelope.type,
                    "exchange": m.route.exchange,
                    "exchange_type": m.route.exchange_type.value,
                    "routing_key": m.route.routing_key,
                    "is_command": m.route.is_command,
                    "payload": m.payload,
                    "envelope": {
                        "occurred_at": m.envelope.occurred_at,
                        "correlation_id": m.envelope.correlation_id,
                        "causation_id": m.envelope.causation_id,
                        "producer": m.envelope.producer,
                        "traceparent": m.envelope.traceparent,
                        "headers": dict(m.envelope.headers),
                    },
                    "sent_at": None,
                }
                for i, (m, key) in enumerate(self.outgoing)
            ],
            session=self._session,
        )


def _outbox_row(raw: Mapping[str, Any]) -> OutboxRow:
    envelope = raw["envelope"]
    return OutboxRow(
        seq=raw["_id"],
        key=raw["key"],
        message=Outgoing(
            envelope=Envelope(
                event_id=raw["event_id"],
                type=raw["type"],
                occurred_at=envelope["occurred_at"],
                correlation_id=envelope["correlation_id"],
                causation_id=envelope["causation_id"],
                producer=envelope["producer"],
                traceparent=envelope["traceparent"],
                headers=envelope["headers"],
            ),
            route=Route(
                exchange=raw["exchange"],
                exchange_type=aio_pika.ExchangeType(raw["exchange_type"]),
                routing_key=raw["routing_key"],
                is_command=raw["is_command"],
            ),
            payload=bytes(raw["payload"]),
        ),
    )


class MongoStore:
    def __init__(self, url: str, *, database: str):
        self._client: AsyncMongoClient[Any] = AsyncMongoClient(url, tz_aware=True)
        self._db: AsyncDatabase[Any] = self._client[database]
        self.outbox_event = asyncio.Event()

    async def open(self, collections: Sequence[Collection] = ()) -> None:
        await self._client.aconnect()
        await self._db["outbox"].create_index([("sent_at", ASCENDING), ("_id", ASCENDING)])
        await self._db["inbox"].create_index([("consumer", ASCENDING)])
        await self._db["inbox"].create_index([("processed_at", ASCENDING)])
        for collection in collections:
            await self._db.create_collection(collection.name, check_exists=False)
            for field in collection.unique:
                await self._db[collection.name].create_index(
                    [(field, ASCENDING)],
                    unique=True,
                    partialFilterExpression={field: {"$exists": True}},
                )
            for field in collection.indexed:
                await self._db[collection.name].create_index(
                    [(field, ASCENDING), ("_id", ASCENDING)]
                )

    async def close(self) -> None:
        await self._client.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Transaction]:
        async with self._client.start_session() as session:
            try:
                async with await session.start_transaction():
                    tx = _Transaction(self._db, session)
                    yield tx
                    if tx.outgoing:
                        await tx.flush_outbox()
            except OperationFailure as exc:
                if exc.has_error_label("TransientTransactionError"):
                    raise VersionConflict(f"aborted by a concurrent write: {exc}") from exc
                raise
            except ConnectionFailure as exc:
                raise StoreUnavailable(f"MongoDB cannot be reached: {exc}") from exc
        if tx.outgoing:
            self.outbox_event.set()

    @asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        """Commits of other instances are found at the relay's next poll. A change stream on
        the outbox could tell at once (the replica set that transactions need has them); not
        built, as no MongoDB server can run on this project's machines to test it."""
        yield

    async def pending(self, limit: int, *, after: int = 0) -> list[OutboxRow]:
        # `parked: None` also matches rows written before messages could be parked.
        cursor = (
            self._db["outbox"]
            .find(
                {"sent_at": None, "parked": None, "_id": {"$gt": after}},
                sort=[("_id", ASCENDING)],
            )
            .limit(limit)
        )
        return [_outbox_row(raw) async for raw in cursor]

    async def park(self, refused: Sequence[tuple[int, str]]) -> None:
        now = time.time()
        for seq, reason in refused:
            await self._db["outbox"].update_one(
                {"_id": seq, "sent_at": None},
                {"$set": {"parked": {"at": now, "reason": reason}}},
            )

    async def parked(self, limit: int = 1000) -> list[ParkedRow]:
        cursor = (
            self._db["outbox"]
            .find({"sent_at": None, "parked": {"$ne": None}}, sort=[("_id", ASCENDING)])
            .limit(limit)
        )
        return [
            ParkedRow(
                _outbox_row(raw), reason=raw["parked"]["reason"], parked_at=raw["parked"]["at"]
            )
            async for raw in cursor
        ]

    async def unpark(self, event_ids: Iterable[str] | None = None) -> int:
        query: dict[str, Any] = {"sent_at": None, "parked": {"$ne": None}}
        if event_ids is not None:
            query["event_id"] = {"$in": list(event_ids)}
        result = await self._db["outbox"].update_many(query, {"$set": {"parked": None}})
        return result.modified_count

    async def outbox_records(
        self, *, event_ids: Sequence[str] = (), correlation_id: str = "", limit: int = 500
    ) -> list[OutboxRecord]:
        either: list[dict[str, Any]] = [{"event_id": {"$in": list(event_ids)}}]
        if correlation_id:
            either.append({"envelope.correlation_id": correlation_id})
        cursor = self._db["outbox"].find({"$or": either}, sort=[("_id", ASCENDING)]).limit(limit)
        return [
            OutboxRecord(
                _outbox_row(raw),
                sent_at=raw["sent_at"],
                parked_at=(raw.get("parked") or {}).get("at"),
                parked_reason=(raw.get("parked") or {}).get("reason"),
            )
            async for raw in cursor
        ]

    async def handled(self, consumers: Sequence[str], event_ids: Sequence[str]) -> list[Handled]:
        keys = [f"{consumer}|{event_id}" for consumer in consumers for event_id in event_ids]
        cursor = self._db["inbox"].find({"_id": {"$in": keys}}, sort=[("processed_at", ASCENDING)])
        return [
            Handled(raw["consumer"], raw["_id"].partition("|")[2], raw["processed_at"])
            async for raw in cursor
        ]

    async def mark_sent(self, seqs: Sequence[int]) -> None:
        await self._db["outbox"].update_many(
            {"_id": {"$in": list(seqs)}}, {"$set": {"sent_at": time.time()}}
        )

    async def acquire_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        now = time.time()
        try:
            await self._db["leases"].update_one(
                {"_id": name, "$or": [{"owner": owner}, {"expires_at": {"$lt": now}}]},
                {"$set": {"owner": owner, "expires_at": now + ttl_s}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        return True

    async def prune(self, *, sent_before: float, handled_before: float, limit: int = 1000) -> int:
        # Outbox ids come from a counter, never handed out twice: any sent row may go.
        outbox, inbox = self._db["outbox"], self._db["inbox"]
        sent = [
            r["_id"]
            async for r in outbox.find(
                {"sent_at": {"$ne": None, "$lt": sent_before}}, {"_id": 1}
            ).limit(limit)
        ]
        handled = [
            r["_id"]
            async for r in inbox.find({"processed_at": {"$lt": handled_before}}, {"_id": 1}).limit(
                limit
            )
        ]
        deleted = 0
        if sent:
            deleted += (await outbox.delete_many({"_id": {"$in": sent}})).deleted_count
        if handled:
            deleted += (await inbox.delete_many({"_id": {"$in": handled}})).deleted_count
        return deleted

    async def count_outbox(self) -> tuple[int, int]:
        outbox = self._db["outbox"]
        pending = await outbox.count_documents({"sent_at": None, "parked": None})
        sent = await outbox.count_documents({"sent_at": {"$ne": None}})
        return pending, sent

    async def count_pending(self) -> int:
        return await self._db["outbox"].count_documents({"sent_at": None, "parked": None})

    async def count_inbox(self, consumer: str) -> int:
        return await self._db["inbox"].count_documents({"consumer": consumer})

    async def ping(self) -> None:
        await self._client.admin.command("ping")

    async def now(self) -> float:
        hello = await self._client.admin.command("hello")
        return float(hello["localTime"].replace(tzinfo=UTC).timestamp())
