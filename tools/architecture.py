"""The system's pictures and its table of services, generated (never drawn by hand) from what
decides them:

    python -m tools.architecture      (run by `make gen`; `make lint` fails if they are stale)

- the services, what each is, owns and serves, and whom it calls: the service catalogue
  (services/catalogue.py), each service package's docstring and store collections, the RPCs
  the contracts route (ordermesh.gateway.contracts) and the gateway's rendered configuration
  (gateway/envoy.yaml: which of its filters call which of the gateway's own services);
- the exchanges and queues, who publishes and who consumes what, with the retry and
  dead-letter queues: the services' messaging (services/messaging.py), the routes of the
  contracts (`(common.v1.route)`) and the topology derived from them (ordermesh.topology);
- each saga's steps and compensations: its definition (services.messaging.sagas, e.g.
  `order_saga()`), read for its shape as the saga engine (ordermesh.saga_engine) runs it.

It rewrites only what lies between its markers in README.md and docs/architecture.md
(`<!-- generated: NAME ... -->` to `<!-- end generated: NAME -->`); the prose around them is
written by hand. The pictures are Mermaid flowcharts in Markdown, which code hosts draw: node
ids are letters, digits and underscores, every label is quoted with its quotes and angle
brackets written as Mermaid's entity codes, and every arrow has spaces around it (Mermaid
reads `--o` and `--x` as other arrows), so that no name from the contracts can break one.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from ordermesh.catalogue import Service
from ordermesh.events import Message, Route, route_of
from ordermesh.gateway.contracts import routable_rpcs
from ordermesh.saga import SagaDefinition, SagaStatus, Step
from ordermesh.topology import Subscription, unrouted_queue

from gateway import DESCRIPTOR_SET
from services import catalogue, messaging

__all__ = ["FILES", "Flowchart", "render", "sections"]

ROOT = Path(__file__).resolve().parent.parent
ENVOY_CONFIG = ROOT / "gateway" / "envoy.yaml"
# The listener of the gateway's clients, in the rendered configuration.
GATEWAY_LISTENER = "gateway"
COMMAND = "python -m tools.architecture"


def _begin(name: str) -> str:
    return f"<!-- generated: {name} ({COMMAND}; do not edit) -->"


def _end(name: str) -> str:
    return f"<!-- end generated: {name} -->"


# -- Mermaid ------------------------------------------------------------------------------

# Node shapes, by how Mermaid writes them around a quoted label.
BOX = "[{}]"
ROUND = "([{}])"
HEXAGON = "{{{{{}}}}}"
QUEUE = "[[{}]]"
_ENTITIES = {'"': "#quot;", "<": "#lt;", ">": "#gt;"}


def _label(*lines: str) -> str:
    """A quoted Mermaid label of one or more lines: what could end the quote or open an HTML
    tag is written as an entity code; lines are joined by <br/>."""
    escaped = ("".join(_ENTITIES.get(c, c) for c in line) for line in lines)
    return '"' + "<br/>".join(escaped) + '"'


@dataclass
class Flowchart:
    """A Mermaid flowchart built from names: ids are derived and checked here, labels quoted."""

    direction: str
    _nodes: dict[str, str] = field(default_factory=dict)
    _edges: list[str] = field(default_factory=list)

    def node(self, kind: str, name: str, *lines: str, shape: str = BOX) -> str:
        """Declares the node of `name` among nodes of `kind` (once; again with the same
        label is a no-op) and returns its id."""
        node_id = f"{kind}_{re.sub(r'[^A-Za-z0-9]', '_', name)}"
        declared = node_id + shape.format(_label(*(lines or (name,))))
        if self._nodes.setdefault(node_id, declared) != declared:
            raise ValueError(f"two nodes would be {node_id}: {self._nodes[node_id]}, {declared}")
        return node_id

    def edge(self, source: str, target: str, *lines: str, dotted: bool = False) -> None:
        arrow = "-.->" if dotted else "-->"
        label = f"|{_label(*lines)}|" if lines else ""
        for end in (source, target):
            if end not in self._nodes:
                raise ValueError(f"an edge to or from {end}, which is no node")
        edge = f"{source} {arrow}{label} {target}"
        if edge not in self._edges:
            self._edges.append(edge)

    def render(self) -> str:
        body = [f"    {line}" for line in (*self._nodes.values(), *self._edges)]
        return "\n".join(["```mermaid", f"flowchart {self.direction}", *body, "```"])


# -- what the pictures are drawn from -------------------------------------------------------


def _short(message: type[Message]) -> str:
    return message.DESCRIPTOR.name


def _full(message: type[Message]) -> str:
    return message.DESCRIPTOR.full_name


def _summary(service: Service) -> str:
    """What the service is, in the first sentence of its package's docstring, without the
    "Xyz service: " that opens it."""
    doc = importlib.import_module(service.module).__doc__ or ""
    first = " ".join(doc.split()).split(". ")[0].rstrip(".")
    return first.split(": ", 1)[-1]


def _collections(service: Service) -> list[str]:
    """The collections of its store (`services.<name>.store.COLLECTIONS`); none without one."""
    if importlib.util.find_spec(f"{service.module}.store") is None:
        return []
    store = importlib.import_module(f"{service.module}.store")
    return [collection.name for collection in store.COLLECTIONS]


def _gateway_filters() -> dict[str, list[str]]:
    """The gateway's own services, by cluster name, with the HTTP filters that call them (their
    last dotted part: "ext_authz"), from the rendered configuration."""
    config = yaml.safe_load(ENVOY_CONFIG.read_text())
    calling: dict[str, list[str]] = {}
    for listener in config["static_resources"]["listeners"]:
        if listener["name"] != GATEWAY_LISTENER:
            continue
        for chain in listener["filter_chains"]:
            for network_filter in chain["filters"]:
                for http_filter in network_filter["typed_config"].get("http_filters", []):
                    for cluster in _grpc_clusters(http_filter.get("typed_config", {})):
                        short = http_filter["name"].rsplit(".", 1)[-1]
                        calling.setdefault(cluster, []).append(short)
    return calling


def _grpc_clusters(config: Any) -> Iterator[str]:
    """The clusters a filter's configuration calls over gRPC (`envoy_grpc.cluster_name`)."""
    if isinstance(config, dict):
        for key, value in config.items():
            if key == "envoy_grpc":
                yield value["cluster_name"]
            else:
                yield from _grpc_clusters(value)
    elif isinstance(config, list):
        for item in config:
            yield from _grpc_clusters(item)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _routed_apis() -> dict[str, dict[str, tuple[int, int]]]:
    """By service name, each API the gateway routes: (RPCs routed, of which with REST)."""
    apis: dict[str, dict[str, tuple[int, int]]] = {}
    for rpc in routable_rpcs(DESCRIPTOR_SET.read_bytes(), catalogue.CATALOGUE):
        routed, rest = apis.setdefault(rpc.cluster, {}).get(rpc.service, (0, 0))
        apis[rpc.cluster][rpc.service] = (routed + 1, rest + bool(rpc.http_verb))
    return apis


