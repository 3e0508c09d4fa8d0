"""The shared runtime every service is built on: one module per concept.

config       frozen settings read once from the environment, failing fast with the variable's name
correlation  the correlation id of the work in progress, in a contextvar
errors       the domain error hierarchy that adapters map to gRPC status codes (pure, no I/O)
health       readiness: probes of a service's dependencies, and whether all of them answer
logging      structlog JSON lines carrying service, instance and correlation id
grpc         serve(): the gRPC server every service runs (health, reflection, error mapping)
testing      private RabbitMQ, Redis and Envoy processes for tests, and their pytest fixtures
"""
