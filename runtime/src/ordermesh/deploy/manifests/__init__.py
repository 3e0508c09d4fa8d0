"""Kubernetes manifests (kustomize), rendered from a project's catalogue.

    python -m ordermesh.deploy.manifests --project MODULE:ATTRIBUTE [--root DIR]
        writes deploy/kubernetes/{base,overlays/dev,overlays/prod} under DIR (the project's root)

One module per concern: `pods` (labels, security, probes, the application's container),
`secrets` (the Secrets read), `environment` (a container's variables:
ordermesh.deploy.environment's, spelt for Kubernetes), `services`, `gateway`, `infrastructure`
(Redis, RabbitMQ, dev's PostgreSQL), `policies` (NetworkPolicies), `overlays` (what prod
changes), and `__main__` (the files). Images, ports and grace periods are
ordermesh.deploy.facts's; the project's own pieces (its images, its schema step, its one-shot
`Step`s as init containers of their service's pods, its `Federation`) its Project's.

- base: the namespace (Pod Security "restricted"), every service of the catalogue as a
  Deployment with a headless Service, the gateway (Envoy, its bootstrap and the contracts in a
  ConfigMap, serving HTTPS and gRPC over TLS with the certificate of the Secret
  `ordermesh-gateway-tls`; its agent as a sidecar whose readiness, a verified edge policy and
  endpoints, is the pod's; the GraphQL federation gateway of the project's `Federation`),
  Redis (the registry), a RabbitMQ StatefulSet, and the
  NetworkPolicies: deny everything, then allow exactly what the catalogue says exists (who
  calls whom, who uses the broker, the registry and a store, the gateway's ingress, DNS,
  Prometheus scraping the metrics ports);
- overlays/dev: one replica of everything, a single RabbitMQ node and a PostgreSQL StatefulSet
  (a database per service with its owner and runtime roles, made or brought up to date by the
  Job `postgres-roles` from init.sql, ordermesh.deploy.databases);
- overlays/prod: every service and the gateway with 3 replicas spread across nodes, a
  PodDisruptionBudget and a HorizontalPodAutoscaler on CPU each, a 3-node RabbitMQ cluster
  (classic config peer discovery, quorum queues of 3 members), PostgreSQL outside the
  cluster (an external or operator-managed database: each service's STORE_URL in a Secret),
  and mutual TLS on every gRPC hop inside the cluster (ordermesh.tls): each service with the
  certificate of a Secret of its own, probed by `python -m ordermesh.probe` in its container
  (the kubelet's gRPC probes speak plaintext only), Envoy with a client certificate and its
  own bootstrap (overlays/prod/envoy.json, merged into base's ConfigMap); and no fault
  switch (FAULT_SWITCHES_FORBIDDEN on every service and the gateway's agent: given a flag
  file, they refuse to start). dev stays plaintext.

A store-backed service's pod first runs the schema step as its database's owner (the init
container `schema`, the project's `python -m <schema_module> <name>`, the owner's URL from the
Secret `ordermesh-store-owner`); the service then connects as its runtime role (`ordermesh-store`),
which can change no schema nor open another service's database.

Instances find each other as everywhere else: through the Redis registry, each pod registering
its own address (`ADVERTISED_HOST` = the pod IP); the gateway's agent turns the registry into
Envoy's endpoints. The headless Services give the fallback addresses (`<NAME>_SERVICE_ADDR`)
used while the registry does not answer. (docs/kubernetes.md says why.)

The console, a client of the gateway, reaches it at its Service (https://gateway:8080) and
verifies it with the CA of the ConfigMap `ordermesh-gateway-ca`; it reads the cluster's own
Prometheus (the Prometheus Operator's, in the namespace `monitoring`, which the policies let
scrape) and the Alertmanager rendered here (ordermesh.deploy.manifests.monitoring: one replica with
the project's alertmanager.yml), to which that Prometheus sends its alerts.

Secrets are referenced by name and key, never written here (docs/kubernetes.md lists them);
the edge policy's signing key is in a Secret of its own that only the auth service reads; the
internal hops' secret (INTERNAL_TOKEN) reaches Envoy, its agent, the federation gateway and the
services with a GraphQL subgraph only.
Requests and limits come from measured figures (docs/kubernetes.md). No Kubernetes cluster can
run on the runtime's own machines: these manifests are rendered and validated, not run.
"""

__all__: list[str] = []