def _consumers() -> dict[str, list[Subscription]]:
    """By message's full name, the subscriptions that take it (bound or draining)."""
    taking: dict[str, list[Subscription]] = {}
    for found in messaging.subscriptions().values():
        for subscription in found:
            for message in subscription.handled:
                taking.setdefault(_full(message), []).append(subscription)
    return taking


def _work_queue(subscription: Subscription) -> str:
    return subscription.queue("<instance>" if subscription.per_instance else "")


# -- the services ---------------------------------------------------------------------------


def services_diagram() -> str:
    """Clients, the gateway in front, every service, and who calls whom over gRPC."""
    chart = Flowchart("LR")
    client = chart.node("client", "client", "clients", "REST · gRPC · GraphQL", shape=ROUND)
    envoy = chart.node("gateway", "envoy", "Envoy gateway", shape=HEXAGON)
    chart.edge(client, envoy, "HTTPS")
    nodes = {s.name: chart.node("svc", s.name) for s in catalogue.CATALOGUE}
    graphql = chart.node("gateway", "graphql", "GraphQL federation gateway", shape=HEXAGON)
    chart.edge(envoy, graphql, "GraphQL")
    apis = _routed_apis()
    filters = _gateway_filters()
    for service in catalogue.CATALOGUE:
        if service.gateway:
            if service.name not in filters:
                raise ValueError(
                    f"{service.name} is one of the gateway's services in the catalogue, but "
                    f"no filter of {ENVOY_CONFIG.name} calls a cluster of that name"
                )
            chart.edge(envoy, nodes[service.name], *dict.fromkeys(filters[service.name]))
        elif service.name in apis:
            chart.edge(envoy, nodes[service.name], *apis[service.name])
        if service.graph:
            chart.edge(graphql, nodes[service.name], "subgraph")
        if service.web:
            chart.edge(envoy, nodes[service.name], f"web pages {service.web}")
        if service.calls_gateway:  # as a client, with its signed-in user's token
            chart.edge(nodes[service.name], envoy, "calls as a client", dotted=True)
    for service in catalogue.CATALOGUE:
        for callee in catalogue.CATALOGUE.dependencies(service):
            if callee in service.calls:
                chart.edge(nodes[service.name], nodes[callee], "gRPC")
            else:
                chart.edge(nodes[service.name], nodes[callee], "signing keys", dotted=True)
    return chart.render()


