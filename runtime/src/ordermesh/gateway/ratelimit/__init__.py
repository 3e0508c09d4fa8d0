"""Rate-limit service: the gateway's global limits (Envoy's rate-limit protocol), kept in Redis."""

__all__: list[str] = []
