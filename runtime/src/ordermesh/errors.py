"""The domain error hierarchy: what went wrong, in business terms, with no transport attached.

Domain code raises these (or its own subclasses); adapters translate them once, in one table
(`ordermesh.failures.STATUS_OF_ERROR`). Messages name the offending value, because they reach the
client as they are. Any other exception is a bug and reaches the client as INTERNAL, without
its message.

    DomainError
    ├── InvalidArgument       the request is malformed or a value is out of range
    ├── NotFound              the thing does not exist, or the caller may not know it exists
    ├── AlreadyExists         a unique thing exists already
    ├── FailedPrecondition    the request is valid but the current state forbids it
    ├── Conflict              a concurrent change won; the client may retry
    ├── Unauthenticated       the caller's identity is missing or cannot be verified
    ├── PermissionDenied      the caller is known but not allowed to do this
    ├── ResourceExhausted     a quota or rate limit is reached
    └── Unavailable           a dependency cannot answer now; the client may retry later
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "Conflict",
    "DomainError",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
]


class DomainError(Exception):
    """A failure the caller can understand and act on; the message is shown to the caller."""


class InvalidArgument(DomainError):
    pass


class NotFound(DomainError):
    pass


class AlreadyExists(DomainError):
    pass


class FailedPrecondition(DomainError):
    pass


class Conflict(DomainError):
    pass


class Unauthenticated(DomainError):
    pass


class PermissionDenied(DomainError):
    pass


class ResourceExhausted(DomainError):
    pass


class Unavailable(DomainError):
    pass
