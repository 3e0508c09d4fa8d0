"""What Envoy answers itself, as the services' errors are answered: JSON with the gRPC code and
a message (on `/graphql`, a GraphQL response), which access filter or limit refused; the access
log of failed requests; and the refusal of header names gRPC metadata cannot carry."""

from __future__ import annotations

import json
from typing import Any

import grpc

from ordermesh.gateway.envoy.access import CREDENTIALS
from ordermesh.gateway.envoy.ecds import INTERNAL_HOP, REVOKED
from ordermesh.gateway.envoy.limits import FLOOR, LIMIT_HEADER, PER_CLIENT
from ordermesh.gateway.envoy.names import GRAPHQL_PATH, type_url

__all__ = [
    "GRPC_CODE_OF_STATUS",
    "Reply",
    "access_log",
    "graphql_error_body",
    "header_names",
    "local_replies",
    "replies",
]

# What Envoy answers itself (the transcoder's rejections, no healthy upstream, ...) as the same
# JSON as the services' errors: {"code": <gRPC code>, "message": ...}, by HTTP status.
GRPC_CODE_OF_STATUS = {
    400: 3, 401: 16, 403: 7, 404: 5, 408: 4, 413: 8, 429: 8, 431: 8, 502: 14, 503: 14, 504: 4
}  # fmt: skip


def _status_is(status: int, op: str = "EQ") -> dict[str, Any]:
    value = {"default_value": status, "runtime_key": f"gateway.status.{op.lower()}.{status}"}
    return {"status_code_filter": {"comparison": {"op": op, "value": value}}}


def _limited_by(limit: str) -> dict[str, Any]:
    """A 429 of one of Envoy's own limits (LIMIT_HEADER)."""
    return _cel(f"response.headers[{json.dumps(LIMIT_HEADER)}] == {json.dumps(limit)}")


def _details_start(prefix: str) -> dict[str, Any]:
    """A local reply whose response code details start with `prefix`."""
    return _cel(f"response.code_details.startsWith({json.dumps(prefix)})")


def _cel(expression: str) -> dict[str, Any]:
    """A local reply for which a CEL expression holds."""
    return {
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": type_url("access_loggers.filters.cel.v3.ExpressionFilter"),
                "expression": expression,
            },
        }
    }


LIMITED = "too many requests: try again after the seconds in Retry-After"
# The message of the 429 of each of Envoy's own limits, by the LIMIT_HEADER it sets.
LIMIT_MESSAGES = {
    PER_CLIENT: "too many reads from this client: try again after the seconds in Retry-After",
    FLOOR: "the gateway is at its capacity for everyone: try again after the seconds in "
    "Retry-After",
}


Reply = tuple[dict[str, Any], int, str, dict[str, Any]]


