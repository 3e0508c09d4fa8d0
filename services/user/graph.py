"""The user service's GraphQL subgraph: User, the entity of the caller's account, keyed by its
`userId`; the order subgraph adds a user's orders to it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import strawberry
from ordermesh.errors import NotFound
from ordermesh.graphql import Money, Subgraph, caller_of, load, money

from services.user import domain
from services.user.service import Users

USERS = "users"


@strawberry.federation.type(keys=["userId"], description="An account")
class User:
    user_id: strawberry.ID
    email: str
    display_name: str
    roles: list[str]
    credit_limit: Money = strawberry.field(
        description="The most the user may have reserved by orders not yet settled"
    )
    credit_available: Money = strawberry.field(description="The limit minus reservations")

    @classmethod
    async def resolve_reference(
        cls,
        info: strawberry.Info,
        userId: strawberry.ID,  # named as the representation's key
    ) -> User:
        """The caller's own account; another's is as not found as a missing one."""
        caller = caller_of(info)
        if str(userId) != caller.user_id:
            raise NotFound(f"user {userId} does not exist")
        return await load(info, USERS, caller.user_id)  # type: ignore[no-any-return]


def user_of(user: Mapping[str, Any]) -> User:
    return User(
        user_id=strawberry.ID(user["_id"]),
        email=user["email"],
        display_name=user["display_name"],
        roles=list(user["roles"]),
        credit_limit=money(int(user["credit_limit_minor"]), user["currency"]),
        credit_available=money(domain.credit_available(user), user["currency"]),
    )


def subgraph(users: Users) -> Subgraph:
    async def profiles(ids: Sequence[str]) -> list[User | Exception]:
        found: list[User | Exception] = []
        for user_id in ids:
            try:
                found.append(user_of(await users.profile(user_id)))
            except NotFound as exc:
                found.append(exc)
        return found

    @strawberry.type
    class Query:
        @strawberry.field(description="The caller's account")
        async def me(self, info: strawberry.Info) -> User:
            return await load(info, USERS, caller_of(info).user_id)  # type: ignore[no-any-return]

    return Subgraph(name="user", query=Query, types=[User], loaders={USERS: profiles})