def services_table() -> str:
    """A row per service: what it is, its collections, its events, what it takes, its APIs."""
    apis = _routed_apis()
    filters = _gateway_filters()
    published = messaging.events_published()
    sent = messaging.commands_sent()
    subscriptions = messaging.subscriptions()
    rows = [
        "| service | what it is | owns (its store's collections) | publishes | consumes | APIs |",
        "|---|---|---|---|---|---|",
    ]
    for service in catalogue.CATALOGUE:
        served = [
            f"gRPC `{api}` ({_count(routed, 'RPC')} routed, {rest} with REST)"
            for api, (routed, rest) in apis.get(service.name, {}).items()
        ]
        if service.graph:
            served.append("a GraphQL subgraph")
        if service.web:
            served.append(f"web pages at `{service.web}`")
        if service.gateway:
            served += [f"the gateway's `{name}` (gRPC)" for name in filters.get(service.name, [])]
        publishes = [f"`{_full(m)}`" for m in published.get(service.name, [])]
        publishes += [f"`{_full(m)}` (command)" for m in sent.get(service.name, [])]
        consumes = [f"`{_full(m)}`" for s in subscriptions.get(service.name, []) for m in s.handled]
        collections = [f"`{name}`" for name in _collections(service)]
        cells = [
            f"`{service.name}`",
            _summary(service),
            ", ".join(collections) or "none",
            ", ".join(publishes) or "nothing",
            ", ".join(consumes) or "nothing",
            ", ".join(dict.fromkeys(served)),
        ]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows)


# -- the event backbone -------------------------------------------------------------------


