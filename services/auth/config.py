"""The auth service's settings, from the environment (see chassis.config)."""

from pydantic import Field

from chassis.runtime import AuthenticatedSettings


class AuthSettings(AuthenticatedSettings):
    service_name: str = "auth"
    # Required here: where the edge policy is published to every gateway (chassis.policy).
    redis_url: str = Field(min_length=1)
    # The private key the edge policy is signed with; gateways and services hold its public
    # half (EDGE_POLICY_VERIFY_KEY). Raw Ed25519, base64url (chassis.policy.new_policy_keys).
    edge_policy_signing_key: str = Field(min_length=1)
    # How often the token issuer's key set is fetched and republished; the issuer publishes
    # each new key `signing_key_lead_s` before it signs with it, which must be longer.
    keys_refresh_s: float = Field(default=10.0, gt=0)
