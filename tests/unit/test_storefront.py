"""The storefront's rules that need no I/O: what an order form asks for, a delivery address, how
money and the gateway's refusals read, and that an id put in a path is one segment."""

import pytest
from ordermesh.config import ConfigError
from ordermesh.errors import InvalidArgument, NotFound, ResourceExhausted, Unavailable

from services.storefront.api import Order, _refusal, _segment, money
from services.storefront.config import StorefrontSettings
from services.storefront.shop import chosen_items, delivery_address

ADDRESS = {
    "recipient": "Ada",
    "line": "12 rue de la Paix",
    "locality": "Lyon",
    "postal_code": "69001",
    "region_code": "fr",
}


def test_an_order_form_asks_for_the_quantities_above_zero():
    form = {"quantity-p1": "2", "quantity-p2": "0", "quantity-p3": "", "recipient": "Ada"}
    assert chosen_items(form) == {"p1": 2}


@pytest.mark.parametrize(
    ("form", "why"),
    [
        ({"quantity-p1": "0"}, "choose at least one product"),
        ({}, "choose at least one product"),
        ({"quantity-p1": "two"}, "is not a quantity"),
        ({"quantity-p1": "-1"}, "from 0 to 10,000"),
        ({"quantity-p1": "10001"}, "from 0 to 10,000"),
    ],
)
def test_an_order_form_without_a_usable_quantity_is_refused_saying_why(form, why):
    with pytest.raises(InvalidArgument, match=why):
        chosen_items(form)


def test_a_delivery_address_is_trimmed_and_its_country_upper_cased():
    address = delivery_address({**ADDRESS, "locality": "  Lyon "})
    assert address.locality == "Lyon"
    assert address.as_body() == {
        "recipient": "Ada",
        "addressLines": ["12 rue de la Paix"],
        "locality": "Lyon",
        "postalCode": "69001",
        "regionCode": "FR",
    }


@pytest.mark.parametrize(
    ("changed", "why"),
    [
        ({"recipient": " "}, "the recipient, a street and a town"),
        ({"line": ""}, "the recipient, a street and a town"),
        ({"region_code": "France"}, "two-letter code"),
        ({"region_code": "1A"}, "two-letter code"),
    ],
)
def test_a_delivery_address_without_what_delivery_needs_is_refused(changed, why):
    with pytest.raises(InvalidArgument, match=why):
        delivery_address({**ADDRESS, **changed})


def test_money_reads_as_a_customer_reads_it():
    assert money({"amountMinor": "1250", "currencyCode": "EUR"}) == "12.50 EUR"
    assert money({"amountMinor": "123456789", "currencyCode": "EUR"}) == "1,234,567.89 EUR"
    assert money({"amountMinor": "-5", "currencyCode": "EUR"}) == "-0.05 EUR"
    assert money(None) == ""


def test_an_order_reads_its_state_without_the_enums_prefix():
    order = Order.of({"orderId": "o-1", "state": "ORDER_STATE_REJECTED",
                      "stateReason": "product p: 2 requested, 1 available"})  # fmt: skip
    assert (order.state, order.decided, order.cancellable) == ("REJECTED", True, False)
    assert Order.of({"orderId": "o-2", "state": "ORDER_STATE_PENDING"}).cancellable


def test_a_refusal_is_the_error_of_its_grpc_status_with_the_gateways_message():
    refused = _refusal(404, {"code": 5, "message": "order o-9 not found"}, "reading the order")
    assert isinstance(refused, NotFound)
    assert str(refused) == "reading the order: order o-9 not found"
    # The gateway's own limits, and an answer with no body, by their HTTP status.
    assert isinstance(_refusal(429, "", "placing the order"), ResourceExhausted)
    assert isinstance(_refusal(503, {}, "placing the order"), Unavailable)
    assert isinstance(_refusal(502, None, "placing the order"), Unavailable)


@pytest.mark.parametrize("order_id", ["", "../users/me", "a/b", "x:cancel", "o?x=1", "é" * 3])
def test_an_id_that_is_not_one_path_segment_is_refused_before_any_call(order_id):
    with pytest.raises(InvalidArgument):
        _segment(order_id)


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ({"gateway_url": "ftp://gateway:8080"}, "GATEWAY_URL"),
        ({"gateway_url": "https://"}, "GATEWAY_URL"),
        ({"gateway_ca": "/nonexistent/ca.pem"}, "GATEWAY_CA"),
        ({"storefront_origin": "shop.example"}, "STOREFRONT_ORIGIN"),
    ],
)
def test_settings_that_cannot_reach_the_gateway_or_name_no_origin_are_refused(given, why):
    settings = {"gateway_url": "https://gateway:8080", "redis_url": "redis://redis:6379/0",
                "internal_token": "t" * 32, **given}  # fmt: skip
    with pytest.raises(ConfigError, match=why):
        StorefrontSettings(**settings)
