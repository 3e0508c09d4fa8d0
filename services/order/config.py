"""The order service's settings, from the environment (see ordermesh.config)."""

from ordermesh.runtime import AuthenticatedSettings
from pydantic import Field


class OrderSettings(AuthenticatedSettings):
    service_name: str = "order"
    # host:port of an inventory instance, which prices the products of new orders; used when
    # the registry (REDIS_URL) lists none.
    inventory_service_addr: str
    # How long a saga step waits for its participant's reply before the saga gives up on it.
    saga_step_timeout_s: float = Field(default=30.0, gt=0)
    # How long a product's name and price, as read from inventory, price new orders.
    product_cache_s: float = Field(default=5.0, ge=0)
    # Deadline of each call to another service.
    call_timeout_s: float = Field(default=2.0, gt=0)
    # How many times a compensation is sent without a reply before its saga is parked as
    # needing an operator; how long a compensated saga's record (its history) is kept.
    saga_compensation_sends: int = Field(default=10, ge=1)
    saga_retention_s: float = Field(default=30 * 86400.0, gt=0)
