"""The storefront's use cases: a customer registers, signs in and out, reads the catalogue,
places an order, follows it while its saga decides it, reads the notifications sent, cancels;
each a call of the public API through the gateway (services.storefront.api) with the signed-in
customer's access token, renewed before it expires (ordermesh.web.sessions).

    SignedOut (ordermesh.web)   the session is gone, or the gateway no longer takes its token:
                              sign in again

Other failures are ordermesh.errors domain errors, their message shown on the page.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ordermesh.errors import DomainError, InvalidArgument
from ordermesh.logging import get_logger
from ordermesh.web.sessions import Session, Sessions, Tokens

from services.storefront.api import Address, Api, Notification, Order, Product, Step

__all__ = ["OrderPage", "Storefront"]

log = get_logger(__name__)

# The bounds the user service's contract gives (user.v1.RegisterRequest).
MAX_EMAIL, MAX_PASSWORD, MAX_NAME = 254, 128, 100
MAX_QUANTITY = 10_000
# What a customer gives as the reason of a cancel (order.v2.CancelOrderRequest's bound).
MAX_REASON = 500
REGION = re.compile(r"[A-Z]{2}")


@dataclass(frozen=True)
class OrderPage:
    """An order as its page shows it: the order, its saga's steps, the notifications about it."""

    order: Order
    steps: list[Step]
    notifications: list[Notification]


def _credentials(email: str, password: str) -> tuple[str, str]:
    email = email.strip()
    if not email or not password:
        raise InvalidArgument("give your e-mail and your password")
    if len(email) > MAX_EMAIL or len(password) > MAX_PASSWORD:
        raise InvalidArgument("the e-mail or the password is too long")
    return email, password


def chosen_items(form: Mapping[str, str]) -> dict[str, int]:
    """The quantities a catalogue form asks for (`quantity-<product id>` fields), those above
    0; InvalidArgument for one that is not a whole number from 0 to MAX_QUANTITY."""
    items = {}
    for field, value in form.items():
        if not field.startswith("quantity-") or not value.strip():
            continue
        product_id = field.removeprefix("quantity-")
        try:
            quantity = int(value)
        except ValueError:
            raise InvalidArgument(f"{value[:20]!r} is not a quantity") from None
        if not 0 <= quantity <= MAX_QUANTITY:
            raise InvalidArgument(f"a quantity is from 0 to {MAX_QUANTITY:,}")
        if quantity:
            items[product_id] = quantity
    if not items:
        raise InvalidArgument("choose at least one product: give it a quantity")
    return items


def delivery_address(form: Mapping[str, str]) -> Address:
    address = Address(
        recipient=form.get("recipient", "").strip(),
        line=form.get("line", "").strip(),
        locality=form.get("locality", "").strip(),
        postal_code=form.get("postal_code", "").strip(),
        region_code=form.get("region_code", "").strip().upper(),
    )
    if not (address.recipient and address.line and address.locality):
        raise InvalidArgument("give the delivery address: the recipient, a street and a town")
    if not REGION.fullmatch(address.region_code):
        raise InvalidArgument("the country is its two-letter code, e.g. DE or FR")
    return address


class Storefront:
    def __init__(self, api: Api, sessions: Sessions):
        self.api = api
        self.sessions = sessions

    # Accounts.

    async def register(self, email: str, password: str, name: str) -> Session:
        """A new customer's account, and a session for it (signed in at once)."""
        email, password = _credentials(email, password)
        name = name.strip()
        if not name or len(name) > MAX_NAME:
            raise InvalidArgument(f"give your name (at most {MAX_NAME} characters)")
        await self.api.register(email, password, name)
        log.info("customer registered in the storefront")
        return await self.sign_in(email, password)

    async def sign_in(self, email: str, password: str) -> Session:
        """A session for the customer; Unauthenticated for a wrong e-mail or password."""
        email, password = _credentials(email, password)
        tokens = await self.api.login(email, password)
        user_id, email, name = await self.api.profile(tokens.access_token)
        session = await self.sessions.create(
            user_id=user_id, email=email, name=name or email, roles=(), tokens=tokens
        )
        log.info("customer signed in to the storefront", user_id=user_id)
        return session

    async def sign_out(self, session: Session) -> None:
        await self.sessions.delete(session.id)
        try:
            await self.api.logout(session.refresh_token)
        except DomainError as exc:  # the session ends here anyway; its tokens then expire
            log.warning("logout not confirmed by the user service", error=str(exc))
        log.info("customer signed out of the storefront", user_id=session.user_id)

    async def _renew(self, refresh_token: str) -> Tokens:
        return await self.api.refresh(refresh_token)

    # The catalogue and orders.

    async def catalogue(self) -> list[Product]:
        return await self.api.products()

    async def place_order(
        self, session: Session, *, key: str, items: Mapping[str, int], address: Address
    ) -> Order:
        if not key or len(key) > 128:
            raise InvalidArgument("this order form expired: open the catalogue again")
        order = await self.sessions.using(
            session,
            self._renew,
            lambda token: self.api.place_order(token, key=key, items=items, address=address),
        )
        log.info("order placed in the storefront", order_id=order.order_id)
        return order

    async def orders(self, session: Session) -> list[Order]:
        return await self.sessions.using(session, self._renew, self.api.orders)

    async def order(self, session: Session, order_id: str) -> OrderPage:
        async def read(token: str) -> OrderPage:
            order = await self.api.order(token, order_id)
            steps = await self.api.history(token, order_id)
            mine = [n for n in await self.api.notifications(token) if n.subject_id == order_id]
            return OrderPage(order, steps, mine)

        return await self.sessions.using(session, self._renew, read)

    async def cancel(self, session: Session, order_id: str, reason: str) -> Order:
        reason = reason.strip() or "cancelled by the customer"
        if len(reason) > MAX_REASON:
            raise InvalidArgument(f"the reason is {len(reason)} characters; at most {MAX_REASON}")
        order = await self.sessions.using(
            session, self._renew, lambda token: self.api.cancel(token, order_id, reason)
        )
        log.info("order cancelled in the storefront", order_id=order_id)
        return order

    async def notifications(self, session: Session) -> list[Notification]:
        return await self.sessions.using(session, self._renew, self.api.notifications)
