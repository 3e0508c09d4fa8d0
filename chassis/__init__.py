"""The shared runtime every service is built on: one module per concept.

config       frozen settings read once from the environment, failing fast with the variable's name
correlation  the correlation and causation ids of the work in progress, in contextvars
errors       the domain error hierarchy that adapters map to gRPC status codes (pure, no I/O)
health       readiness: probes of a service's dependencies, and whether all of them answer
probe        python -m chassis.probe: a container's health check, asking the instance's gRPC health
logging      structlog JSON lines carrying service, instance and correlation id
grpc         serve(): the gRPC server every service runs (health, reflection, access, errors)
tokens       access tokens verified against the issuer's published keys (JWKS)
identity     the access level of each RPC from its contract, the verified caller, and the
             caller the gateway forwards (signed)
registry     instances registered in Redis with leases; watchers of the live ones
upstream     calls to another service's instances: deadlines, safe retries, a circuit breaker
events       messages on the wire: routes from the contracts, the envelope, decoding
topology     exchanges, queues, bindings, retry and dead-letter queues, derived from the contracts
broker       the process's RabbitMQ connection and its confirmed, mandatory publisher
store        the storage port (unit of work, outbox, inbox); SQLite, PostgreSQL and MongoDB adapters
lease        one holder at a time of a named lease among the instances sharing a store
outbox       the relay that publishes committed outbox messages, in order per key
consumer     consumers with explicit outcomes: processed once, retried, or dead-lettered
faults       whose fault a failure is: the infrastructure's (wait for it) or the message's own
deadletters  list dead-lettered and parked messages with their reasons; replay them after a fix
ledger       counts of messages per type and stage, also as Prometheus metrics
saga         multi-service transactions as steps with compensations, timeouts and history
runtime      a service's store, broker, relay, consumers and readiness, opened in order
pages        page sizes and page tokens of list RPCs
timestamps   stored times as google.protobuf.Timestamp
"""
