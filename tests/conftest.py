"""Test policy for the whole suite.

Fakes only for what lies outside our control; never for RabbitMQ, Redis, the database or Envoy:
those run as real private processes started by the fixtures of `chassis.testing.fixtures`, on
free ports, and are ended by the fixture that started them.
"""

pytest_plugins = ["chassis.testing.fixtures"]
