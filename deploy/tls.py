"""The gateway's certificate for compose.yaml when the operator gives none: a local CA's.

    made = local_certificate(ROOT / ".build" / "tls")
    made.certificate, made.key     # what GATEWAY_TLS_CERT, GATEWAY_TLS_KEY default to
    made.ca                        # what clients trust: curl --cacert .build/tls/ca.crt ...

Made with `deploy.ca.LocalCA`, in the directory `make up` keeps its own in (tools/up.py): one
CA to trust for both. Made once, and again (with a new CA, to be trusted again) a day before
the certificate expires; a running gateway reads it at start (restart it after a new one).

The key is readable by every user (mode 644) in a directory only its owner can open (mode
700): compose mounts a file secret as the host's file, owner and mode included, and the
gateway container's user (the official Envoy image's 101, the tests' image's 10001) is not its
owner; no other local user can reach the file through the directory.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from deploy.ca import LocalCA

__all__ = ["RENEW_BEFORE", "LocalCertificate", "local_certificate"]

# A certificate this close to its end is made again (tools/up.py renews its own the same way).
RENEW_BEFORE = datetime.timedelta(days=1)


@dataclass(frozen=True)
class LocalCertificate:
    """The gateway's certificate and key, and the CA that issued them (PEM files)."""

    certificate: Path
    key: Path
    ca: Path
    # Made by this call (else: the one already there, still valid).
    made: bool


def _valid(certificate: Path) -> bool:
    expires = x509.load_pem_x509_certificate(certificate.read_bytes()).not_valid_after_utc
    return expires - datetime.datetime.now(datetime.UTC) > RENEW_BEFORE


def local_certificate(directory: Path) -> LocalCertificate:
    """The gateway's certificate in `directory` (gateway.crt, gateway.key, ca.crt; its names
    `gateway`, localhost and 127.0.0.1), made if missing or about to expire."""
    certificate, key, ca = (directory / n for n in ("gateway.crt", "gateway.key", "ca.crt"))
    made = not (certificate.exists() and key.exists() and ca.exists() and _valid(certificate))
    if made:
        authority = LocalCA(directory)
        issued = authority.issue("gateway")
        certificate, key, ca = issued.certificate, issued.key, authority.ca_file
    directory.chmod(0o700)
    key.chmod(0o644)
    return LocalCertificate(certificate=certificate, key=key, ca=ca, made=made)
