"""The inventory service's settings, from the environment (see chassis.config)."""

from chassis.runtime import AuthenticatedSettings


class InventorySettings(AuthenticatedSettings):
    service_name: str = "inventory"
