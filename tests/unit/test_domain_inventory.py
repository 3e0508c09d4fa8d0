"""The inventory's rules: valid products, stock that never goes below zero, all-or-nothing
reservations."""

import pytest
from ordermesh.errors import FailedPrecondition, InvalidArgument

from services.inventory import domain


def product(**fields):
    valid = dict(
        sku="mug-01", name=" Mug ", description="", price_minor=1000, currency="EUR",
        initial_stock=5,
    )  # fmt: skip
    return domain.new_product(**{**valid, **fields})


def test_a_new_product_is_normalised_and_has_nothing_reserved():
    made = product()
    assert (made["sku"], made["name"], made["on_hand"], made["reserved"]) == ("MUG-01", "Mug", 5, 0)
    assert domain.available(made) == 5


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"sku": "mug 01"}, "sku 'MUG 01'"),
        ({"sku": "-MUG"}, "sku"),
        ({"sku": "A" * 65}, "sku"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"description": "x" * 2001}, "description"),
        ({"price_minor": -1}, "price -1"),
        ({"currency": "eur"}, "currency 'eur'"),
        ({"initial_stock": -1}, "initial stock -1"),
    ],
)
def test_an_invalid_product_is_refused_naming_the_value(fields, named):
    with pytest.raises(InvalidArgument, match=named):
        product(**fields)


def test_limits_are_inclusive():
    made = product(sku="A" * 64, name="x" * 200, description="x" * 2000, initial_stock=0)
    assert domain.available(made) == 0


def test_a_delivery_adds_to_the_stock_and_a_write_off_may_not_take_reserved_units():
    held = {**product(initial_stock=5), "_id": "p1", "reserved": 3}
    assert domain.adjusted(held, 4)["on_hand"] == 9
    assert domain.adjusted(held, -2)["on_hand"] == 3  # available 2 -> 0
    with pytest.raises(
        FailedPrecondition, match="p1: removing 3 would leave available stock at -1"
    ):
        domain.adjusted(held, -3)
    with pytest.raises(InvalidArgument, match="zero"):
        domain.adjusted(held, 0)


def test_shortages_count_each_product_once_across_lines():
    products = {"a": {"on_hand": 5, "reserved": 1}, "b": {"on_hand": 2, "reserved": 0}}
    assert domain.shortages([("a", 2), ("a", 2), ("b", 2)], products) == []
    # Two lines of "a" ask for 5 of the 4 available.
    assert domain.shortages([("a", 3), ("a", 2)], products) == [domain.Shortage("a", 5, 4)]


def test_an_unknown_product_or_a_non_positive_quantity_is_a_shortage():
    products = {"a": {"on_hand": 5, "reserved": 0}, "gone": None}
    found = domain.shortages([("gone", 1), ("a", 0)], products)
    assert found == [domain.Shortage("gone", 1, 0), domain.Shortage("a", 0, 5)]
    assert domain.describe(found) == (
        "product gone: 1 requested, 0 available; product a: 0 requested, 5 available"
    )
