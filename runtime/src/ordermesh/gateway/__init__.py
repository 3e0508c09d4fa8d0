"""What a gateway makes of a project's contracts and catalogue, as generators a project runs:

contracts      what the contracts say about each RPC the gateway routes (access, REST verb,
               idempotency, the auth check, lifecycle headers), and which service serves it
openapi        python -m ordermesh.gateway.openapi: the REST API's OpenAPI 3 document
"""

__all__: list[str] = []
