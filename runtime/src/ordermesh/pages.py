"""Pagination of list RPCs: page sizes within bounds, and opaque page tokens that resume a list.

A page token encodes where the previous page ended (the sort value and id of its last item) and
is opaque to clients; a token that was not issued by `next_token` is InvalidArgument, naming it.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ordermesh.errors import InvalidArgument
from ordermesh.store import Document, Store

__all__ = ["DEFAULT_SIZE", "MAX_SIZE", "after_of", "next_token", "read_page", "size_of"]

DEFAULT_SIZE, MAX_SIZE = 20, 100


def size_of(requested: int) -> int:
    """The page size to serve for a requested one: the default for 0, at most MAX_SIZE."""
    if requested < 0:
        raise InvalidArgument(f"page_size {requested} is negative")
    return min(requested or DEFAULT_SIZE, MAX_SIZE)


def after_of(token: str) -> tuple[Any, str] | None:
    """Where the page of this token starts: after (sort value, id); None for the first page."""
    if not token:
        return None
    try:
        value, id = json.loads(base64.urlsafe_b64decode(token.encode()))
    # RecursionError: a nesting deeper than json's recursion limit (the contracts bound the token
    # at 512 characters, but not every caller has passed through the contracts' edge).
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError, RecursionError):
        raise InvalidArgument(f"page_token {token!r} is not a token this service issued") from None
    # A token this service issued holds a sort value every store can compare (text, a number
    # that fits 64 bits) and an id; anything else was made by someone else.
    if not _text(id) or not _sortable(value):
        raise InvalidArgument(f"page_token {token!r} is not a token this service issued")
    return value, id


def _sortable(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    if isinstance(value, float):
        # PostgreSQL's JSONB has no Infinity nor NaN (`1e400` decodes to Infinity too), and NaN
        # compares with nothing.
        return math.isfinite(value)
    return _text(value)


def _text(value: object) -> bool:
    """Text every store takes: UTF-8 (a lone surrogate such as a decoded `"\\ud800"` is not),
    without NUL (PostgreSQL's text and JSONB cannot hold it)."""
    if not isinstance(value, str) or "\0" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def next_token(page: Sequence[Mapping[str, Any]], *, size: int, order_by: str) -> str:
    """The token of the page after this one; empty if this one is the last."""
    if len(page) <= size:
        return ""
    last = page[size - 1]
    return base64.urlsafe_b64encode(json.dumps([last[order_by], last["_id"]]).encode()).decode()


async def read_page(
    store: Store,
    collection: str,
    *,
    page_size: int,
    page_token: str,
    order_by: str,
    where: Mapping[str, Any] | None = None,
    descending: bool = False,
) -> tuple[list[Document], str]:
    """One page of a collection's documents in a stable order, and the token of the next."""
    size = size_of(page_size)
    async with store.transaction() as tx:
        found = await tx.find(
            collection,
            where=where,
            order_by=order_by,
            descending=descending,
            after=after_of(page_token),
            limit=size + 1,
        )
    return found[:size], next_token(found, size=size, order_by=order_by)
