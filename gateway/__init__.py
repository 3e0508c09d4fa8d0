"""The gateway: Envoy's configuration generated from the contracts, and its endpoint discovery."""
