"""The notification service's collections: what it knows of recipients, and every notification."""

from ordermesh.store import Collection

# A copy of each user's email, name and preferences, kept from the user service's events.
RECIPIENTS = Collection("recipients")
# One per (kind, subject, channel): e.g. order_approved of order o-1 by email.
NOTIFICATIONS = Collection(
    "notifications", indexed=("user_id", "status", "next_attempt_at", "create_time")
)

COLLECTIONS = (RECIPIENTS, NOTIFICATIONS)
