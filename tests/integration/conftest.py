"""Integration tests: real RabbitMQ, Redis, Envoy and gRPC servers, never fakes of them.

Shared infrastructure comes from the session fixtures (`rabbitmq`, `redis_server`); a test that
stops, kills or cuts a process starts its own with a factory fixture.
"""
