"""A serving instance's entry in the registry, from its settings: the address others reach it
at (`advertised_host`) and the registration `ordermesh.grpc.serve` keeps alive."""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping

from prometheus_client import Counter

from ordermesh.config import WILDCARDS, ServiceSettings
from ordermesh.registry import Instance, Registration, Registry

__all__ = ["advertised_host", "registration_of"]


def advertised_host(settings: ServiceSettings) -> str:
    """The host others reach this instance at: ADVERTISED_HOST, else GRPC_HOST, else (bound to
    every interface, as in a container) the address the machine's host name resolves to."""
    if settings.advertised_host:
        return settings.advertised_host
    if settings.grpc_host not in WILDCARDS:
        return settings.grpc_host
    return socket.gethostbyname(socket.gethostname())


def registration_of(
    settings: ServiceSettings,
    port: int,
    metrics_port: int,
    notes: Callable[[], Mapping[str, str]] | None,
    heartbeats: Counter | None,
) -> Registration:
    """This instance's entry in the registry at REDIS_URL, renewed every heartbeat."""
    return Registration(
        Registry(settings.redis_url),
        Instance(
            service=settings.service_name,
            instance_id=settings.instance_id,
            address=f"{advertised_host(settings)}:{port}",
            version=settings.service_version,
            metrics_port=metrics_port,
        ),
        ttl_s=settings.registry_ttl_s,
        interval_s=settings.heartbeat_interval_s,
        metadata=notes,
        heartbeats=heartbeats,
    )
