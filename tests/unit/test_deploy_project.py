"""What a project tells the deployment generators is checked when it is made: a deployment that
would not run (a catalogue its processes cannot find, a store without its schema step, a step
of no service, subgraphs without a federation gateway) is refused, naming what to fix."""

from __future__ import annotations

from dataclasses import replace

import pytest
from ordermesh import config
from ordermesh.catalogue import Catalogue
from ordermesh.deploy import Federation, Step
from ordermesh.tokens import KeyIssuer
from user.v1 import events_pb2, user_service_pb2

from deploy.project import PROJECT
from services.catalogue import CATALOGUE


def test_the_examples_project_is_what_its_catalogue_says():
    assert PROJECT.catalogue is CATALOGUE
    # The gateway's auth service keeps the edge policy (a database of its own); the rate-limit
    # service keeps nothing but counters in Redis.
    assert {"user", "inventory", "order", "notification", "auth"} == set(PROJECT.stores())
    assert [step.name for step in PROJECT.steps_of(CATALOGUE.entry("user"))] == ["create-admin"]


def test_a_catalogue_its_processes_would_not_find_is_refused():
    other = Catalogue(tuple(CATALOGUE), issuer=CATALOGUE.issuer)

    with pytest.raises(ValueError, match="does not name the project's catalogue"):
        replace(PROJECT, catalogue=other)


def test_services_that_keep_state_need_the_schema_step():
    with pytest.raises(ValueError, match="keep state: name the project's schema_module"):
        replace(PROJECT, schema_module="")


def test_a_step_of_a_service_the_catalogue_lacks_is_refused():
    with pytest.raises(KeyError):
        replace(PROJECT, steps=(Step(name="seed", service="shipping", command="true"),))


@pytest.mark.parametrize("name", ["order", "gateway", "schema", "user-schema", "Seed", "seed_1"])
def test_a_step_is_named_apart_from_every_other_container_as_a_dns_label(name):
    with pytest.raises(ValueError, match=f"step {name!r}: name it apart"):
        replace(PROJECT, steps=(Step(name=name, service="user", command="true"),))
    with pytest.raises(ValueError, match="step 'seed': name it apart"):
        replace(PROJECT, steps=(Step("seed", "user", "true"), Step("seed", "order", "true")))


def test_subgraphs_need_a_federation_gateway_started_with_one_of_its_files():
    with pytest.raises(ValueError, match="name the project's federation"):
        replace(PROJECT, federation=None)
    with pytest.raises(ValueError, match=r"config 'gateway\.ts' is not among its files"):
        Federation("graphql", "gateway/graphql", config="gateway.ts")


def test_a_catalogue_that_cannot_be_imported_is_refused_naming_where_to_say():
    with pytest.raises(ValueError, match=r"catalogue_at='parcel\.catalogue:CATALOGUE' does not"):
        replace(PROJECT, catalogue_at="parcel.catalogue:CATALOGUE")


def test_an_event_that_cannot_revoke_a_session_is_refused_as_a_revocation():
    with pytest.raises(TypeError, match=r"user\.v1\.UserRegistered cannot revoke a session"):
        KeyIssuer("user", CATALOGUE.issuer.fetch, revocations=(events_pb2.UserRegistered,))
    with pytest.raises(TypeError, match="cannot revoke a session"):
        KeyIssuer("user", CATALOGUE.issuer.fetch, revocations=(user_service_pb2.LogoutRequest,))
    assert KeyIssuer("user", CATALOGUE.issuer.fetch, revocations=(events_pb2.SessionRevoked,))


def test_the_issuers_address_is_its_own_variable(monkeypatch):
    monkeypatch.delenv("PARCEL_SERVICE_ADDR", raising=False)
    with pytest.raises(config.ConfigError, match="PARCEL_SERVICE_ADDR is not set"):
        config.address_of("parcel")

    monkeypatch.setenv("PARCEL_SERVICE_ADDR", "127.0.0.1:50051")
    assert config.address_of("parcel") == "127.0.0.1:50051"


def test_the_deployment_reads_a_project_by_its_place():
    from ordermesh.deploy import load

    assert load("deploy.project:PROJECT") is PROJECT
    with pytest.raises(ValueError, match="is not a Project"):
        load("services.catalogue:CATALOGUE")
