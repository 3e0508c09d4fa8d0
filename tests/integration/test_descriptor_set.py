"""Envoy's gRPC-JSON transcoder loads the committed descriptor set and reaches a chassis server.

This is the path the gateway will take: REST in, the `google.api.http` annotations of
`gen/descriptors.pb`, gRPC to a server built on `ordermesh.grpc`, JSON out, errors included.
"""

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from ordermesh.grpc import GrpcServer

from harness import free_port
from services import catalogue
from tests.integration import grpc_app

DESCRIPTORS = Path(__file__).resolve().parents[2] / "gen" / "descriptors.pb"
API = "type.googleapis.com/envoy.extensions"
SERVICES = [api for service in catalogue.CATALOGUE.domain_services() for api in service.serves]


def transcoding_config(listen_port: int, upstream_port: int) -> dict:
    transcoder = {
        "@type": f"{API}.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
        "proto_descriptor": str(DESCRIPTORS),
        "services": SERVICES,
        "convert_grpc_status": True,
        "print_options": {"always_print_primitive_fields": True},
    }
    connection_manager = {
        "@type": f"{API}.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "gateway",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "route": {"cluster": "inventory", "timeout": "5s"},
                        }
                    ],
                }
            ]
        },
        "http_filters": [
            {"name": "envoy.filters.http.grpc_json_transcoder", "typed_config": transcoder},
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": f"{API}.filters.http.router.v3.Router"},
            },
        ],
    }
    endpoint = {
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": upstream_port}}
    }
    cluster = {
        "name": "inventory",
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": "inventory",
            "endpoints": [{"lb_endpoints": [{"endpoint": endpoint}]}],
        },
        # gRPC upstreams must speak HTTP/2, or REST gets 502 and gRPC UNAVAILABLE.
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": f"{API}.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
    }
    listener = {
        "name": "gateway",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": connection_manager,
                    }
                ]
            }
        ],
    }
    return {"static_resources": {"listeners": [listener], "clusters": [cluster]}}


@pytest.fixture
async def gateway(envoy_factory):
    server = GrpcServer([grpc_app.service()])
    upstream_port = await server.start()
    port = free_port()
    envoy_factory(transcoding_config(port, upstream_port))
    yield f"http://127.0.0.1:{port}"
    await server.stop()


def _get(url: str, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    """GET in a thread: the gRPC server under test shares this test's event loop."""
    return await asyncio.to_thread(_get, url, headers or {})


async def test_a_rest_call_is_transcoded_to_grpc_and_back(gateway):
    status, body = await get(f"{gateway}/v1/products", {"x-correlation-id": "c-rest"})

    assert status == 200
    assert body == {"products": [], "nextPageToken": "c-rest"}


async def test_query_parameters_fill_the_request_message(gateway):
    status, body = await get(f"{gateway}/v1/products?page_token=missing")

    assert status == 404
    assert body == {"code": 5, "message": "page token 'missing' matches no page", "details": []}


async def test_the_gateway_request_id_becomes_the_correlation_id(gateway):
    status, body = await get(f"{gateway}/v1/products", {"x-request-id": "r-from-edge"})

    assert status == 200
    assert body["nextPageToken"] == "r-from-edge"
