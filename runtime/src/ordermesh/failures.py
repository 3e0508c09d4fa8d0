"""How a failed call is answered: one table from domain errors to gRPC status codes, and one
answer for every other failure, given alike by the gRPC edge (ordermesh.grpc) and the GraphQL
subgraphs (ordermesh.graphql).

- a domain error (ordermesh.errors): the status of its nearest class in `STATUS_OF_ERROR`, with
  its own message (messages name the bad value; they are written for the caller);
- a store or broker that cannot do the work now (ordermesh.faults): UNAVAILABLE; a transaction
  that lost every retry to concurrent ones (a VersionConflict): ABORTED; both say to try again
  and name the correlation id;
- anything else: INTERNAL, without its details (logged with its traceback).

Each failure is logged once, here.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from ordermesh import errors
from ordermesh.correlation import correlation_id
from ordermesh.faults import is_infrastructure
from ordermesh.logging import get_logger
from ordermesh.store import VersionConflict

__all__ = ["STATUS_OF_ERROR", "code_of", "error_of", "failure", "status_of"]

log = get_logger(__name__)

STATUS_OF_ERROR: Mapping[type[errors.DomainError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Conflict: grpc.StatusCode.ABORTED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DomainError: grpc.StatusCode.UNKNOWN,
}


def error_of(code: grpc.StatusCode) -> type[errors.DomainError]:
    """The domain error a caller raises for a call answered with `code`: STATUS_OF_ERROR read
    backwards (OUT_OF_RANGE is an InvalidArgument); Unavailable for a code no domain error
    answers with (UNKNOWN, INTERNAL, DEADLINE_EXCEEDED...): the call did not get its answer."""
    if code is grpc.StatusCode.OUT_OF_RANGE:
        return errors.InvalidArgument
    for error, status in STATUS_OF_ERROR.items():
        if status is code and error is not errors.DomainError:
            return error
    return errors.Unavailable


def status_of(error: errors.DomainError) -> grpc.StatusCode:
    """The status code of a domain error: that of its nearest class in STATUS_OF_ERROR."""
    for cls in type(error).__mro__:
        if cls in STATUS_OF_ERROR:
            return STATUS_OF_ERROR[cls]
    raise TypeError(f"{type(error).__name__} is not a DomainError")


def code_of(exc: Exception) -> grpc.StatusCode:
    """The status a failed call is answered with (see `failure`)."""
    if isinstance(exc, errors.DomainError):
        return status_of(exc)
    if isinstance(exc, VersionConflict):
        return grpc.StatusCode.ABORTED
    if is_infrastructure(exc):
        return grpc.StatusCode.UNAVAILABLE
    return grpc.StatusCode.INTERNAL


def failure(exc: Exception, *, what: str) -> tuple[grpc.StatusCode, str]:
    """The status and message a failed call (`what`: e.g. its method) is answered with, logged
    once: a domain error with its status and message; a store or broker that cannot do the
    work now UNAVAILABLE, a transaction that lost every retry to concurrent ones ABORTED (both
    worth trying again); anything else INTERNAL, without its details. The gRPC edge and the
    GraphQL subgraphs (ordermesh.graphql) answer alike."""
    code = code_of(exc)
    if isinstance(exc, errors.DomainError):
        log.info("call failed", method=what, code=code.name, error=str(exc))
        return code, str(exc)
    if code is not grpc.StatusCode.INTERNAL:
        log.warning("call failed", method=what, code=code.name, error=repr(exc)[:300])
        cause = (
            "concurrent changes to the same data won every retry"
            if code is grpc.StatusCode.ABORTED
            else f"a dependency cannot answer now ({type(exc).__name__})"
        )
        return code, f"{cause}: try again (correlation id {correlation_id.get()})"
    log.error("call crashed", method=what, exc_info=exc)
    return code, f"internal error, correlation id {correlation_id.get()}"
