"""The gRPC face of the user service: proto in, a use case, proto out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import grpc
from common.v1 import money_pb2
from ordermesh.errors import InvalidArgument
from ordermesh.grpc import Service
from ordermesh.identity import current_caller
from ordermesh.timestamps import timestamp
from user.v1 import user_service_pb2 as pb
from user.v1 import user_service_pb2_grpc as pb_grpc

from services import vocabulary
from services.user import domain
from services.user.keys import SigningKeys
from services.user.service import Tokens, Users, preferences_proto

Context: TypeAlias = grpc.aio.ServicerContext


def profile_proto(user: Mapping[str, Any]) -> pb.Profile:
    limit = int(user["credit_limit_minor"])
    available = domain.credit_available(user)
    return pb.Profile(
        user_id=user["_id"],
        email=user["email"],
        display_name=user["display_name"],
        roles=user["roles"],
        create_time=timestamp(user["create_time"]),
        credit_limit=money_pb2.Money(amount_minor=limit, currency_code=user["currency"]),
        credit_available=money_pb2.Money(amount_minor=available, currency_code=user["currency"]),
    )


def tokens_proto(tokens: Tokens) -> pb.TokenPair:
    return pb.TokenPair(
        access_token=tokens.access_token,
        access_token_expire_time=timestamp(tokens.access_expires_at),
        refresh_token=tokens.refresh_token,
        refresh_token_expire_time=timestamp(tokens.refresh_expires_at),
        token_type="Bearer",
    )


class UserApi(pb_grpc.UserServiceServicer):
    def __init__(self, users: Users, keys: SigningKeys):
        self._users = users
        self._keys = keys

    async def Register(self, request: pb.RegisterRequest, context: Context) -> pb.RegisterResponse:
        user = await self._users.register(
            email=request.email, password=request.password, display_name=request.display_name
        )
        return pb.RegisterResponse(profile=profile_proto(user))

    async def Login(self, request: pb.LoginRequest, context: Context) -> pb.LoginResponse:
        tokens = await self._users.login(email=request.email, password=request.password)
        return pb.LoginResponse(tokens=tokens_proto(tokens))

    async def RefreshToken(
        self, request: pb.RefreshTokenRequest, context: Context
    ) -> pb.RefreshTokenResponse:
        tokens = await self._users.refresh(request.refresh_token)
        return pb.RefreshTokenResponse(tokens=tokens_proto(tokens))

    async def Logout(self, request: pb.LogoutRequest, context: Context) -> pb.LogoutResponse:
        await self._users.logout(request.refresh_token)
        return pb.LogoutResponse()

    async def GetProfile(
        self, request: pb.GetProfileRequest, context: Context
    ) -> pb.GetProfileResponse:
        user = await self._users.profile(current_caller().user_id)
        return pb.GetProfileResponse(profile=profile_proto(user))

    async def UpdateProfile(
        self, request: pb.UpdateProfileRequest, context: Context
    ) -> pb.UpdateProfileResponse:
        display_name = request.display_name if request.HasField("display_name") else None
        user = await self._users.update_profile(current_caller().user_id, display_name=display_name)
        return pb.UpdateProfileResponse(profile=profile_proto(user))

    async def GetPreferences(
        self, request: pb.GetPreferencesRequest, context: Context
    ) -> pb.GetPreferencesResponse:
        user = await self._users.profile(current_caller().user_id)
        return pb.GetPreferencesResponse(preferences=preferences_proto(user["preferences"]))

    async def UpdatePreferences(
        self, request: pb.UpdatePreferencesRequest, context: Context
    ) -> pb.UpdatePreferencesResponse:
        channels: dict[str, list[str]] = {}
        for subscription in request.subscriptions:
            kind = vocabulary.kind_name(subscription.kind)
            if kind == "unspecified":
                raise InvalidArgument("a subscription names no notification kind")
            if kind in channels:
                raise InvalidArgument(f"notification kind {kind!r} is listed twice")
            names = [vocabulary.channel_name(c) for c in subscription.channels]
            if "unspecified" in names:
                raise InvalidArgument(f"a channel of kind {kind!r} is CHANNEL_UNSPECIFIED")
            channels[kind] = names
        preferences = await self._users.update_preferences(
            current_caller().user_id,
            channels=channels,
            phone_number=request.phone_number if request.HasField("phone_number") else None,
            push_token=request.push_token if request.HasField("push_token") else None,
        )
        return pb.UpdatePreferencesResponse(preferences=preferences_proto(preferences))

    async def GetJwks(self, request: pb.GetJwksRequest, context: Context) -> pb.GetJwksResponse:
        jwks = await self._keys.jwks()
        return pb.GetJwksResponse(keys=[pb.JsonWebKey(**key) for key in jwks["keys"]])


def service(users: Users, keys: SigningKeys) -> Service:
    return Service(
        descriptor=pb.DESCRIPTOR.services_by_name["UserService"],
        servicer=UserApi(users, keys),
        add_to_server=pb_grpc.add_UserServiceServicer_to_server,
    )
