"""The shared runtime every service is built on: one module per concept.

config         frozen settings read once from the environment, failing fast with the variable's name
correlation    the correlation and causation ids of the work in progress, in contextvars
errors         the domain error hierarchy that adapters map to gRPC status codes (pure, no I/O)
vocabulary     enum values on the wire and the names domain code uses, both ways
health         readiness: probes of a service's dependencies, and whether all of them answer
__main__       python -m ordermesh new-service NAME: the runtime's commands
probe          python -m ordermesh.probe: a container's health check, asking its instance's health
logging        structlog JSON lines carrying service, instance and correlation id
logfiles       the JSON log lines of a run's processes, read from their files (make logs, console)
telemetry      OpenTelemetry traces from the standard OTEL_* variables; the runtime writes the spans
metrics        a process's Prometheus metrics, served at /metrics on the address it registers
garbage        the garbage collector: startup objects frozen out of its passes, each pass timed
grpc           serve(): the gRPC server every service runs (health, reflection, access, errors)
failures       how a failed call is answered: domain errors to status codes in one table, the rest
               UNAVAILABLE, ABORTED or INTERNAL (the gRPC edge and the GraphQL subgraphs alike)
graphql        a service's GraphQL subgraph (Apollo Federation v2) beside its gRPC API
bounds         the bounds of every request field, from the contracts, checked at the gRPC edge
lifecycle      where an API or an event stands in its life (deprecation, sunset), from its contract
tls            mutual TLS between services: one CA, a certificate per service, both ends verified
tokens         access tokens verified against the issuer's published keys (JWKS)
policy         the edge policy (the keys that verify tokens, the ended sessions), signed, as the
               auth service decides it and every gateway and token verifier reads it
identity       the access level of each RPC from its contract, the verified caller, and the
               caller the gateway forwards (signed)
registry       instances registered in Redis with leases; watchers of the live ones
registration   a serving instance's entry in the registry: the address others reach it at
watch          follow(): wait for a notice or the interval, work again, survive failures and outages
upstream       calls to another service's instances: deadlines, safe retries, a circuit breaker
events         messages on the wire: routes from the contracts, the envelope, decoding
topology       exchanges, queues, bindings, retry and dead-letter queues, derived from the contracts
broker         the process's RabbitMQ connection and its confirmed, mandatory publisher
store          the storage port (unit of work, outbox, inbox) every adapter implements
store.sql      the SQL adapters' shared part: the schema; documents', outbox, inbox, lease SQL
store.sqlite   the SQLite adapter: one file per service, WAL, one writer at a time
store.postgres the PostgreSQL adapter: asyncpg and its pool of connections
store.mongo    the MongoDB adapter: PyMongo's async client, multi-document transactions
lease          one holder at a time of a named lease among the instances sharing a store
outbox         the relay that publishes committed outbox messages, in order per key
consumer       consumers with explicit outcomes: processed once, retried, or dead-lettered
settlement     a consumer's deliveries settled: acked, retried, dead-lettered, rejected, given back
faults         whose fault a failure is: the infrastructure's (wait for it) or the message's own
scaffold       a new service of a project, working and tested: contract, package, tests, entries
switches       fault switches turned on and off at run time from a flagd flag file, off by default
flag_file      python -m ordermesh.switches: the switches' command line, writing the flag file
operations     an operator's view of a service's messages (parked, dead letters, history) and the
               actions on them, audited; who acts (Operator)
dead_letter    a dead letter as an operator sees it, read off its queue without losing it, replayed
message_history what a service did with a message: its history entries, from each of its records
decoding       a message's body as JSON from its contract, for an operator to read
operator_api   the gRPC servicer of the operator API (ops.v1.OperatorService) over `operations`
deadletters    python -m ordermesh.deadletters: the operator's actions from the command line
ledger         counts of messages per type and stage, also as Prometheus metrics
saga           multi-service transactions as steps with compensations, timeouts and history: the
               `Saga` its owner runs and its operator acts through
saga_definition a saga as data: its steps, each action beside its compensation (pure)
saga_engine    a saga's transitions: replies, timeouts, compensations in reverse, parking
saga_record    a saga's stored record: its document, history (audit trail), measures and upkeep
saga_operator  an operator's view of sagas (SagaView) and their actions on a parked one
saga_operations the gRPC servicer of the sagas' operator API (ops.v1.SagaService)
catalogue      a system's services named once (Catalogue, Service): what each serves, calls, needs
roles          settings giving a service a role the deployments read (notifier, policy signer, ...)
runtime        a service's store, broker, relay, consumers and readiness, opened in order
defaults       run_service(): a service's defaults in one call (settings, logs, traces, runtime,
               serving)
contracts      the runtime's own contracts (common.v1's options, ops.v1's operator APIs), generated,
               and where any contract's generated module is
pages          page sizes and page tokens of list RPCs
web            web pages at the gateway (the console, the storefront): sessions, security, assets
web.security   the rules against cross-site use and injection: headers, cookies, CSRF, origins
web.sessions   sign-in sessions in Redis, sealed, holding the user's tokens and renewing them
web.assets     static files served at their content's hash, named with their integrity
web.site       a site: its middlewares (the headers, a session by route name) and its static files
timestamps     stored times as google.protobuf.Timestamp
asyncapi       python -m ordermesh.asyncapi: a project's event backbone as an AsyncAPI 3 document
prototext      a contract's message back to proto3 text, with its comments (for asyncapi)
targets        python -m ordermesh.targets: Prometheus's targets from the registry (file_sd)
gateway        what a gateway makes of a project's contracts and catalogue, as generators
gateway.contracts what the contracts say about each routed RPC, and which services serve it
gateway.openapi python -m ordermesh.gateway.openapi: the REST API's OpenAPI 3 document
gateway.envoy  python -m ordermesh.gateway.envoy: Envoy's configuration, one module per concept
gateway.agent  python -m ordermesh.gateway.agent: beside each Envoy, the files it reloads
gateway.discovery the registry's instances as Envoy's endpoint files (EDS)
gateway.policy the edge policy as Envoy's filter configuration files (ECDS)
gateway.ratelimits the rate-limit descriptors' vocabulary, the gateway's and the limiter's
gateway.auth   python -m ordermesh.gateway.auth: the gateway's auth service (the edge policy's
               signer, the per-call check)
gateway.ratelimit python -m ordermesh.gateway.ratelimit: the gateway's global limits, in Redis
gateway.services the gateway's two services as catalogue entries (GATEWAY_SERVICES)
deploy         a project's deployments from its catalogue and its Project, as generators
deploy.project what a project tells them: image, descriptor set, schema step, Steps, Federation
deploy.environment each process's variables, decided once for every target (Target)
deploy.compose python -m ordermesh.deploy.compose: compose.yaml and its overrides
deploy.manifests python -m ordermesh.deploy.manifests: the Kubernetes manifests (kustomize)
deploy.prometheus python -m ordermesh.deploy.prometheus: Prometheus's configuration
deploy.databases PostgreSQL's databases and roles, one database per service that keeps state
deploy.facts   images, ports and grace periods, named once for every target
"""

__all__ = ["__version__"]

# The distribution's version (runtime/pyproject.toml reads it): Semantic Versioning, CHANGELOG.md.
__version__ = "0.1.0"
