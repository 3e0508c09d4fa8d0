"""When Envoy tries a call again, and on which host: the retry policies and budget of the
gateway's routes and of its calls to its own services (the auth check, the global limits),
each with the measurement that set it."""

from __future__ import annotations

__all__ = ["GRPC_RETRIES", "HOST_REPICKS", "NEVER_ARRIVED", "PREVIOUS_HOSTS", "RETRY_BUDGET"]

# The auth and rate-limit checks are idempotent: one that failed on an instance that died (and
# that health checks have not caught yet) is tried on another.
PREVIOUS_HOSTS = {
    "name": "envoy.retry_host_predicates.previous_hosts",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.retry.host."
        "previous_hosts.v3.PreviousHostsPredicate"
    },
}
# How often a retry may pick again when it picked a host it already tried. Envoy's default is
# once, after which the host picked is used: with two instances, one just killed, a retry could
# land on the dead one again, and both retries of a call did in a failover test run (20 of 6,000
# answered 503 "remote connection failure").
HOST_REPICKS = 5
# How many retries may be under way at once, per cluster. Envoy's default is 3: when an instance
# dies, the calls in flight on it and those sent to it before it is ejected all need a retry at
# that moment, and those over 3 failed at once (seen in the failover test: a failed auth check
# in 0 ms; a kill test with 300 checks/s lost 31 of 1,500 to refused retries, none with this).
RETRY_BUDGET = {
    "thresholds": [
        {"retry_budget": {"budget_percent": {"value": 50.0}, "min_retry_concurrency": 20}}
    ]
}
GRPC_RETRIES = {
    "retry_on": "connect-failure,refused-stream,reset,unavailable",
    "num_retries": 3,
    "retry_back_off": {"base_interval": "0.01s", "max_interval": "0.05s"},
    "retry_host_predicate": [PREVIOUS_HOSTS],
    "host_selection_retry_max_attempts": HOST_REPICKS,
}

# What a call may always be retried on: it never reached an instance.
NEVER_ARRIVED = ("connect-failure", "refused-stream", "reset-before-request")
