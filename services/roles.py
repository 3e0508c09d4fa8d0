"""Settings that give a service a role the deployments read, as `BackboneSettings` gives it the
broker and a store: a service whose settings class has one of these has that role, and the
catalogue says so once (`Service.notifies`, `Service.signs_policy`) for every target that
hands it its variables (deploy.environment).

- `NotifierSettings`: it sends through the notification providers (SMTP, SMS, push), whose
  addresses and credentials it is given;
- `PolicySignerSettings`: it signs the edge policy (chassis.policy) with the private key that
  no other process holds.
"""

from pydantic import Field

from chassis.config import Settings

__all__ = ["NotifierSettings", "PolicySignerSettings"]


class NotifierSettings(Settings):
    """The providers a notifying service sends through."""

    smtp_host: str
    smtp_port: int = Field(ge=1, le=65535)
    smtp_sender: str = "ordermesh <no-reply@ordermesh.invalid>"
    smtp_username: str = ""
    smtp_password: str = ""
    # HTTP provider APIs for SMS and push; a channel without a URL is not set up.
    sms_provider_url: str = ""
    sms_provider_token: str = ""
    push_provider_url: str = ""
    push_provider_token: str = ""


class PolicySignerSettings(Settings):
    """The edge policy's signer (the auth service)."""

    # The private key the edge policy is signed with; gateways and services hold its public
    # half (EDGE_POLICY_VERIFY_KEY). Raw Ed25519, base64url (chassis.policy.new_policy_keys).
    edge_policy_signing_key: str = Field(min_length=1)