def messaging_diagram() -> str:
    """Publishers, exchanges, queues (with their retry and dead-letter queues) and consumers."""
    chart = Flowchart("LR")
    publishers = _merge(messaging.events_published(), messaging.commands_sent())
    for service, messages in publishers.items():
        publisher = chart.node("from", service, service)
        for message in messages:
            route = route_of(message)
            exchange = _exchange(chart, route)
            chart.edge(publisher, exchange, "commands" if route.is_command else "events")
            if not route.is_command:
                unrouted = chart.node("queue", unrouted_queue(route.exchange), shape=QUEUE)
                chart.edge(exchange, unrouted, "no binding matches", dotted=True)
    for service, found in messaging.subscriptions().items():
        consumer = chart.node("to", service, service)
        for subscription in found:
            work = _work_queue(subscription)
            queue = chart.node("queue", work, shape=QUEUE)
            keys: dict[str, list[str]] = {}
            for route in subscription.routes:
                exchange = _exchange(chart, route)
                keys.setdefault(exchange, []).append(route.routing_key or "all (fanout)")
            for exchange, bound in keys.items():
                chart.edge(exchange, queue, *bound)
            chart.edge(queue, consumer)
            if subscription.retry_delays_s:
                steps = [
                    f"{subscription.retry_queue(n)}: {delay:g} s"
                    for n, delay in enumerate(subscription.retry_delays_s)
                ]
                retry = chart.node("retry", work, *steps, shape=QUEUE)
                chart.edge(consumer, retry, "failed: waits", dotted=True)
                chart.edge(retry, queue, "then again", dotted=True)
            dead = chart.node("queue", subscription.dead_letter_queue, shape=QUEUE)
            chart.edge(consumer, dead, "failed for good, or retries spent", dotted=True)
    return chart.render()


def _exchange(chart: Flowchart, route: Route) -> str:
    """The node of a route's exchange, with its type."""
    kind = route.exchange_type.value
    return chart.node("exchange", route.exchange, route.exchange, kind, shape=HEXAGON)


def _merge(*by_service: dict[str, list[type[Message]]]) -> dict[str, list[type[Message]]]:
    """One list per service, in the catalogue's order, of what each mapping lists for it."""
    merged: dict[str, list[type[Message]]] = {}
    for service in catalogue.CATALOGUE:
        for found in by_service:
            merged.setdefault(service.name, []).extend(found.get(service.name, []))
    return {name: messages for name, messages in merged.items() if messages}


def messages_table() -> str:
    """A row per event and command: its route, its publisher and the queues that take it."""
    consumers = _consumers()
    rows = [
        "| message | kind | exchange | routing key | published by | taken from |",
        "|---|---|---|---|---|---|",
    ]
    publishers = _merge(messaging.events_published(), messaging.commands_sent())
    for service, messages in publishers.items():
        for message in messages:
            route = route_of(message)
            taken = [
                f"`{_work_queue(s)}`" + (" (draining)" if message in s.draining else "")
                for s in consumers.get(_full(message), [])
            ]
            if not taken and not route.is_command:
                taken = [f"`{unrouted_queue(route.exchange)}` (no subscriber)"]
            cells = [
                f"`{_full(message)}`",
                "command" if route.is_command else "event",
                f"`{route.exchange}` ({route.exchange_type.value})",
                f"`{route.routing_key}`" if route.routing_key else "none (fanout)",
                f"`{service}`",
                ", ".join(taken),
            ]
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def queues_table() -> str:
    """A row per subscription: its queue, its consumer, its retry steps and its dead letters."""
    rows = [
        "| queue | consumer | retry queues (delay) | dead-letter queue | delivery limit |",
        "|---|---|---|---|---|",
    ]
    for service, found in messaging.subscriptions().items():
        for subscription in found:
            retries = ", ".join(
                f"`{subscription.retry_queue(n)}` ({delay:g} s)"
                for n, delay in enumerate(subscription.retry_delays_s)
            )
            cells = [
                f"`{_work_queue(subscription)}`",
                f"`{service}`",
                retries or "none",
                f"`{subscription.dead_letter_queue}`",
                str(subscription.delivery_limit),
            ]
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


# -- the sagas -------------------------------------------------------------------------------


def _command_of(make: Callable[..., Message]) -> type[Message]:
    """The command a step's action or compensation sends: the type it declares it returns
    (as SagaDefinition.command_types reads it)."""
    made = typing.get_type_hints(make)["return"]
    if not (isinstance(made, type) and issubclass(made, Message)):
        raise TypeError(f"{make!r} declares no message type")
    return made


