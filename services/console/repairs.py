"""The pages where an operator repairs what went wrong, and the actions on them: dead letters
and parked messages (list, inspect, replay, discard, unpark) and sagas (list by status and age,
one saga's history, retry its compensation, resolve it). A read that fails is shown on the page
with its status; an action goes back to the page it came from, its outcome (or why it failed)
shown there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from ordermesh.web.site import SESSION

from services.console.pages import CONSOLE, SAGA_STATUSES, act, see, shown

__all__ = [
    "dead_letter",
    "discard",
    "messages",
    "parked_message",
    "replay",
    "resolve_saga",
    "retry_compensation",
    "saga",
    "sagas",
    "unpark",
]


# What the pages and actions below share.


def _service(request: web.Request, services: tuple[str, ...]) -> str:
    """The service the request names (in its path or its query), else the first of
    `services`; 404 for one not among them."""
    service = request.match_info.get("service") or request.query.get("service") or ""
    if not service and services:
        return services[0]
    if service not in services:
        raise web.HTTPNotFound(text=f"no such service: {service[:64]!r}\n")
    return service


# Dead letters and parked messages.


async def messages(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    service = _service(request, console.settings.operator_services)

    async def read() -> Mapping[str, Any]:
        return {"page": await console.messages(request[SESSION], service)}

    return await shown(request, "messages.html", read)


async def dead_letter(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    service = _service(request, console.settings.operator_services)
    queue, event_id = request.query.get("queue", ""), request.match_info["event_id"]

    async def read() -> Mapping[str, Any]:
        letter = await console.dead_letter(
            request[SESSION], service, queue=queue, event_id=event_id
        )
        return {"service": service, "letter": letter}

    return await shown(request, "dead_letter.html", read)


async def parked_message(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    service = _service(request, console.settings.operator_services)
    event_id = request.match_info["event_id"]

    async def read() -> Mapping[str, Any]:
        message = await console.parked_message(request[SESSION], service, event_id)
        return {"service": service, "message": message}

    return await shown(request, "parked.html", read)


def _chosen(values: list[str]) -> list[tuple[str, str]]:
    """The (queue, event id) of each dead letter chosen in a form ("queue|event id")."""
    return [(q, e) for q, _, e in (v.partition("|") for v in values)]


async def replay(request: web.Request) -> web.StreamResponse:
    return await _on_dead_letters(request, "replay")


async def discard(request: web.Request) -> web.StreamResponse:
    return await _on_dead_letters(request, "discard")


async def _on_dead_letters(request: web.Request, action: str) -> web.StreamResponse:
    console = request.app[CONSOLE]
    service = _service(request, console.settings.operator_services)
    form = await request.post()
    chosen = _chosen([str(v) for v in form.getall("chosen", [])])
    reason = str(form.get("reason", ""))

    async def change() -> str:
        if action == "replay":
            done = await console.replay(request[SESSION], service, chosen, reason)
            return f"Replayed {done} of {len(chosen)} dead letter(s) of {service}."
        done = await console.discard(request[SESSION], service, chosen, reason)
        return f"Discarded {done} of {len(chosen)} dead letter(s) of {service}."

    return await act(request, see("/messages", service=service), change)


async def unpark(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    service = _service(request, console.settings.operator_services)
    form = await request.post()
    event_ids = [str(v) for v in form.getall("event_id", [])]
    reason = str(form.get("reason", ""))

    async def change() -> str:
        done = await console.unpark(request[SESSION], service, event_ids, reason)
        return f"Unparked {done} of {len(event_ids)} message(s) of {service}."

    return await act(request, see("/messages", service=service), change)


# Sagas.


async def sagas(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    service = _service(request, console.settings.saga_services)
    status = request.query.get("status", "NEEDS_OPERATOR")
    if status not in ("", *SAGA_STATUSES):
        raise web.HTTPBadRequest(text=f"no saga status {status[:32]!r}\n")
    min_age = request.query.get("min_age", "") or "0"
    if not min_age.isdigit() or len(min_age) > 9:
        raise web.HTTPBadRequest(text="min_age is a whole number of seconds\n")
    page_token = request.query.get("page", "")

    async def read() -> Mapping[str, Any]:
        found, next_page = await console.sagas(
            request[SESSION],
            service,
            status=status,
            min_age_s=int(min_age),
            page_token=page_token,
        )
        return {
            "service": service,
            # Not `status`: render takes that as the answer's HTTP status.
            "chosen_status": status,
            "min_age": min_age,
            "sagas": found,
            "next_page": next_page,
        }

    return await shown(request, "sagas.html", read)


async def saga(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    service = _service(request, console.settings.saga_services)
    saga_id = request.match_info["saga_id"]

    async def read() -> Mapping[str, Any]:
        found, history = await console.saga(request[SESSION], service, saga_id)
        return {"service": service, "saga": found, "history": history}

    return await shown(request, "saga.html", read)


async def retry_compensation(request: web.Request) -> web.StreamResponse:
    return await _on_saga(request, "retry")


async def resolve_saga(request: web.Request) -> web.StreamResponse:
    return await _on_saga(request, "resolve")


async def _on_saga(request: web.Request, action: str) -> web.StreamResponse:
    console = request.app[CONSOLE]
    service = _service(request, console.settings.saga_services)
    saga_id = request.match_info["saga_id"]
    reason = str((await request.post()).get("reason", ""))

    async def change() -> str:
        if action == "retry":
            done = await console.retry_compensation(request[SESSION], service, saga_id, reason)
            return f"Compensation sent again: saga {saga_id} is {done.status}."
        done = await console.resolve_saga(request[SESSION], service, saga_id, reason)
        return f"Saga {saga_id} resolved: it is {done.status}."

    return await act(request, see(f"/sagas/{service}/{saga_id}"), change)
