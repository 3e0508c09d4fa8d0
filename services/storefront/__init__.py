"""Storefront: the customers' web pages (browse the catalogue, register, sign in and out, order,
watch an order's saga decide it, the notifications sent, cancel), served at /shop behind the
gateway (which sends its root, `/`, there), calling only the system's public REST API through
that gateway, with the signed-in customer's token."""
