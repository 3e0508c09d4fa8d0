"""The order service's collections: orders, and the state of their sagas."""

from chassis.saga import SAGAS
from chassis.store import Collection

# `idempotency` is "<user id>/<client key>": a key is unique per user, not across users.
ORDERS = Collection("orders", unique=("idempotency",), indexed=("user_id", "create_time"))

COLLECTIONS = (ORDERS, SAGAS)
