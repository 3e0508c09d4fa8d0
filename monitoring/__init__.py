"""Monitoring of the running system: Prometheus's targets from the registry (`targets`), its
configuration (`prometheus`), the rules an operator acts on (`rules.yml`) and a Grafana
dashboard (`grafana/`)."""
