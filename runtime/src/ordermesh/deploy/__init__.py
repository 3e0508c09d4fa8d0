"""A project's deployments, rendered from its catalogue: what the runtime's generators write.

- `project`: what a project tells them (`Project`: its catalogue, image, descriptor set, schema
  step; its own pieces: one-shot `Step`s, a GraphQL `Federation`);
- `environment`: each process's variables, decided once for every target (`Target`);
- `compose`: compose.yaml and its overrides (`python -m ordermesh.deploy.compose`);
- `manifests`: the Kubernetes manifests (`python -m ordermesh.deploy.manifests`);
- `prometheus`: Prometheus's configuration (`python -m ordermesh.deploy.prometheus`);
- `databases`: PostgreSQL's databases and roles, a database per service that keeps state;
- `facts`: images, ports and grace periods, named once for every target.
"""

from __future__ import annotations

from ordermesh.deploy.project import Federation, Project, SecretKey, Step, load

__all__ = ["Federation", "Project", "SecretKey", "Step", "load"]
