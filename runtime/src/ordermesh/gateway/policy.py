"""The edge policy (ordermesh.policy) as the files a gateway's Envoy watches.

`PolicyFiles` renders a verified policy into two ECDS files: jwt_authn's providers with the key
set inline, and an RBAC filter denying the revoked sessions through a hash lookup (see
`ordermesh.gateway.envoy`), binary protobuf, each replaced by an atomic rename so Envoy applies it
without a restart. Each gateway's agent (`ordermesh.gateway.agent`) writes them from the policy its
`ordermesh.policy.PolicyFollower` verified.

What holds when parts fail:
- the auth service or Redis down: the files keep the last policy verified; Envoy goes on
  enforcing it;
- an agent (re)started: existing files stay until a newer policy is verified; a gateway that
  never held one gets a placeholder key no token verifies with (fail closed: 401), never an
  empty set (Envoy refuses one), and is not ready;
- a revocation whose tokens have all expired is left out of the file written next.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from envoy.config.core.v3 import extension_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.message import Message
from jwt.algorithms import OKPAlgorithm

from ordermesh.logging import get_logger
from ordermesh.policy import EdgePolicy
from ordermesh.tokens import CLOCK_SKEW_S

__all__ = ["PolicyFiles", "write_filter_config"]

log = get_logger(__name__)


def placeholder_jwks() -> dict[str, Any]:
    """A key set no token verifies with: a fresh public key whose private key is discarded."""
    jwk = json.loads(OKPAlgorithm.to_jwk(Ed25519PrivateKey.generate().public_key()))
    jwk.update(kid="no-key-set-yet", use="sig", alg="EdDSA")
    return {"keys": [jwk]}


Render = Callable[[Mapping[str, Any]], Message]


class PolicyFiles:
    """The ECDS files of one gateway (discovery responses in binary protobuf), each replaced
    atomically, written only when what it says changed.

    `render_jwt(jwks)` and `render_revocations(revoked)` give each filter's config
    (`ordermesh.gateway.envoy.jwt_authn_config` and `revocations_config`)."""

    def __init__(
        self,
        paths: Mapping[str, Path],
        *,
        render_jwt: Render,
        render_revocations: Render,
    ):
        self._paths = dict(paths)
        self._render = {"jwt": render_jwt, "revocations": render_revocations}
        # What each file was last written from.
        self._written: dict[str, dict[str, Any]] = {}
        for path in self._paths.values():
            path.parent.mkdir(parents=True, exist_ok=True)

    def prepare(self) -> None:
        """Before Envoy starts: each missing file written from an empty policy."""
        if not self._paths["jwt"].exists():
            self._write("jwt", placeholder_jwks())
        if not self._paths["revocations"].exists():
            self._write("revocations", {})

    def write(self, policy: EdgePolicy) -> None:
        if policy.jwks is not None:
            self._write("jwt", policy.jwks)
        now = time.time()
        revoked = {s: t for s, t in policy.revoked.items() if t + CLOCK_SKEW_S > now}
        self._write("revocations", revoked)

    def _write(self, which: str, source: Mapping[str, Any]) -> None:
        if self._written.get(which) == source:
            return
        write_filter_config(self._paths[which], self._render[which](source))
        self._written[which] = dict(source)
        entries = len(source.get("keys", ())) if which == "jwt" else len(source)
        log.info("edge policy written", filter=which, entries=entries)


def write_filter_config(path: Path, config: Message) -> None:
    """`config` as the ECDS file at `path` (a discovery response in binary protobuf, the
    resource named after the file), replaced atomically: Envoy applies it without a restart."""
    resource = extension_pb2.TypedExtensionConfig(name=path.stem)
    resource.typed_config.Pack(config)
    response = discovery_pb2.DiscoveryResponse(version_info=str(time.time_ns()))
    response.resources.add().Pack(resource)
    staged = path.with_name(f".{path.name}.tmp")
    staged.write_bytes(response.SerializeToString())
    os.replace(staged, path)
