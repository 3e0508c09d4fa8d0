"""Each domain error reaches the client with one status code, decided in one table."""

import grpc
import pytest
from ordermesh import errors
from ordermesh.failures import STATUS_OF_ERROR, error_of, status_of


class InsufficientStock(errors.FailedPrecondition):
    pass


def test_every_domain_error_of_the_chassis_has_a_status_code():
    declared = {getattr(errors, name) for name in errors.__all__}

    assert declared == set(STATUS_OF_ERROR)


def test_a_service_error_takes_the_code_of_its_nearest_chassis_class():
    error = InsufficientStock("3 requested, 1 left")

    assert status_of(error) is grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.NotFound, grpc.StatusCode.NOT_FOUND),
        (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.Conflict, grpc.StatusCode.ABORTED),
        (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    ],
)
def test_codes_follow_grpc_conventions(error, code):
    assert status_of(error("x")) is code


@pytest.mark.parametrize("error", [e for e in STATUS_OF_ERROR if e is not errors.DomainError])
def test_a_caller_raises_the_error_the_service_raised(error):
    assert error_of(status_of(error("x"))) is error


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (grpc.StatusCode.OUT_OF_RANGE, errors.InvalidArgument),
        (grpc.StatusCode.UNKNOWN, errors.Unavailable),
        (grpc.StatusCode.INTERNAL, errors.Unavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, errors.Unavailable),
    ],
)
def test_a_code_no_service_error_answers_with_is_an_unanswered_call(code, error):
    assert error_of(code) is error
