"""Wiring of the user service: `python -m services.user`, and its operator commands."""

from __future__ import annotations

from ordermesh import config
from ordermesh.defaults import Served, run_service
from ordermesh.runtime import Runtime
from ordermesh.store import Store, open_store
from ordermesh.tokens import KeySet, TokenVerifier

from services.user import api, consumers, graph, store
from services.user.config import UserSettings
from services.user.keys import SigningKeys
from services.user.service import CreditPolicy, TokenPolicy, Users


def users_of(settings: UserSettings, accounts: Store) -> tuple[Users, SigningKeys]:
    keys = SigningKeys(
        accounts,
        lifetime_s=settings.signing_key_lifetime_s,
        token_ttl_s=settings.access_token_ttl_s,
        lead_s=settings.signing_key_lead_s,
        recheck_s=settings.signing_key_recheck_s,
    )
    users = Users(
        accounts,
        keys=keys,
        tokens=TokenPolicy(
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            access_ttl_s=settings.access_token_ttl_s,
            refresh_ttl_s=settings.refresh_token_ttl_s,
        ),
        credit=CreditPolicy(limit_minor=settings.credit_limit_minor, currency=settings.currency),
    )
    return users, keys


async def main() -> None:
    await run_service(UserSettings, wire, collections=store.COLLECTIONS)


async def wire(runtime: Runtime, settings: UserSettings) -> Served:
    users, keys = users_of(settings, runtime.store)
    await keys.current()
    await runtime.consume(consumers.COMMANDS, consumers.handlers(users))
    # The service verifies its own tokens against its own keys, without a network hop, and
    # refuses ended sessions as the published edge policy says, as every service does.
    verifier = TokenVerifier(
        KeySet(keys.jwks),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        revoked=runtime.revoked(),
    )
    return Served(
        [api.service(users, keys)], subgraph=graph.subgraph(users), authenticator=verifier
    )


async def create_admin(email: str, password: str) -> str:
    """Creates an admin's account in the service's store (its UserRegistered leaves through the
    outbox, published by the service's relay); returns the user id. The operator's way to make
    an admin, with the service's settings: registering through the API never makes one."""
    settings = config.load(UserSettings)
    database = settings.store_database or settings.service_name
    user_store = open_store(settings.store_url, database=database)
    await user_store.open(store.COLLECTIONS)
    try:
        users, _ = users_of(settings, user_store)
        created = await users.create_admin(email=email, password=password)
    finally:
        await user_store.close()
    return str(created["_id"])
