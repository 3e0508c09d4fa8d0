"""Mutual TLS is all three of GRPC_TLS_CERT, GRPC_TLS_KEY and GRPC_TLS_CA, or plaintext."""

import pytest
from ordermesh.config import ConfigError, ServiceSettings, load
from ordermesh.tls import MutualTls, target_name_options

TLS_VARIABLES = ("GRPC_TLS_CERT", "GRPC_TLS_KEY", "GRPC_TLS_CA")


@pytest.fixture(autouse=True)
def a_service(monkeypatch):
    monkeypatch.setenv("SERVICE_NAME", "order")
    for variable in TLS_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


def test_without_the_variables_a_service_speaks_plaintext_as_before():
    assert MutualTls.of(load(ServiceSettings)) is None


@pytest.mark.parametrize("given", [("GRPC_TLS_CERT",), ("GRPC_TLS_CERT", "GRPC_TLS_CA")])
def test_a_partial_set_is_refused_naming_what_is_missing(monkeypatch, given):
    for variable in given:
        monkeypatch.setenv(variable, "/etc/ordermesh/tls/file.pem")
    missing = [v for v in TLS_VARIABLES if v not in given]

    with pytest.raises(ConfigError) as refused:
        load(ServiceSettings)

    assert str(refused.value).startswith(" and ".join(missing) + " not set")


def test_a_file_that_does_not_exist_is_named_with_its_path(monkeypatch):
    monkeypatch.setenv("GRPC_TLS_CERT", __file__)
    monkeypatch.setenv("GRPC_TLS_KEY", __file__)
    monkeypatch.setenv("GRPC_TLS_CA", "/nonexistent/ca.crt")

    with pytest.raises(ConfigError, match=r"GRPC_TLS_CA='/nonexistent/ca.crt': no such file"):
        load(ServiceSettings)


def test_a_client_checks_the_name_of_the_service_it_calls_not_the_address():
    assert target_name_options("inventory") == [("grpc.ssl_target_name_override", "inventory")]
