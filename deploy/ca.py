"""A local certificate authority: a CA and a certificate per service, as files.

    ca = LocalCA(directory)
    env = ca.settings("inventory")         # GRPC_TLS_CERT, GRPC_TLS_KEY, GRPC_TLS_CA
    channel = ca.channel(address, service="inventory", client="tests")

Made with `cryptography` (ECDSA P-256: the cheapest handshake grpc offers). Each certificate
names its service as a DNS subject alternative name (what `ordermesh.tls` clients check), plus
`localhost` and 127.0.0.1 (what tools such as grpcurl dial here), and may serve as both a server
and a client certificate (mutual TLS: every service is both). Keys are written readable by
their owner only. For the test systems, `make up` and the gateway certificate `make compose-env`
makes when the operator gives none (deploy/tls.py); deployments get theirs from their own CA.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from ordermesh.tls import MutualTls, target_name_options

from deploy.private import private_file

__all__ = ["Issued", "LocalCA"]

# Generous for a test run, short enough that a leaked test key is soon worthless.
VALID_FOR = datetime.timedelta(days=30)


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, as PEM files."""

    certificate: Path
    key: Path


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """Signing (a CA also signs certificates and revocation lists), nothing else."""
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=ca,
        crl_sign=ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class LocalCA:
    def __init__(self, directory: Path, *, name: str = "ordermesh local CA"):
        """Makes the CA (its key stays in memory and in `directory`, owner-only)."""
        self.directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self._subject = _name(f"{name} {secrets.token_hex(4)}")
        self._certificate = (
            x509.CertificateBuilder()
            .subject_name(self._subject)
            .issuer_name(self._subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + VALID_FOR)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                _key_usage(ca=True),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        self.ca_file = directory / "ca.crt"
        self.ca_file.write_bytes(self._certificate.public_bytes(serialization.Encoding.PEM))
        private_file(directory / "ca.key", _pem_key(self._key))
        self._issued: dict[str, Issued] = {}

    def issue(self, name: str, *, hosts: tuple[str, ...] = ()) -> Issued:
        """The certificate of `name` (a service, or a test's client), made once: its names are
        `name`, localhost, 127.0.0.1 and `hosts` (host names or IP addresses)."""
        if name in self._issued:
            return self._issued[name]
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        names: list[x509.GeneralName] = []
        for host in (name, "localhost", "127.0.0.1", *hosts):
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self._subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + VALID_FOR)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                _key_usage(ca=False),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        issued = Issued(
            certificate=self.directory / f"{name}.crt", key=self.directory / f"{name}.key"
        )
        issued.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        private_file(issued.key, _pem_key(key))
        self._issued[name] = issued
        return issued

    def settings(self, name: str) -> dict[str, str]:
        """What a service process is given to run with mutual TLS as `name` (ordermesh.tls)."""
        issued = self.issue(name)
        return {
            "GRPC_TLS_CERT": str(issued.certificate),
            "GRPC_TLS_KEY": str(issued.key),
            "GRPC_TLS_CA": str(self.ca_file),
        }

    def mutual_tls(self, name: str) -> MutualTls:
        """`name`'s certificate and key, and this CA, as a client or a server uses them."""
        issued = self.issue(name)
        return MutualTls.from_files(certificate=issued.certificate, key=issued.key, ca=self.ca_file)

    def channel(self, address: str, *, service: str, client: str = "harness") -> grpc.Channel:
        """A blocking channel to `service` at `address`, as the client `client`."""
        return grpc.secure_channel(
            address,
            self.mutual_tls(client).channel_credentials(),
            options=target_name_options(service),
        )

    def aio_channel(
        self, address: str, *, service: str, client: str = "harness"
    ) -> grpc.aio.Channel:
        """An asyncio channel to `service` at `address`, as the client `client`."""
        return grpc.aio.secure_channel(
            address,
            self.mutual_tls(client).channel_credentials(),
            options=target_name_options(service),
        )
