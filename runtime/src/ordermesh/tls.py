"""Mutual TLS between services: one CA, a certificate per service, both ends verified.

    tls = MutualTls.of(settings)          # None: GRPC_TLS_* unset, plaintext as before
    server.add_secure_port(address, tls.server_credentials())
    channel = tls_channel(address, service="inventory", tls=tls)

Guarantees, when GRPC_TLS_CERT, GRPC_TLS_KEY and GRPC_TLS_CA are set (`ordermesh.config` refuses
a partial set):
- the gRPC server takes only TLS connections whose client presents a certificate signed by the
  CA: a plaintext client, a client without a certificate and one with another CA's certificate
  fail the handshake (the caller sees UNAVAILABLE), before any RPC or token check runs;
- every client the runtime makes (`ordermesh.upstream`'s channels, `ordermesh.probe`) presents this
  instance's certificate and accepts a server only if the CA signed its certificate and the
  certificate names the service called (a DNS subject alternative name equal to the catalogue
  name: "inventory", "user", ...).

The name checked is the service's, not the address dialled (`grpc.ssl_target_name_override`):
the registry gives addresses (127.0.0.1 for every service under `make up`, a pod's IP in
Kubernetes), which say neither which service answers nor anything a certificate issued ahead of
the pod could carry. Checking the name proves that the inventory service answers a call meant
for it, not merely some holder of a certificate from the CA; the same name works in compose and
Kubernetes, where it is also the service's DNS name.

Known limits: certificates are read once at start-up (a renewed certificate takes effect at the
next restart); a server admits every certificate of the CA, whichever service it names (no
per-caller authorisation at the transport: the RPCs' access levels and tokens still apply).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio

from ordermesh.config import ServiceSettings

__all__ = ["MutualTls", "target_name_options", "tls_channel"]


@dataclass(frozen=True)
class MutualTls:
    """This instance's certificate and key, and the CA that signs every service's (PEM)."""

    certificate: bytes
    key: bytes
    ca: bytes

    @classmethod
    def of(cls, settings: ServiceSettings) -> MutualTls | None:
        """The files GRPC_TLS_CERT, GRPC_TLS_KEY and GRPC_TLS_CA name, read now; None if unset."""
        if not settings.grpc_tls_cert:
            return None
        return cls.from_files(
            certificate=settings.grpc_tls_cert, key=settings.grpc_tls_key, ca=settings.grpc_tls_ca
        )

    @classmethod
    def from_files(cls, *, certificate: str | Path, key: str | Path, ca: str | Path) -> MutualTls:
        return cls(Path(certificate).read_bytes(), Path(key).read_bytes(), Path(ca).read_bytes())

    def server_credentials(self) -> grpc.ServerCredentials:
        """A server that requires a client certificate signed by the CA."""
        return grpc.ssl_server_credentials(
            [(self.key, self.certificate)], root_certificates=self.ca, require_client_auth=True
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """A client that presents this certificate and trusts only servers the CA signed."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.certificate
        )


def target_name_options(service: str) -> list[tuple[str, str]]:
    """The channel options that make a TLS client check that the server's certificate names
    `service`, whatever address it dials (see the module doc)."""
    return [("grpc.ssl_target_name_override", service)]


def tls_channel(
    address: str,
    *,
    service: str,
    tls: MutualTls | None,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> grpc.aio.Channel:
    """A channel to an instance of `service` at `address`: mutual TLS if `tls`, else plaintext."""
    if tls is None:
        return grpc.aio.insecure_channel(address, interceptors=interceptors)
    return grpc.aio.secure_channel(
        address,
        tls.channel_credentials(),
        options=target_name_options(service),
        interceptors=interceptors,
    )
