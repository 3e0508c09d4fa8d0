"""`make demo`: a whole scenario through the gateway's REST API, each step printed.

Register, log in, choose SMS as well as email, browse, order (approved by the saga), read the
notifications, order more than is in stock (rejected, nothing kept), cancel the first order
(stock and credit come back). Against the system `make up` runs (its gateway address is in
.build/run/env), or GATEWAY_URL (and GATEWAY_CA, the CA that issued its certificate).
"""

from __future__ import annotations

import json
import ssl
import sys
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

from harness.running import setting


class Client:
    def __init__(self, base: str, ca_file: str | None = None):
        """`ca_file`: the CA `make up` made for its gateway's certificate (GATEWAY_CA)."""
        self.base = base
        self.token = ""
        self._tls = ssl.create_default_context(cafile=ca_file) if ca_file else None

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(
            self.base + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"content-type": "application/json"}
            | ({"authorization": f"Bearer {self.token}"} if self.token else {}),
        )
        try:
            with urllib.request.urlopen(request, timeout=10, context=self._tls) as response:
                result: dict[str, Any] = json.load(response)
                return result
        except urllib.error.HTTPError as exc:
            raise SystemExit(f"{method} {path}: {exc.code} {exc.read().decode()}") from None


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def place(client: Client, product_id: str, quantity: int) -> dict[str, Any]:
    items = [{"productId": product_id, "quantity": quantity}]
    body = {"idempotencyKey": str(uuid.uuid4()), "items": items}
    order: dict[str, Any] = client.call("POST", "/v1/orders", body)["order"]
    return order


def settled(client: Client, order_id: str) -> dict[str, Any]:
    for _ in range(100):
        order: dict[str, Any] = client.call("GET", f"/v1/orders/{order_id}")["order"]
        if order["status"] != "ORDER_STATUS_PENDING":
            return order
        time.sleep(0.1)
    raise SystemExit(f"order {order_id} still pending after 10 s")


def main() -> int:
    base = setting("GATEWAY_URL")
    if base is None:
        print("no gateway: start the system with `make up`, or set GATEWAY_URL", file=sys.stderr)
        return 2
    client = Client(base.rstrip("/"), setting("GATEWAY_CA"))

    step("Browse the catalogue (public)")
    products = client.call("GET", "/v1/products?pageSize=10")["products"]
    for p in products:
        price = f"{int(p['price']['amountMinor']) / 100:.2f} {p['price']['currencyCode']}"
        print(f"  {p['name']:<20} {price:>12}  stock {p['availableStock']}")
    product = max(products, key=lambda p: int(p["availableStock"]))

    step("Register and log in")
    email = f"demo-{uuid.uuid4().hex[:8]}@example.com"
    password = "a demo password"
    profile = client.call(
        "POST", "/v1/users", {"email": email, "password": password, "displayName": "Demo"}
    )["profile"]
    credit = int(profile["creditAvailable"]["amountMinor"]) / 100
    print(f"  registered {email}, credit {credit:.2f}")
    tokens = client.call("POST", "/v1/auth/login", {"email": email, "password": password})
    client.token = tokens["tokens"]["accessToken"]
    print("  logged in: an access token for the next calls")

    step("Ask for SMS as well as email when an order is approved")
    client.call(
        "PATCH",
        "/v1/users/me/preferences",
        {
            "phoneNumber": "+4915112345678",
            "subscriptions": [
                {
                    "kind": "NOTIFICATION_KIND_ORDER_APPROVED",
                    "channels": ["CHANNEL_EMAIL", "CHANNEL_SMS"],
                }
            ],
        },
    )
    print("  preferences saved")

    step(f"Order 2 x {product['name']}")
    order = place(client, product["productId"], 2)
    print(f"  order {order['orderId']}: {order['status']}")
    order = settled(client, order["orderId"])
    total = int(order["total"]["amountMinor"]) / 100
    print(f"  the saga decided: {order['status']}, total {total:.2f}")
    for entry in client.call("GET", f"/v1/orders/{order['orderId']}/history")["entries"]:
        what = entry.get("messageType") or entry.get("kind", "")
        print(f"    {entry['time'][11:23]}  {entry.get('sagaState', ''):<20} {what}")

    step("Notifications (email and SMS, as chosen)")
    for _ in range(100):
        notes = client.call("GET", "/v1/notifications")["notifications"]
        about = [n for n in notes if n.get("subjectId") == order["orderId"]]
        if len(about) >= 2 and all(n["status"] != "NOTIFICATION_STATUS_PENDING" for n in about):
            break
        time.sleep(0.1)
    for note in notes:
        print(f"  {note['channel']:<14} {note['status']:<26} {note.get('subject', '')}")

    step("Order more than is in stock")
    left = int(
        client.call("GET", f"/v1/products/{product['productId']}")["product"]["availableStock"]
    )
    rejected = place(client, product["productId"], left + 1)
    rejected = settled(client, rejected["orderId"])
    print(f"  {rejected['status']}: {rejected.get('statusReason', '')}")

    step("Cancel the first order")
    cancelled = client.call(
        "POST", f"/v1/orders/{order['orderId']}:cancel", {"reason": "changed my mind"}
    )["order"]
    print(f"  {cancelled['status']}")
    time.sleep(1.0)
    stock = client.call("GET", f"/v1/products/{product['productId']}")["product"]["availableStock"]
    credit = client.call("GET", "/v1/users/me")["profile"]["creditAvailable"]["amountMinor"]
    print(f"  stock of {product['name']} back to {stock}; credit back to {int(credit) / 100:.2f}")
    print("\ndone.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
