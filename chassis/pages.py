"""Pagination of list RPCs: page sizes within bounds, and opaque page tokens that resume a list.

A page token encodes where the previous page ended (the sort value and id of its last item) and
is opaque to clients; a token that was not issued by `next_token` is InvalidArgument, naming it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any

from chassis.errors import InvalidArgument

__all__ = ["DEFAULT_SIZE", "MAX_SIZE", "after_of", "next_token", "page_size"]

DEFAULT_SIZE, MAX_SIZE = 20, 100


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument(f"page_size {requested} is negative")
    return min(requested or DEFAULT_SIZE, MAX_SIZE)


def after_of(token: str) -> tuple[Any, str] | None:
    """Where the page of this token starts: after (sort value, id); None for the first page."""
    if not token:
        return None
    try:
        value, id = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise InvalidArgument(f"page_token {token!r} is not a token this service issued") from None
    if not isinstance(id, str):
        raise InvalidArgument(f"page_token {token!r} is not a token this service issued")
    return value, id


def next_token(page: Sequence[Mapping[str, Any]], *, size: int, order_by: str) -> str:
    """The token of the page after this one; empty if this one is the last."""
    if len(page) <= size:
        return ""
    last = page[size - 1]
    return base64.urlsafe_b64encode(json.dumps([last[order_by], last["_id"]]).encode()).decode()
