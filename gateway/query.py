"""OData system query options of a Graph request ($filter, $top, ...), checked before any backend call.

On beta the `$` is optional (`top=5` == `$top=5`). $filter and $orderby are passed through as text: the
owning service parses them against its own properties.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from multidict import MultiMapping

from .errors import bad_request

KNOWN = {"filter", "orderby", "top", "skip", "skiptoken", "count", "select", "expand", "search", "format"}
MAX_TOP = 999  # Graph's usual ceiling for Intune collections


@dataclass(frozen=True)
class QueryOptions:
    filter: str = ""
    orderby: str = ""
    top: int = 0
    skip: int = 0
    skiptoken: str = ""
    count: bool = False
    select: tuple[str, ...] = ()


def parse(query: MultiMapping[str], allowed: frozenset[str], properties: frozenset[str]) -> QueryOptions:
    """Reads the options in `allowed`; any other OData option, a repeated one or a bad value is a 400."""
    seen: dict[str, str] = {}
    for key, value in query.items():
        name = key[1:] if key.startswith("$") else key
        if name.lower() not in KNOWN:
            if key.startswith("$"):
                raise bad_request(f"Query option '{key}' is not supported.")
            continue  # not an OData option: ignored, as Graph does
        if name != name.lower():
            raise bad_request(f"Query option '{key}' must be lowercase: ${name.lower()}.")
        if name not in allowed:
            raise bad_request(f"Query option '${name}' is not supported on this resource.")
        if name in seen:
            raise bad_request(f"Query option '${name}' was specified more than once.")
        seen[name] = value
    return QueryOptions(
        filter=seen.get("filter", "").strip(),
        orderby=seen.get("orderby", "").strip(),
        top=_int(seen, "top", 1, MAX_TOP),
        skip=_int(seen, "skip", 0, 2**31 - 1),
        skiptoken=seen.get("skiptoken", ""),
        count=_bool(seen, "count"),
        select=_select(seen.get("select", ""), properties),
    )


def _int(seen: dict, name: str, low: int, high: int) -> int:
    if name not in seen:
        return 0
    raw = seen[name]
    # ASCII digits, and few: int() refuses '²' (a digit) and numbers of thousands of digits
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 10) or not low <= int(raw) <= high:
        raise bad_request(f"Invalid value '{raw}' for ${name}: expected a whole number from {low} to {high}.")
    return int(raw)


def _bool(seen: dict, name: str) -> bool:
    raw = seen.get(name, "false")
    if raw not in ("true", "false"):
        raise bad_request(f"Invalid value '{raw}' for ${name}: expected true or false.")
    return raw == "true"


def _select(raw: str, properties: frozenset[str]) -> tuple[str, ...]:
    names = tuple(p.strip() for p in raw.split(",") if p.strip())
    if raw.strip() and not names:
        raise bad_request("$select names no property.")
    for name in names:
        if name != "*" and name not in properties:
            raise bad_request(f"Could not find a property named '{name}' for $select.")
    return () if "*" in names else names


def next_link(url, skiptoken: str) -> str:
    """The request URL with its $skiptoken replaced (and $skip dropped: the token already moved past it)."""
    params = [(k, v) for k, v in url.query.items() if k.lstrip("$") not in ("skiptoken", "skip")]
    params.append(("$skiptoken", skiptoken))
    return str(url.with_query(None)) + "?" + urlencode(params, safe="$,'()")
