"""The user service's collections: accounts, sessions, refresh tokens, credit reservations, keys."""

from ordermesh.store import Collection

from services.user.keys import SIGNING_KEYS

USERS = Collection("users", unique=("email",))
SESSIONS = Collection("sessions", indexed=("user_id",))
# Refresh tokens by the SHA-256 of the token: the token itself is never stored.
REFRESH_TOKENS = Collection("refresh_tokens", indexed=("session_id",))
# One per order id: RESERVED, REFUSED, or RELEASED (also a release that came first).
CREDIT = Collection("credit_reservations")

COLLECTIONS = (USERS, SESSIONS, REFRESH_TOKENS, CREDIT, SIGNING_KEYS)
