"""Inventory service: the product catalogue and its stock, reserved and released by the saga."""
