"""End-to-end tests: the whole system through the Envoy gateway, with real service processes.

Every component is real (services, RabbitMQ, Redis, Envoy, the SMTP sink); nothing is faked.
"""
