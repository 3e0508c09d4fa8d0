"""TLS at the gateway (issue 25): HTTPS and gRPC over TLS on one port, from a certificate and key
given as files (here from a local CA the test makes, as `make up` does), HSTS on every answer;
a plaintext client, or one that does not trust the CA, gets nothing."""

from __future__ import annotations

import ssl

import aiohttp
import grpc
import pytest
from inventory.v1 import inventory_service_pb2 as inventory_pb
from inventory.v1 import inventory_service_pb2_grpc as inventory_grpc

from deploy.ca import LocalCA
from harness.gateway import LocalGateway


@pytest.fixture(scope="module")
def secured(system, tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls-gateway")
    ca = LocalCA(directory / "ca")
    running = LocalGateway(
        directory,
        redis_url=system._env["REDIS_URL"],
        secrets=system.gateway_secrets,
        tls=ca.issue("gateway"),
    )
    try:
        running.start()
        running.wait_for_healthy()
        yield running, ca
    finally:
        running.stop()


async def test_rest_and_grpc_are_served_over_tls_with_hsts(secured, shop):
    gateway, ca = secured
    product = await shop.product(name="TLS mug")
    trusted = ssl.create_default_context(cafile=str(ca.ca_file))
    assert gateway.url.startswith("https://")
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusted)) as http,
        http.get(f"{gateway.url}/v1/products/{product.product_id}") as response,
    ):
        assert response.status == 200
        assert (await response.json())["product"]["name"] == "TLS mug"
        assert response.headers["strict-transport-security"] == "max-age=31536000"

    credentials = grpc.ssl_channel_credentials(ca.ca_file.read_bytes())
    async with grpc.aio.secure_channel(gateway.address, credentials) as channel:
        answer = await inventory_grpc.InventoryServiceStub(channel).GetProduct(
            inventory_pb.GetProductRequest(product_id=product.product_id), timeout=5
        )
    assert answer.product.name == "TLS mug"


async def test_plaintext_and_untrusting_clients_get_nothing(secured):
    gateway, _ = secured
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientError):  # plaintext HTTP to the TLS port
            async with http.get(f"http://{gateway.address}/v1/products") as response:
                await response.read()
        with pytest.raises(aiohttp.ClientConnectorCertificateError):  # the system's CA only
            async with http.get(f"{gateway.url}/v1/products") as response:
                await response.read()
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as plaintext:
            await inventory_grpc.InventoryServiceStub(channel).ListProducts(
                inventory_pb.ListProductsRequest(page_size=1), timeout=5
            )
    assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE
