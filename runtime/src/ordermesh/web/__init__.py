"""Web pages a service serves at the gateway beside its /metrics (the operator console, the
storefront), signed in through the gateway like any client, with the user's tokens kept on the
server (runtime/src/ordermesh/__init__.py maps its modules)."""

__all__: list[str] = []
