"""The example shop as its deployments see it (ordermesh.deploy.project): its catalogue, its
image, its schema step, the admin account its user service needs before it serves, and its
GraphQL federation gateway (gateway/graphql). `make gen` hands it to the runtime's generators:

    python -m ordermesh.deploy.compose --project deploy.project:PROJECT
    python -m ordermesh.deploy.manifests --project deploy.project:PROJECT
"""

from __future__ import annotations

from importlib.metadata import version

from ordermesh.deploy import Federation, Project, SecretKey, Step

from gateway import DESCRIPTOR_SET
from services.catalogue import CATALOGUE

__all__ = ["CREATE_ADMIN", "PROJECT"]

# The admin's account exists before the token issuer serves (idempotent: --if-missing); its
# password reaches the step through its standard input only, never its command line.
CREATE_ADMIN = Step(
    name="create-admin",
    service=CATALOGUE.issuer.service,
    command=(
        "printenv ADMIN_PASSWORD | exec python -m services.user create-admin "
        '--email "$ADMIN_EMAIL" --password-stdin --if-missing'
    ),
    settings={"ADMIN_EMAIL": "admin@ordermesh.example"},
    secrets={"ADMIN_PASSWORD": SecretKey("ordermesh-admin", "password")},
)

PROJECT = Project(
    name="ordermesh",
    catalogue=CATALOGUE,
    descriptor_set=DESCRIPTOR_SET,
    # Built by deploy/images.py (localhost/ordermesh:latest, localhost/ordermesh-graphql:latest).
    image="ordermesh",
    version=version("ordermesh-shop"),
    schema_module="services.schema",
    steps=(CREATE_ADMIN,),
    federation=Federation(image="ordermesh-graphql", directory="gateway/graphql"),
)
