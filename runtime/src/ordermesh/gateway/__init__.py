"""What a gateway makes of a project's contracts and catalogue, as generators a project runs:

contracts      what the contracts say about each RPC the gateway routes (access, REST verb,
               idempotency, the auth check, lifecycle headers), and which service serves it
openapi        python -m ordermesh.gateway.openapi: the REST API's OpenAPI 3 document
envoy          python -m ordermesh.gateway.envoy: Envoy's configuration (gateway/envoy.yaml in the
               example), one module per Envoy concept
agent          python -m ordermesh.gateway.agent, beside each Envoy: its endpoint files from the
               registry (discovery), its policy files from the auth service's edge policy
               (policy), its fault filters from the flag file
ratelimits     the rate-limit descriptors' vocabulary, shared by the gateway and the service that
               counts the global limits
auth           python -m ordermesh.gateway.auth: the gateway's auth service, the edge policy's
               signer (the token issuer's keys, the revoked sessions) and the per-call check
               of the RPCs whose contract asks for one (Envoy's ext_authz)
ratelimit      python -m ordermesh.gateway.ratelimit: the gateway's global limits (Envoy's
               rate-limit protocol), counted in Redis
services       the two as catalogue entries, `GATEWAY_SERVICES`

A project's catalogue holds the gateway's two services (`GATEWAY_SERVICES`, with
`gateway=True`): Envoy's configuration calls them by those names.
"""

__all__: list[str] = []
