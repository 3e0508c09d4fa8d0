"""The live system's page data: one read of the registry and one answer of Prometheus make each
service's row, its instances, its queues and their status colours."""

import math

from services.console.clients import FIGURES, figures_query
from services.console.domain import InstanceView, Series, live_system


def instance(instance_id, **given):
    return InstanceView(
        **{
            "instance_id": instance_id,
            "address": "127.0.0.1:5000",
            "version": "0.1.0",
            "started_at": 1_790_000_000.0,
            "draining": False,
            **given,
        }
    )


def figure(name, value, **labels):
    return Series(labels={"figure": name, **labels}, value=value)


def test_one_query_asks_for_every_figure_each_labelled_with_its_name():
    query = figures_query()

    for name, expr in FIGURES.items():
        assert f'label_replace({expr}, "figure", "{name}", "", "")' in query
    assert query.count(" or ") == len(FIGURES) - 1


def test_each_service_gets_its_figures_breakers_and_instances():
    live = live_system(
        {"order": [instance("order-1"), instance("order-2")], "user": [instance("user-1")]},
        [
            figure("rps", 12.5, service="order"),
            figure("errors", 0.0, service="order"),
            figure("p99_ms", 8.0, service="order"),
            figure("outbox_age_s", 0.2, service="order"),
            figure("open_breaker", 1, service="order", destination="inventory"),
            figure("up", 1, service="order", instance_id="order-1"),
            figure("up", 0, service="order", instance_id="order-2"),
        ],
    )

    order, user = live.services
    assert (order.name, user.name) == ("order", "user")
    assert order.figures == {"rps": 12.5, "errors": 0.0, "p99_ms": 8.0, "outbox_age_s": 0.2}
    assert order.open_breakers == ["inventory"]
    assert [i.scraped for i in order.instances] == [True, False]
    assert [i.health for i in order.instances] == ["serving", "not answering"]
    assert user.instances[0].scraped is None


def test_a_service_with_figures_but_no_instance_left_is_critical():
    live = live_system({}, [figure("rps", 1.0, service="inventory")])

    (inventory,) = live.services
    assert inventory.instances == []
    assert inventory.status == "critical"


def test_statuses_follow_the_alerting_rules_thresholds():
    def status(figures=(), **instance_given):
        live = live_system(
            {"order": [instance("order-1", **instance_given)]},
            [figure(name, value, service="order") for name, value in figures],
        )
        return live.services[0].status

    assert status() == "ok"
    assert status([("errors", 0.02)]) == "critical"
    assert status([("errors", 0.005)]) == "ok"
    assert status([("outbox_age_s", 6.0)]) == "critical"
    assert status(draining=True) == "warning"
    assert status(breakers={"inventory": "open"}) == "warning"
    assert status(breakers={"inventory": "closed"}) == "ok"


def test_queues_get_their_rates_by_stage_and_their_dead_letters():
    live = live_system(
        {},
        [
            figure("messages", 3.0, service="order", queue="order.saga", stage="processed"),
            figure("messages", 0.5, service="order", queue="order.saga", stage="retried"),
            figure("messages", 4.0, service="order", stage="published"),
            figure("dead_letters", 2, queue="order.saga.dlq"),
            figure("dead_letters", 0, queue="user.commands.dlq"),
        ],
    )

    saga, commands = live.queues
    assert (saga.name, saga.rates, saga.dead_letters) == (
        "order.saga",
        {"processed": 3.0, "retried": 0.5},
        2,
    )
    assert saga.status == "warning"
    assert (commands.name, commands.dead_letters, commands.status) == ("user.commands", 0, "ok")
    assert live.published == {"order": {"published": 4.0}}


def test_queues_get_the_messages_waiting_and_their_consumers():
    live = live_system(
        {},
        [
            figure("waiting", 12, queue="inventory.saga"),
            figure("consumers", 2, queue="inventory.saga"),
            figure("dead_letters", 0, queue="inventory.saga.dlq"),
        ],
    )

    [saga] = live.queues
    assert (saga.name, saga.waiting, saga.consumers, saga.dead_letters) == (
        "inventory.saga", 12, 2, 0,
    )  # fmt: skip


def test_a_figure_prometheus_cannot_compute_is_left_out():
    live = live_system(
        {"order": [instance("order-1")]}, [figure("p99_ms", math.nan, service="order")]
    )

    assert live.services[0].figures == {}


def test_what_could_not_be_read_is_said():
    live = live_system({}, [], problems=["Prometheus did not answer"])

    assert live.problems == ["Prometheus did not answer"]
    assert live.services == []
