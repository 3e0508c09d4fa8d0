"""The inventory service's settings, from the environment (see ordermesh.config)."""

from ordermesh.runtime import AuthenticatedSettings


class InventorySettings(AuthenticatedSettings):
    service_name: str = "inventory"
