"""Accounts, sessions and access over gRPC against the real user, inventory and order services."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid

import grpc
import jwt
import pytest
from common.v1 import money_pb2, notification_pb2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from inventory.v1 import inventory_service_pb2 as inventory_pb
from notification.v1 import notification_service_pb2 as notification_pb
from order.v1 import order_service_pb2 as order_pb
from user.v1 import user_service_pb2 as user_pb

from harness.shop import PASSWORD
from harness.system import ADMIN_EMAIL


async def rpc_error(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


def email() -> str:
    return f"u-{uuid.uuid4().hex[:10]}@example.com"


@pytest.mark.parametrize(
    ("address", "password", "message"),
    [
        ("not-an-email", PASSWORD, "is not a valid address"),
        (None, "short", "at least 10 characters"),
        (None, "x" * 129, "password: 129 characters, at most 128"),
    ],
)
async def test_registration_refuses_bad_input_naming_the_problem(shop, address, password, message):
    error = await rpc_error(
        shop.users.Register(user_pb.RegisterRequest(email=address or email(), password=password))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.details()


async def test_an_email_is_registered_once_whatever_its_case(shop):
    address = email()
    await shop.register(address)
    error = await rpc_error(
        shop.users.Register(
            user_pb.RegisterRequest(email=f"  {address.upper()} ", password=PASSWORD)
        )
    )
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(shop):
    session = await shop.register()
    wrong = await rpc_error(
        shop.users.Login(user_pb.LoginRequest(email=session.email, password="wrong password!"))
    )
    unknown = await rpc_error(
        shop.users.Login(user_pb.LoginRequest(email=email(), password=PASSWORD))
    )
    assert wrong.code() == unknown.code() == grpc.StatusCode.UNAUTHENTICATED
    assert wrong.details() == unknown.details()


async def test_a_refresh_rotates_the_token_and_a_reused_one_revokes_the_session(shop):
    session = await shop.register()
    rotated = await shop.users.RefreshToken(
        user_pb.RefreshTokenRequest(refresh_token=session.refresh_token)
    )
    assert rotated.tokens.refresh_token != session.refresh_token
    assert rotated.tokens.token_type == "Bearer"

    reuse = await rpc_error(
        shop.users.RefreshToken(user_pb.RefreshTokenRequest(refresh_token=session.refresh_token))
    )
    assert reuse.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in reuse.details()
    # The thief's copy is dead, and so is the token the rightful owner holds.
    after = await rpc_error(
        shop.users.RefreshToken(
            user_pb.RefreshTokenRequest(refresh_token=rotated.tokens.refresh_token)
        )
    )
    assert after.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_logout_ends_the_session_of_the_refresh_token(shop):
    session = await shop.register()
    await shop.users.Logout(user_pb.LogoutRequest(refresh_token=session.refresh_token))
    error = await rpc_error(
        shop.users.RefreshToken(user_pb.RefreshTokenRequest(refresh_token=session.refresh_token))
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_the_jwks_publishes_the_key_that_signed_an_access_token(shop):
    session = await shop.register()
    jwks = await shop.users.GetJwks(user_pb.GetJwksRequest())
    kid = jwt.get_unverified_header(session.access_token)["kid"]
    assert [k for k in jwks.keys if k.kid == kid and k.alg == "EdDSA" and k.kty == "OKP"]


async def test_calls_without_a_valid_token_are_refused_by_every_service(shop):
    stranger = Ed25519PrivateKey.generate()
    now = int(time.time())
    forged = jwt.encode(
        {"iss": "ordermesh", "aud": "ordermesh", "sub": "u-x", "iat": now, "exp": now + 60},
        stranger,
        algorithm="EdDSA",
        headers={"kid": "made-up"},
    )
    bad_tokens = ("not-a-jwt", forged, "")
    for metadata in ([("authorization", f"Bearer {t}")] if t else [] for t in bad_tokens):
        for call in (
            shop.users.GetProfile(user_pb.GetProfileRequest(), metadata=metadata),
            shop.orders.ListOrders(order_pb.ListOrdersRequest(), metadata=metadata),
            shop.notifications.ListNotifications(
                notification_pb.ListNotificationsRequest(),
                metadata=metadata,
            ),
        ):
            error = await rpc_error(call)
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_only_an_admin_creates_products_or_adjusts_stock(shop):
    customer = await shop.register()
    request = inventory_pb.CreateProductRequest(
        sku="SKU-NOT-ALLOWED",
        name="Forbidden",
        price=money_pb2.Money(amount_minor=100, currency_code="EUR"),
    )
    error = await rpc_error(shop.inventory.CreateProduct(request, metadata=customer.metadata))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED

    product = await shop.product(stock=1)
    error = await rpc_error(
        shop.inventory.AdjustStock(
            inventory_pb.AdjustStockRequest(product_id=product.product_id, delta=5),
            metadata=customer.metadata,
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_stock_is_never_adjusted_below_zero(shop):
    admin = await shop.admin()
    product = await shop.product(stock=3)
    error = await rpc_error(
        shop.inventory.AdjustStock(
            inventory_pb.AdjustStockRequest(product_id=product.product_id, delta=-4),
            metadata=admin.metadata,
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert await shop.available(product.product_id) == 3


async def test_preferences_need_the_contact_details_of_the_channels_they_choose(shop):
    session = await shop.register()
    sms = user_pb.ChannelSubscription(
        kind=notification_pb2.NOTIFICATION_KIND_ORDER_APPROVED,
        channels=[notification_pb2.CHANNEL_SMS],
    )
    error = await rpc_error(
        shop.users.UpdatePreferences(
            user_pb.UpdatePreferencesRequest(subscriptions=[sms]), metadata=session.metadata
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    error = await rpc_error(
        shop.users.UpdatePreferences(
            user_pb.UpdatePreferencesRequest(subscriptions=[sms], phone_number="12345"),
            metadata=session.metadata,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "E.164" in error.details()


def roles_of(session) -> list[str]:
    return jwt.decode(session.access_token, options={"verify_signature": False})["roles"]


async def create_admin(
    system, address: str, password: str, *options: str
) -> subprocess.CompletedProcess:
    """The operator's command, beside the running user service, on its store."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.user", "create-admin", "--email", address,
         "--password-stdin", *options],
        input=password + "\n", capture_output=True, text=True, timeout=60,
        env={**os.environ, **system._env_of("user"), "INSTANCE_ID": "operator"},
    )  # fmt: skip


