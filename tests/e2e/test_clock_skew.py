"""A host whose clock runs ahead (issue 25, defect 9): an instance of the user service started
under libfaketime 25 s in the future issues tokens that every verifier accepts (the gateway's
jwt_authn, each service), since all of them tolerate the same skew (ordermesh.tokens.CLOCK_SKEW_S:
30 s). Before, a token issued more than 5 s ahead was refused by the services."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import sqlite3
import time

import aiohttp
import grpc
import jwt
from order.v1 import order_service_pb2 as order_pb
from order.v1 import order_service_pb2_grpc as order_grpc
from ordermesh.tokens import CLOCK_SKEW_S
from user.v1 import user_service_pb2 as user_pb
from user.v1 import user_service_pb2_grpc as user_grpc

from harness.shop import PASSWORD

AHEAD_S = 25


async def test_tokens_issued_by_a_host_whose_clock_runs_ahead_are_accepted_everywhere(
    system, gateway
):
    assert AHEAD_S < CLOCK_SKEW_S
    (faketime,) = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    ahead = await asyncio.to_thread(
        system.add_instance,
        "user",
        "user-ahead",
        LD_PRELOAD=faketime,
        FAKETIME=f"+{AHEAD_S}s",
        FAKETIME_DONT_FAKE_MONOTONIC="1",  # timeouts and sleeps keep real time
    )
    try:
        async with grpc.aio.insecure_channel(ahead.address) as channel:
            users = user_grpc.UserServiceStub(channel)
            email = f"skew-{time.time_ns()}@example.com"
            await users.Register(
                user_pb.RegisterRequest(email=email, password=PASSWORD, display_name="Ada"),
                timeout=10,
            )
            login = await users.Login(user_pb.LoginRequest(email=email, password=PASSWORD))
        token = login.tokens.access_token
        issued_at = jwt.decode(token, options={"verify_signature": False})["iat"]
        assert issued_at - time.time() > AHEAD_S - 3  # issued in this host's future

        bearer = {"authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{gateway.url}/v1/users/me", headers=bearer) as response:
                assert response.status == 200, await response.text()
            async with http.post(
                f"{gateway.url}/graphql", json={"query": "{ me { email } }"}, headers=bearer
            ) as response:
                assert (await response.json())["data"] == {"me": {"email": email}}
        async with grpc.aio.insecure_channel(system.address("order")) as channel:
            orders = order_grpc.OrderServiceStub(channel)
            listed = await orders.ListOrders(
                order_pb.ListOrdersRequest(page_size=5),
                metadata=[("authorization", f"Bearer {token}")],
                timeout=5,
            )
            assert list(listed.orders) == []
    finally:
        await asyncio.to_thread(ahead.stop)
        # Ahead of the others, it found their outbox lease expired and took it, until 25 s
        # later than they think: SQLite's leases compare each process's clock, which processes
        # sharing a file on one host share (PostgreSQL's compare the server's). Handed back.
        store = system.store_url("user").removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(store)) as db, db:
            db.execute("DELETE FROM leases WHERE owner = ?", ("user-ahead",))
