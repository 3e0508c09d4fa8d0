"""Auth service: the gateway's ext_authz check of access tokens and route policy."""
