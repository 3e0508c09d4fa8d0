"""Deployment: the container image, compose.yaml and its overrides, from the service catalogue."""
