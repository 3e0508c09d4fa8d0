"""Wiring of the user service: `python -m services.user`."""

from __future__ import annotations

from chassis import config
from chassis import logging as chassis_logging
from chassis.grpc import serve
from chassis.runtime import Runtime
from chassis.tokens import KeySet, TokenVerifier
from services.user import api, consumers, store
from services.user.config import UserSettings
from services.user.keys import SigningKeys
from services.user.service import CreditPolicy, TokenPolicy, Users


async def main() -> None:
    settings = config.load(UserSettings)
    chassis_logging.configure(
        service=settings.service_name, instance=settings.instance_id, level=settings.log_level
    )
    async with Runtime.open(settings, collections=store.COLLECTIONS) as runtime:
        keys = SigningKeys(
            runtime.store,
            lifetime_s=settings.signing_key_lifetime_s,
            token_ttl_s=settings.access_token_ttl_s,
        )
        users = Users(
            runtime.store,
            keys=keys,
            tokens=TokenPolicy(
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                access_ttl_s=settings.access_token_ttl_s,
                refresh_ttl_s=settings.refresh_token_ttl_s,
            ),
            credit=CreditPolicy(
                limit_minor=settings.credit_limit_minor, currency=settings.currency
            ),
            admin_email=settings.admin_email,
        )
        await keys.current()
        await users.grant_admin()
        await runtime.consume(consumers.COMMANDS, consumers.handlers(users))
        # The service verifies its own tokens against its own keys, without a network hop.
        verifier = TokenVerifier(
            KeySet(keys.jwks), issuer=settings.jwt_issuer, audience=settings.jwt_audience
        )
        await serve(
            settings,
            [api.service(users, keys)],
            readiness=runtime.readiness(),
            authenticator=verifier,
            identity=runtime.signed_identity(),
        )
