"""The order's rules: valid items merged per product, prices in one currency, which orders may
be cancelled."""

import pytest
from ordermesh.errors import FailedPrecondition, InvalidArgument

from services.order import domain
from services.order.domain import Item


def test_items_of_one_product_are_merged_in_first_seen_order():
    merged = domain.merged_items([Item("a", 1), Item("b", 2), Item("a", 3)])
    assert merged == [Item("a", 4), Item("b", 2)]


@pytest.mark.parametrize(
    ("items", "named"),
    [
        ([], "at least one item"),
        ([Item("", 1)], "no product_id"),
        ([Item("a", 0)], "quantity 0 of a"),
        ([Item("a", -2)], "quantity -2 of a"),
        ([Item("a", 6000), Item("a", 4001)], "quantity 10001 of a is above 10000"),
        ([Item(f"p{n}", 1) for n in range(101)], "at most 100 products, not 101"),
    ],
)
def test_invalid_items_are_refused_naming_the_problem(items, named):
    with pytest.raises(InvalidArgument, match=named):
        domain.merged_items(items)


def test_the_limits_themselves_are_allowed():
    assert len(domain.merged_items([Item(f"p{n}", 1) for n in range(100)])) == 100
    assert domain.merged_items([Item("a", 10_000)]) == [Item("a", 10_000)]


def test_the_idempotency_key_has_1_to_128_characters():
    assert domain.check_idempotency_key("k" * 128) == "k" * 128
    for bad in ("", "k" * 129):
        with pytest.raises(InvalidArgument, match="idempotency_key"):
            domain.check_idempotency_key(bad)


def test_lines_are_priced_at_the_current_price_and_totalled():
    products = {
        "a": {"name": "Mug", "price_minor": 250, "currency": "EUR"},
        "b": {"name": "Tea", "price_minor": 100, "currency": "EUR"},
    }
    lines, total, currency = domain.priced_lines([Item("a", 2), Item("b", 3)], products)
    assert total == 800
    assert currency == "EUR"
    assert lines[0] == {"product_id": "a", "product_name": "Mug", "quantity": 2,
                        "unit_price_minor": 250}  # fmt: skip


def test_an_order_mixing_currencies_is_refused():
    products = {
        "a": {"name": "Mug", "price_minor": 250, "currency": "EUR"},
        "b": {"name": "Tea", "price_minor": 100, "currency": "USD"},
    }
    with pytest.raises(InvalidArgument, match=r"share a currency, not \['EUR', 'USD'\]"):
        domain.priced_lines([Item("a", 1), Item("b", 1)], products)


@pytest.mark.parametrize(
    ("status", "cancellable"),
    [(domain.PENDING, True), (domain.APPROVED, True), (domain.REJECTED, False),
     (domain.CANCELLED, False)],
)  # fmt: skip
def test_only_pending_and_approved_orders_can_be_cancelled(status, cancellable):
    order = {"_id": "o1", "status": status}
    if cancellable:
        domain.check_cancellable(order)
    else:
        with pytest.raises(FailedPrecondition, match=f"order o1 is {status}"):
            domain.check_cancellable(order)