def replies() -> list[Reply]:
    """Envoy's own answers, each (which reply, its gRPC code, its message, what else it sets),
    the first that matches."""
    # The auth check could not be made (no instance answered in time, or one could not verify
    # tokens): Envoy's own reply has no text.
    unchecked = "cannot check credentials now: the auth service is unavailable; try again"
    auth_failed = {
        "and_filter": {"filters": [_status_is(503), {"response_flag_filter": {"flags": ["UAEX"]}}]}
    }

    def challenge(value: str) -> list[dict[str, Any]]:
        header = {"key": "www-authenticate", "value": value}
        return [{"header": header, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]

    # Every refused token is a 401 (jwt_authn answers 403 for a wrong audience) with the
    # challenge of RFC 6750: no error code without a token, invalid_token otherwise.
    invalid_token = challenge('Bearer error="invalid_token"')
    unauthenticated = {"status_code": 401, "headers_to_add": invalid_token}
    return [
        (auth_failed, 14, unchecked, {}),
        # Which access filter refused, from Envoy's response code details.
        (
            _details_start("jwt_authn_access_denied{Jwt_is_missing}"),
            16,
            "no access token: send 'authorization: Bearer <token>'",
            {"status_code": 401, "headers_to_add": challenge("Bearer")},
        ),
        (
            _details_start("jwt_authn_access_denied"),
            16,
            "the access token was refused: %LOCAL_REPLY_BODY%",
            unauthenticated,
        ),
        (
            _details_start(f"rbac_access_denied_matched_policy[{CREDENTIALS}]"),
            16,
            "send one access token, as 'authorization: Bearer <token>', and never in a URL",
            unauthenticated,
        ),
        (
            _details_start(f"rbac_access_denied_matched_policy[{INTERNAL_HOP}]"),
            16,
            "this port takes calls from the gateway only",
            {"status_code": 401},
        ),
        (
            _details_start(f"rbac_access_denied_matched_policy[{REVOKED}]"),
            16,
            "this session was ended: log in again",
            unauthenticated,
        ),
        (_details_start("rbac_access_denied"), 7, "this RPC is for administrators only", {}),
        *((_limited_by(limit), 8, message, {}) for limit, message in LIMIT_MESSAGES.items()),
        *(
            (_status_is(status), code, LIMITED if status == 429 else "%LOCAL_REPLY_BODY%", {})
            for status, code in GRPC_CODE_OF_STATUS.items()
        ),
    ]


def local_replies(graphql: bool) -> dict[str, Any]:
    """Envoy's own answers as the services' errors: JSON with the gRPC code and a message; on
    `/graphql` (with `graphql`), a GraphQL response whose error has them in `extensions`."""
    answers = replies()
    mappers = [
        {"filter": match, **extra, "body_format_override": _error_body(code, message)}
        for match, code, message, extra in answers
    ]
    if graphql:
        on_graphql = {
            "header_filter": {
                "header": {
                    "name": ":path",
                    "string_match": {"safe_regex": {"regex": f"^{GRAPHQL_PATH}(\\?.*)?$"}},
                }
            }
        }
        mappers[:0] = [
            {
                "filter": {"and_filter": {"filters": [on_graphql, match]}},
                **extra,
                "body_format_override": graphql_error_body(code, message),
            }
            for match, code, message, extra in answers
        ]
    return {"mappers": mappers}


def _error_body(code: int, message: str) -> dict[str, Any]:
    return {"json_format": {"code": code, "message": message, "details": []}}


def graphql_error_body(code: int, message: str) -> dict[str, Any]:
    """A GraphQL response with one error, its gRPC status in `extensions` as the subgraphs'
    errors have it (ordermesh.graphql)."""
    name = next(c.name for c in grpc.StatusCode if c.value[0] == code)
    error = {"message": message, "extensions": {"code": name, "grpcStatus": code}}
    return {"json_format": {"errors": [error]}}


def access_log() -> dict[str, Any]:
    """The requests that failed (status 400 or more, or a flag set by Envoy: no healthy
    upstream, a reset, an auth check that failed, ...), a JSON line each on Envoy's stdout.
    Successful ones are not logged: at thousands per second the log would cost more than the
    gateway's own work (bench/gateway.py)."""
    return {
        "name": "envoy.access_loggers.stdout",
        "filter": {"or_filter": {"filters": [_status_is(400, "GE"), {"response_flag_filter": {}}]}},
        "typed_config": {
            "@type": type_url("access_loggers.stream.v3.StdoutAccessLog"),
            "log_format": {
                "json_format": {
                    "time": "%START_TIME%",
                    "request_id": "%REQ(X-REQUEST-ID)%",
                    "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
                    # As the client sent it, and the RPC it was routed as (the same when it
                    # was not transcoded); the transcoder makes every method POST.
                    # Without the query: nothing of a URL's query is logged (a token sent there
                    # by mistake, refused, would be).
                    "path": "%REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)%",
                    "rpc": "%REQ_WITHOUT_QUERY(:PATH)%",
                    "status": "%RESPONSE_CODE%",
                    "grpc_status": "%GRPC_STATUS%",
                    "flags": "%RESPONSE_FLAGS%",
                    "details": "%RESPONSE_CODE_DETAILS%",
                    "upstream": "%UPSTREAM_HOST%",
                    "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
                    "duration_ms": "%DURATION%",
                },
                "formatters": [
                    {
                        "name": "envoy.formatter.req_without_query",
                        "typed_config": {
                            "@type": type_url("formatter.req_without_query.v3.ReqWithoutQuery")
                        },
                    }
                ],
            },
        },
    }


# gRPC metadata keys are lowercase letters, digits, "-", "_" and "."; HTTP allows names with
# more (` ' ! # $ % & * + ^ | ~), which a gRPC server refuses with INTERNAL: refused here, 400
# (names with "_" are refused before, by headers_with_underscores_action).
HEADER_NAMES = """
function envoy_on_request(handle)
  for name, _ in pairs(handle:headers()) do
    if name:sub(1, 1) ~= ":" and not name:match("^[0-9a-z_.%-]+$") then
      handle:respond({[":status"] = "400"}, "a header name has characters gRPC metadata " ..
        "cannot carry: use letters, digits, '-' and '.'")
      return
    end
  end
end
"""


def header_names() -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.lua",
        "typed_config": {
            "@type": type_url("filters.http.lua.v3.Lua"),
            "default_source_code": {"inline_string": HEADER_NAMES.strip()},
        },
    }
