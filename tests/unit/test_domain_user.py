"""The user service's rules: addresses, passwords, preferences and credit."""

import pytest
from ordermesh.errors import FailedPrecondition, InvalidArgument

from services.user import domain


def test_emails_are_trimmed_and_lower_cased_and_must_look_like_addresses():
    assert domain.normalise_email("  Ada@Example.COM ") == "ada@example.com"
    for bad in ("ada", "ada@example", "a b@example.com", "@example.com", "x" * 250 + "@e.com"):
        with pytest.raises(InvalidArgument, match="is not a valid address"):
            domain.normalise_email(bad)


def test_passwords_are_judged_by_length_and_never_the_email():
    domain.check_password("x" * 10, email="ada@example.com")
    domain.check_password("x" * 128, email="ada@example.com")
    with pytest.raises(InvalidArgument, match="at least 10"):
        domain.check_password("x" * 9, email="ada@example.com")
    with pytest.raises(InvalidArgument, match="at most 128"):
        domain.check_password("x" * 129, email="ada@example.com")
    with pytest.raises(InvalidArgument, match="not be the email"):
        domain.check_password(" ADA@example.com", email="ada@example.com")


def test_a_display_name_is_trimmed_and_bounded():
    assert domain.check_display_name("  Ada  ") == "Ada"
    with pytest.raises(InvalidArgument, match="at most 100"):
        domain.check_display_name("x" * 101)


def test_a_new_account_is_told_everything_by_email_only():
    preferences = domain.default_preferences()
    assert preferences["channels"] == {kind: ["email"] for kind in domain.KINDS}


def test_changed_preferences_replace_the_listed_kinds_only_and_drop_repeats():
    current = domain.default_preferences()
    updated = domain.update_preferences(
        current,
        channels={"order_approved": ["sms", "email", "sms"]},
        phone_number="+4915112345678",
        push_token=None,
    )
    assert updated["channels"]["order_approved"] == ["sms", "email"]
    assert updated["channels"]["order_rejected"] == ["email"]
    assert current["channels"]["order_approved"] == ["email"]  # the input is not changed


@pytest.mark.parametrize(
    ("change", "error", "named"),
    [
        ({"channels": {"birthday": ["email"]}}, InvalidArgument, "kind 'birthday'"),
        ({"channels": {"order_approved": ["fax"]}}, InvalidArgument, "channel 'fax'"),
        ({"phone_number": "015112345678"}, InvalidArgument, "E.164"),
        ({"push_token": "t" * 4097}, InvalidArgument, "at most 4096"),
        ({"channels": {"order_approved": ["sms"]}}, FailedPrecondition, "need a phone number"),
        ({"channels": {"order_approved": ["push"]}}, FailedPrecondition, "need a push token"),
    ],
)
def test_preferences_that_cannot_be_honoured_are_refused(change, error, named):
    arguments = {"channels": {}, "phone_number": None, "push_token": None, **change}
    with pytest.raises(error, match=named):
        domain.update_preferences(domain.default_preferences(), **arguments)


def test_clearing_the_phone_number_is_refused_while_sms_is_wanted():
    with_sms = domain.update_preferences(
        domain.default_preferences(),
        channels={"order_approved": ["sms"]},
        phone_number="+4915112345678",
        push_token=None,
    )
    with pytest.raises(FailedPrecondition, match="need a phone number"):
        domain.update_preferences(with_sms, channels={}, phone_number="", push_token=None)


def decide(amount, *, reserved=0, currency="EUR"):
    return domain.decide_credit(
        limit_minor=1000, reserved_minor=reserved, amount_minor=amount, currency="EUR",
        requested=currency,
    )  # fmt: skip


def test_credit_is_granted_up_to_the_limit_and_never_below_zero():
    assert decide(1000) == domain.CreditDecision(granted=True, available_minor=0)
    assert decide(600, reserved=400) == domain.CreditDecision(granted=True, available_minor=0)
    assert decide(601, reserved=400) == domain.CreditDecision(granted=False, available_minor=600)
    # Reserved above the limit (the limit was lowered): nothing available, not a negative.
    assert decide(1, reserved=1500) == domain.CreditDecision(granted=False, available_minor=0)


def test_credit_is_refused_for_nothing_or_another_currency():
    assert not decide(0).granted
    assert not decide(-5).granted
    assert not decide(10, currency="USD").granted