async def test_registering_never_makes_an_admin_not_even_with_the_admins_email(shop, system):
    """The admin role went to whoever registered ADMIN_EMAIL first; the admin now exists
    before the system opens, and the API makes customers only."""
    error = await rpc_error(
        shop.users.Register(
            user_pb.RegisterRequest(email=ADMIN_EMAIL, password=PASSWORD, display_name="Eve")
        )
    )
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert roles_of(await shop.register()) == ["customer"]
    assert "admin" in roles_of(await shop.admin())


async def test_an_operator_creates_admins_and_cannot_be_tricked_into_promoting_a_customer(
    shop, system
):
    squatted = await shop.register()
    refused = await create_admin(system, squatted.email, "another good password")
    assert refused.returncode != 0
    assert "exists already" in refused.stderr
    # A deployment's one-shot step succeeds on an existing account, and promotes no one.
    again = await create_admin(system, squatted.email, "another good password", "--if-missing")
    assert again.returncode == 0, again.stderr
    assert roles_of(await shop.login(squatted.email)) == ["customer"]

    address = email()
    created = await create_admin(system, address, "an operator's password")

    assert created.returncode == 0, created.stderr
    admin = await shop.login(address, "an operator's password")
    assert roles_of(admin) == ["customer", "admin"]
    response = await shop.inventory.CreateProduct(
        inventory_pb.CreateProductRequest(
            sku=f"SKU-{uuid.uuid4().hex[:8]}", name="Lamp",
            price=money_pb2.Money(amount_minor=500, currency_code="EUR"),
        ),
        metadata=admin.metadata,
    )  # fmt: skip
    assert response.product.name == "Lamp"
