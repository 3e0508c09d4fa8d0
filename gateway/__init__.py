"""The gateway: Envoy's configuration generated from the contracts, and the agent that feeds it."""
