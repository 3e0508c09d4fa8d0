"""Every page of the console renders from its data (every name its template uses is given: the
templates are strict), escapes what the system's records hold, and carries the stable ids a
browser test finds its elements by."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from ordermesh.contracts.ops.v1 import ops_service_pb2 as ops
from ordermesh.flag_file import states, turn_on
from ordermesh.switches import CONTEXT, RPC_ERRORS, SETTINGS, STATUSES, SWITCHES
from ordermesh.vocabulary import enum_name
from ordermesh.web.assets import Asset
from ordermesh.web.sessions import Session

from services.console import web
from services.console.domain import (
    AlertView,
    DeadLetterView,
    InstanceView,
    ParkedView,
    SagaStep,
    SagaView,
    Series,
    live_system,
    story_of,
)
from services.console.pages import SAGA_STATUSES, environment
from services.console.service import MessagesPage

WHEN = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script>'
ASSETS = {
    name: Asset(name, b"", "text/plain", "0123456789abcdef", "sha384-AAAA", "/console")
    for name in ("console.css", "htmx.min.js")
}
SESSION = Session(
    id="s" * 43, user_id="admin-1", email="admin@ordermesh.test", name="Ada Admin",
    roles=("admin",), access_token="a", access_expires_at=0, refresh_token="r",
    refresh_expires_at=0, csrf_token="c" * 43, created_at=0,
)  # fmt: skip
SAGA = SagaView(
    saga_id="order-1", status="NEEDS_OPERATOR", state="COMPENSATING_RESERVE_STOCK",
    step="reserve stock", started_at=WHEN, updated_at=WHEN, failure_reason=HOSTILE,
    correlation_id="corr-1", trace_id="a" * 32,
)  # fmt: skip
LETTER = DeadLetterView(
    queue="order.saga.dlq", event_id="ev-1", type="inventory.v1.StockReserved",
    correlation_id="corr-1", error=HOSTILE, attempts=5, consumer="order.saga",
    instance="order-1", failed_at=WHEN, original_route="inventory.events / stock.reserved",
    replays=["2026-12-05 10:00:00 by admin-1: fixed"], body='{\n  "orderId": "order-1"\n}',
)  # fmt: skip
PARKED = ParkedView(
    seq=7, event_id="ev-2", type="order.v1.OrderPlaced", route="order.events / order.placed",
    reason="NO_ROUTE", parked_at=WHEN, correlation_id="corr-1", body="",
)  # fmt: skip


def render(template, **context):
    pages = environment(ASSETS)
    return pages.get_template(template).render(
        session=SESSION,
        csrf=SESSION.csrf_token,
        flash="",
        operator_services=("user", "order"),
        saga_services=("order",),
        **context,
    )


def test_the_templates_are_those_the_handlers_name():
    names = {p.name for p in Path(web.TEMPLATES).iterdir()}

    assert names >= {
        "base.html", "login.html", "live.html", "_live.html", "story.html", "messages.html",
        "dead_letter.html", "parked.html", "sagas.html", "saga.html", "error.html",
        "faults.html",
    }  # fmt: skip


def test_the_live_page_lists_services_and_instances_by_their_ids():
    live = live_system(
        {"order": [InstanceView("order-7", "127.0.0.1:5001", "0.1.0", 1_790_000_000.0, False,
                                breakers={"inventory": "open"}, notes={"sagas.parked": "1"})]},
        [Series({"figure": "dead_letters", "queue": "order.saga.dlq"}, 3)],
        [AlertView("OrdermeshDeadLetters", "warning", HOSTILE, "2026-12-05 10:00:00")],
    )  # fmt: skip

    page = render("live.html", live=live, faults_on=[], refresh_s=2.0)

    assert 'data-testid="service-row" data-service="order"' in page
    assert 'data-testid="instance-row" data-service="order" data-instance-id="order-7"' in page
    assert 'data-testid="queue-row" data-queue="order.saga"' in page
    assert 'data-testid="breaker" data-destination="inventory"' in page
    assert 'hx-get="/console/fragments/live" hx-trigger="every 2000ms"' in page
    assert HOSTILE not in page
    assert "&lt;script&gt;" in page


def test_every_page_sends_the_csrf_token_with_htmx_and_in_the_sign_out_form():
    page = render("error.html", error="x")

    assert f'hx-headers=\'{{"X-CSRF-Token": "{"c" * 43}"}}\'' in page
    assert f'name="csrf_token" value="{"c" * 43}"' in page
    assert 'data-testid="admin-name"' in page
    assert "Ada Admin" in page
    assert (
        '<script src="/console/static/0123456789abcdef/htmx.min.js" integrity="sha384-AAAA"' in page
    )
    assert "<script>" not in page
    assert "style=" not in page


def test_the_story_lists_each_entry_in_order():
    story = story_of(
        "order-1", saga=SAGA, saga_service="order",
        saga_history=[SagaStep(WHEN, "saga started", "", "", "RESERVING_STOCK", HOSTILE, "")],
        log_records=[{"timestamp": "2026-12-05T10:00:01Z", "service": "order", "event": "x"}],
        trace_url="http://127.0.0.1:16686/trace/" + "a" * 32,
    )  # fmt: skip

    page = render("story.html", key="order-1", story=story, error="")

    assert page.count('data-testid="story-entry"') == 2
    assert 'href="/console/sagas/order/order-1"' in page
    assert 'data-testid="trace-link"' in page
    assert HOSTILE not in page


def test_the_dead_letters_page_offers_replay_and_discard_with_a_reason():
    page = render(
        "messages.html",
        page=MessagesPage("order", [LETTER], {"order.saga.dlq": 1}, [PARKED], ["user: down"]),
    )

    assert 'data-testid="dead-letter-row" data-event-id="ev-1"' in page
    assert 'value="order.saga.dlq|ev-1"' in page
    assert 'data-testid="parked-row" data-event-id="ev-2"' in page
    assert page.count('name="reason" required') == 2
    assert 'formaction="/console/messages/order/dead-letters/discard"' in page
    assert HOSTILE not in page


@pytest.mark.parametrize(
    ("template", "context"),
    [
        ("dead_letter.html", {"service": "order", "letter": LETTER}),
        ("parked.html", {"service": "order", "message": PARKED}),
        ("login.html", {"login_token": "l" * 43, "error": HOSTILE}),
        ("sagas.html", {"service": "order", "chosen_status": "NEEDS_OPERATOR", "min_age": "60",
                        "sagas": [SAGA], "next_page": "tok=en"}),
    ],
)  # fmt: skip
def test_the_other_pages_render_escaped(template, context):
    page = render(template, **context)

    assert HOSTILE not in page


def test_a_saga_that_needs_an_operator_offers_retry_and_resolve():
    page = render("saga.html", service="order", saga=SAGA, history=[])

    assert 'data-testid="retry-compensation"' in page
    assert 'data-testid="resolve-saga"' in page
    assert 'action="/console/sagas/order/order-1/retry"' in page


def test_the_saga_statuses_offered_are_those_of_the_operator_api_the_parked_first():
    api = {enum_name(ops.SagaStatus, value) for value in ops.SagaStatus.values()}

    assert set(SAGA_STATUSES) == api - {"UNSPECIFIED"}
    assert len(SAGA_STATUSES) == len(api) - 1
    assert SAGA_STATUSES[0] == "NEEDS_OPERATOR"


def faults_page(switches):
    return render(
        "faults.html", switches=switches, context=CONTEXT, settings=SETTINGS, statuses=STATUSES
    )


def test_the_faults_page_shows_each_switch_with_a_form_for_what_it_takes(tmp_path):
    flags = tmp_path / "flags.json"
    turn_on(flags, RPC_ERRORS, {"service": HOSTILE}, {"percent": 30.0, "status": "UNAVAILABLE"})

    page = faults_page(states(flags))

    assert page.count('data-testid="switch-row"') == len(SWITCHES)
    row = page[page.index(f'data-switch="{RPC_ERRORS}"') :]
    row = row[: row.index("</tr>")]
    assert 'data-testid="switch-state">on<' in row
    assert "percent 30.0" in row
    assert "status UNAVAILABLE" in row
    assert f'action="/console/faults/{RPC_ERRORS}/on"' in row
    assert f'action="/console/faults/{RPC_ERRORS}/off"' in row
    assert 'name="service"' in row
    assert 'name="method"' in row
    assert 'name="queue"' not in row
    assert "<option selected>UNAVAILABLE</option>" in row
    assert page.count('name="reason" required') == len(SWITCHES) + 1  # an off form for the one on
    assert HOSTILE not in page


def test_a_deployment_without_switches_says_so_and_offers_nothing():
    page = render("faults.html", switches=None)

    assert 'data-testid="no-switches"' in page
    assert "/faults/" not in page


def test_the_live_page_says_which_switches_are_on():
    live = live_system({}, [], [])
    on = [{"switch": RPC_ERRORS, "on": True, "where": {"service": HOSTILE},
           "settings": {"percent": 30.0}, "does": ""}]  # fmt: skip

    page = render("live.html", live=live, faults_on=on, refresh_s=2.0)

    assert 'data-testid="fault-on" data-switch="rpc-errors"' in page
    assert "percent 30.0" in page
    assert HOSTILE not in page
    assert 'data-testid="faults-on"' not in render(
        "live.html", live=live, faults_on=[], refresh_s=2.0
    )
