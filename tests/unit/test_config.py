"""Settings are read once from the environment, frozen, and fail fast naming the variable."""

import os

import pydantic
import pytest
from ordermesh.config import ConfigError, ServiceSettings, load


class QueueSettings(ServiceSettings):
    rabbitmq_url: str
    prefetch: int = 32


def test_settings_are_read_from_variables_named_after_their_fields(monkeypatch):
    monkeypatch.setenv("SERVICE_NAME", "order")
    monkeypatch.setenv("RABBITMQ_URL", "amqp://127.0.0.1:5672/")
    monkeypatch.setenv("PREFETCH", "8")

    settings = load(QueueSettings)

    assert settings.service_name == "order"
    assert settings.rabbitmq_url == "amqp://127.0.0.1:5672/"
    assert settings.prefetch == 8
    assert settings.grpc_port == 0


def test_a_missing_required_variable_is_named(monkeypatch):
    monkeypatch.setenv("SERVICE_NAME", "order")
    monkeypatch.delenv("RABBITMQ_URL", raising=False)

    with pytest.raises(ConfigError, match="RABBITMQ_URL is required"):
        load(QueueSettings)


def test_an_invalid_value_is_named_with_the_value(monkeypatch):
    monkeypatch.setenv("SERVICE_NAME", "order")
    monkeypatch.setenv("RABBITMQ_URL", "amqp://127.0.0.1/")
    monkeypatch.setenv("PREFETCH", "many")
    monkeypatch.setenv("GRPC_PORT", "70000")

    with pytest.raises(ConfigError) as failure:
        load(QueueSettings)

    assert "PREFETCH='many' is invalid" in str(failure.value)
    assert "GRPC_PORT='70000' is invalid" in str(failure.value)


def test_settings_cannot_change_after_start(monkeypatch):
    monkeypatch.setenv("SERVICE_NAME", "order")
    monkeypatch.setenv("RABBITMQ_URL", "amqp://127.0.0.1/")
    settings = load(QueueSettings)

    with pytest.raises(pydantic.ValidationError):
        settings.prefetch = 1  # type: ignore[misc]


def test_each_process_gets_its_own_instance_id(monkeypatch):
    monkeypatch.setenv("SERVICE_NAME", "order")
    monkeypatch.setenv("RABBITMQ_URL", "amqp://127.0.0.1/")

    first, second = load(QueueSettings).instance_id, load(QueueSettings).instance_id
    assert f"-{os.getpid()}-" in first
    # Replicas on one host network share its host name, and may share a pid (1 in a container).
    assert first != second
