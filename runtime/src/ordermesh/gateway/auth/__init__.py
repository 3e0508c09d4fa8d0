"""Auth service: decides the edge policy every gateway enforces (the token issuer's keys, the
revoked sessions), and answers the per-call check of the RPCs whose contract asks for one."""

__all__: list[str] = []
