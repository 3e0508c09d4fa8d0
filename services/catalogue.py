"""The example shop's service catalogue: every service of the system, named once
(ordermesh.catalogue says what an entry holds and what follows from it).

`make up`, the test system (`harness.system`), the gateway (`ordermesh.gateway.envoy`) and its auth
policy (`ordermesh.gateway.auth`), and each service's variables in every deployment
(`ordermesh.deploy.environment`: the harness, compose.yaml, the Kubernetes manifests) all read it.
Adding a service touches its package, its contract and one entry here.
"""

from __future__ import annotations

from ordermesh.catalogue import SAGA_API, Catalogue, Service
from ordermesh.gateway.services import GATEWAY_SERVICES

from services.console.config import ConsoleSettings
from services.inventory.config import InventorySettings
from services.issuer import ISSUER
from services.notification.config import NotificationSettings
from services.order.config import OrderSettings
from services.storefront.config import StorefrontSettings
from services.user.config import UserSettings

__all__ = ["CATALOGUE"]

CATALOGUE = Catalogue(
    (
        Service("user", UserSettings, serves=("user.v1.UserService",), graph=True),
        Service(
            "inventory", InventorySettings, serves=("inventory.v1.InventoryService",), graph=True
        ),
        Service(
            "order",
            OrderSettings,
            serves=("order.v1.OrderService", "order.v2.OrderService", SAGA_API),
            calls=("inventory",),
            graph=True,
        ),
        Service(
            "notification", NotificationSettings, serves=("notification.v1.NotificationService",)
        ),
        # The operator console: web pages at the gateway, reaching the system through it.
        Service("console", ConsoleSettings, web="/console"),
        # The customers' shop: web pages at the gateway (its root leads there), reaching the system
        # through it with the customer's token, as any client of the public API.
        Service("storefront", StorefrontSettings, web="/shop", home=True),
        # The gateway's own: the auth service and the rate-limit service, the runtime's.
        *GATEWAY_SERVICES,
    ),
    issuer=ISSUER,
)
