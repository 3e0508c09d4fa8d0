"""The order service's collections: orders, and the state of their sagas."""

from ordermesh.saga import SAGAS
from ordermesh.store import Collection

# `idempotency` is "<user id>/<client key>": a key is unique per user, not across users.
ORDERS = Collection("orders", unique=("idempotency",), indexed=("user_id", "create_time"))

COLLECTIONS = (ORDERS, SAGAS)
