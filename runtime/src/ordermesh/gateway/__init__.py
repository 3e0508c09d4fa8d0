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

A project's gateway has two services of its own, named `auth` (the per-call policy check,
ext_authz) and `ratelimit` (the global limits), entries of its catalogue with `gateway=True`.
"""

__all__: list[str] = []
