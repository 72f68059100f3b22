"""Keyset pagination: opaque page tokens and the SQL that resumes after the last row. Pure."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from datetime import datetime

from .odata import Field, ODataError

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def page_size(requested: int) -> int:
    if requested < 0:
        raise ODataError("The page size ($top) must not be negative.")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def query_key(*parts: str) -> str:
    """Ties a token to the query it came from, so it cannot resume a different one."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def encode_token(values: Sequence, key: str) -> str:
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    raw = json.dumps({"q": key, "v": plain}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, fields: Sequence[Field], key: str) -> list:
    """The last row's sort values carried by `token`; ODataError when it is not one of ours for this query."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if data["q"] != key or len(data["v"]) != len(fields):
            raise ValueError
        return [_typed(value, field) for value, field in zip(data["v"], fields, strict=True)]
    except (ValueError, KeyError, TypeError):
        raise ODataError("The $skiptoken is not valid for this query.") from None


def _typed(value, field: Field):
    if field.type == "datetime":
        return datetime.fromisoformat(value)
    expected = {"int": int, "bool": bool}.get(field.type, str)
    if type(value) is not expected:
        raise ValueError
    return value


def after(order: Sequence[tuple[str, bool]], values: Sequence, params: list) -> str:
    """SQL true for rows that sort after `values` under `order` ((column, descending) pairs)."""
    first = len(params) + 1
    params.extend(values)
    if len({desc for _, desc in order}) == 1:  # one direction: a row comparison the index can use
        columns = ", ".join(c for c, _ in order)
        marks = ", ".join(f"${first + i}" for i in range(len(order)))
        return f"({columns}) {'<' if order[0][1] else '>'} ({marks})"
    terms = []
    for i, (column, desc) in enumerate(order):
        equal = [f"{c} = ${first + j}" for j, (c, _) in enumerate(order[:i])]
        terms.append("(" + " AND ".join([*equal, f"{column} {'<' if desc else '>'} ${first + i}"]) + ")")
    return "(" + " OR ".join(terms) + ")"