def saga_diagram(owner: str, definition: SagaDefinition) -> str:
    """A saga's steps forward, and from each failure or timeout its compensations in reverse."""
    consumers = _consumers()

    def to_whom(command: type[Message]) -> str:
        return ", ".join(dict.fromkeys(s.service for s in consumers.get(_full(command), [])))

    def what(make: Callable[..., Message]) -> str:
        command = _command_of(make)
        return f"{_short(command)} → {to_whom(command)}"

    chart = Flowchart("TD")
    steps = list(definition.steps)
    start = chart.node("saga", "start", f"{owner} starts {definition.name}", shape=ROUND)
    completed = chart.node("saga", "completed", SagaStatus.COMPLETED.value, shape=ROUND)
    compensated = chart.node("saga", "compensated", SagaStatus.COMPENSATED.value, shape=ROUND)
    forward = [chart.node("step", step.name, step.state_name, what(step.action)) for step in steps]
    undo = {
        n: chart.node("undo", step.name, f"undo {step.name}", what(step.compensation))
        for n, step in enumerate(steps)
        if step.compensation is not None
    }

    def undoing_from(n: int) -> str:
        """Where compensating steps n, n - 1, ... 0 begins: the first with a compensation."""
        return next((undo[k] for k in range(n, -1, -1) if k in undo), compensated)

    for n, (step, node) in enumerate(zip(steps, forward, strict=True)):
        chart.edge(start if n == 0 else forward[n - 1], node, *_replied(steps, n - 1))
        # A refusal applied nothing: the steps before it are undone. A step with no reply in
        # time may still apply: it is undone too (ordermesh.saga_engine).
        chart.edge(node, undoing_from(n - 1), _short(step.failed))
        chart.edge(node, undoing_from(n), "no reply in time", dotted=True)
    chart.edge(forward[-1], completed, _short(steps[-1].succeeded))
    parked = chart.node("saga", "parked", SagaStatus.NEEDS_OPERATOR.value, shape=ROUND)
    for n, node in undo.items():
        compensated_by = steps[n].compensated
        assert compensated_by is not None  # SagaDefinition checks a compensation has its reply
        chart.edge(node, undoing_from(n - 1), _short(compensated_by))
        chart.edge(node, parked, "no reply however often sent", dotted=True)
    return chart.render()


def _replied(steps: list[Step], n: int) -> tuple[str, ...]:
    """The label of the way into step n + 1: the reply of step n, if there is one."""
    return (_short(steps[n].succeeded),) if n >= 0 else ()


def sagas() -> str:
    """A picture per saga, titled with its owner and name."""
    parts = []
    for owner, definitions in messaging.sagas().items():
        for definition in definitions:
            parts += [
                f"**`{definition.name}`**, run by the {owner} service:",
                "",
                saga_diagram(owner, definition),
            ]
    return "\n".join(parts)


# -- the files -----------------------------------------------------------------------------

FILES: dict[str, dict[str, Callable[[], str]]] = {
    "README.md": {"services-diagram": services_diagram, "services-table": services_table},
    "docs/architecture.md": {
        "services-diagram": services_diagram,
        "messaging-diagram": messaging_diagram,
        "messages-table": messages_table,
        "queues-table": queues_table,
        "sagas": sagas,
    },
}


def sections(names: Iterable[str]) -> dict[str, str]:
    """The generated text of each named section (each rendered once)."""
    renderers = {name: r for found in FILES.values() for name, r in found.items()}
    return {name: renderers[name]() for name in names}


def render(path: str, text: str, rendered: dict[str, str]) -> str:
    """`text` of the file `path` with each of its sections replaced by its rendering."""
    for name in FILES[path]:
        begin, end = _begin(name), _end(name)
        start, stop = text.find(begin), text.find(end)
        if start < 0 or stop < start:
            raise ValueError(f"{path}: no section {name!r}: write {begin!r} then {end!r} in it")
        text = f"{text[: start + len(begin)]}\n{rendered[name]}\n{text[stop:]}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    rendered = sections({name for found in FILES.values() for name in found})
    for path in FILES:
        file = ROOT / path
        file.write_text(render(path, file.read_text(), rendered))


if __name__ == "__main__":
    main()
