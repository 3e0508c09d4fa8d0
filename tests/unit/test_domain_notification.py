"""The notification rules: who is reached through which channel, what is said, when a send is
tried again, and what ListNotifications shows of an address."""

import pytest

from services.notification import domain

RECIPIENT = {
    "email": "ada@example.com",
    "preferences": {
        "channels": {"order_approved": ["email", "sms", "push"], "order_rejected": ["sms"]},
        "phone_number": "+4915112345678",
        "push_token": "",
    },
}


def test_a_draft_per_wanted_channel_that_has_an_address():
    drafts = domain.drafts(RECIPIENT, "order_approved", "subject", "body")
    assert [(d.channel, d.address) for d in drafts] == [
        ("email", "ada@example.com"),
        ("sms", "+4915112345678"),
    ]  # no push token: push is skipped


def test_a_kind_the_recipient_does_not_want_gives_no_draft():
    assert domain.drafts(RECIPIENT, "order_cancelled", "s", "b") == []


def test_order_texts_name_the_order_and_what_happened():
    subject, body = domain.order_text(
        domain.ORDER_APPROVED, name="Ada", order_id="0123456789", lines=["2 x Mug"]
    )
    assert subject == "Order 01234567 approved"
    assert "your order 0123456789 is approved" in body
    assert "  - 2 x Mug" in body
    subject, body = domain.order_text(
        domain.ORDER_REJECTED, name="Ada", order_id="0123456789", reason="out of stock"
    )
    assert subject == "Order 01234567 rejected"
    assert "could not be accepted: out of stock." in body
    _, body = domain.order_text(domain.ORDER_CANCELLED, name="Ada", order_id="o", reason="")
    assert body.endswith("is cancelled.\n")


def test_money_is_shown_in_major_units():
    assert domain.money(123456, "EUR") == "1234.56 EUR"
    assert domain.money(5, "EUR") == "0.05 EUR"


@pytest.mark.parametrize(("attempts", "delay"), [(1, 1.0), (2, 5.0), (3, 30.0), (4, None)])
def test_each_failed_attempt_waits_its_step_and_then_none_is_left(attempts, delay):
    assert domain.next_attempt_delay(attempts, (1.0, 5.0, 30.0)) == delay


def test_addresses_are_masked_enough_to_recognise_not_to_harvest():
    assert domain.masked("email", "ada@example.com") == "a***@example.com"
    assert domain.masked("sms", "+4915112345678") == "+49*******5678"
    assert domain.masked("push", "abcdefghijk") == "abcdef..."
    assert domain.masked("push", "abc") == "***"
