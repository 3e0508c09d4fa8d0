"""The inventory service's collections: products, reservations per order, applied requests."""

from ordermesh.store import Collection

PRODUCTS = Collection("products", unique=("sku",))
# One per order id: RESERVED, REFUSED, or RELEASED (also a release that came first).
RESERVATIONS = Collection("reservations")
# Client request ids of CreateProduct and AdjustStock already applied, with their result.
REQUESTS = Collection("requests")

COLLECTIONS = (PRODUCTS, RESERVATIONS, REQUESTS)
