"""OData system query options of a Graph request ($filter, $top, ...), checked before any backend call.

Option names are case-insensitive and, on beta, the `$` is optional (`$TOP=5` == `top=5` == `$top=5`).
$filter and $orderby are passed through as text: the owning service parses them against its own properties;
$search becomes a $filter of contains() over the resource's searchable properties.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlencode

from multidict import MultiMapping

from services.common import odata

from .errors import bad_request

KNOWN = {"filter", "orderby", "top", "skip", "skiptoken", "count", "select", "expand", "search", "format"}
MAX_TOP = 999  # Graph's usual ceiling for an Intune page; a larger $top pages (see Window)
TOP_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class QueryOptions:
    filter: str = ""
    orderby: str = ""
    top: int = 0
    skip: int = 0
    skiptoken: str = ""
    count: bool = False
    select: tuple[str, ...] = ()
    search: str = ""
    expand: tuple[str, ...] = ()


def parse(query: MultiMapping[str], allowed: frozenset[str], properties: frozenset[str], *,
          top_limit: int = MAX_TOP, navigations: frozenset[str] = frozenset()) -> QueryOptions:
    """Reads the options in `allowed` ($expand always: against `navigations`); any other OData option, a
    repeated one (`$top` and `top` too) or a bad value is a 400."""
    seen: dict[str, str] = {}
    for key, value in query.items():
        name = (key[1:] if key.startswith("$") else key).lower()
        if name not in KNOWN:
            if key.startswith("$"):
                raise bad_request(f"Query option '{key}' is not supported.")
            continue  # not an OData option: ignored, as Graph does
        if name not in allowed and name != "expand":
            raise bad_request(f"Query option '${name}' is not supported on this resource.")
        if name in seen:
            raise bad_request(f"Query option '${name}' was specified more than once.")
        seen[name] = value
    return QueryOptions(
        filter=seen.get("filter", "").strip(),
        orderby=seen.get("orderby", "").strip(),
        top=_int(seen, "top", 1, top_limit),
        skip=_int(seen, "skip", 0, 2**31 - 1),
        skiptoken=seen.get("skiptoken", ""),
        count=_bool(seen, "count"),
        select=_select(seen.get("select", ""), properties),
        search=seen.get("search", "").strip(),
        expand=expand(seen.get("expand", ""), navigations),
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


def expand(raw: str, navigations: frozenset[str]) -> tuple[str, ...]:
    """$expand=a,b (or *): the navigation properties named, each one of `navigations`; nested options
    (a($select=x)) are refused."""
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    if raw.strip() and not names:
        raise bad_request("$expand names no navigation property.")
    for name in names:
        if "(" in name:
            raise bad_request(f"Query options inside $expand ('{name}') are not supported.")
        if name != "*" and name not in navigations:
            raise bad_request(f"Could not find a navigation property named '{name}' for $expand.")
    return tuple(sorted(navigations)) if "*" in names else names


def next_link(url, skiptoken: str) -> str:
    """The request URL with its $skiptoken replaced (and $skip dropped: the token already moved past it)."""
    params = [(k, v) for k, v in url.query.items() if k.lstrip("$").lower() not in ("skiptoken", "skip")]
    params.append(("$skiptoken", skiptoken))
    return str(url.with_query(None)) + "?" + urlencode(params, safe="$,'()")


# --- $top above a page ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """One page of a listing: its size and the backend's page token. With a $top above MAX_TOP, `remaining`
    is how many items the $top still allows, and the $skiptoken is `remaining.backend-token`."""
    size: int
    token: str
    remaining: int = 0  # 0: $top is at most a page, and each nextLink brings another page of that size

    def next_token(self, returned: int, backend_token: str) -> str:
        if not self.remaining:
            return backend_token
        left = self.remaining - returned
        return f"{left}.{backend_token}" if left > 0 and backend_token else ""


def window(options: QueryOptions) -> Window:
    if options.top <= MAX_TOP:
        return Window(options.top, options.skiptoken)
    remaining, token = options.top, options.skiptoken
    if token:
        count, _, token = token.partition(".")
        if not (count.isascii() and count.isdigit() and len(count) <= 10 and 0 < int(count) < options.top
                and token):
            raise bad_request("The $skiptoken is not valid for this query.")
        remaining = int(count)
    return Window(min(remaining, MAX_TOP), token, remaining)


# --- $search ------------------------------------------------------------------------------------------------
#   search := all ('OR' all)*      all := term ('AND' term)*      term := '"' [property ':'] text '"'

CONSISTENCY_MESSAGE = ("Request with $search query parameter only works through MSGraph with a special request "
                       "header: 'ConsistencyLevel: eventual'")
_SEARCH_TOKEN = re.compile(r'\s*(?:"([^"]*)"|(AND|OR)(?=[\s"]|$))\s*')
MAX_SEARCH = 512


def search_filter(options: QueryOptions, headers, searchable: tuple[str, ...]) -> str:
    """The $filter to send for `options`: its own, and with $search its terms as contains() over the
    `searchable` properties (case-insensitive substrings). $search needs `ConsistencyLevel: eventual`."""
    if not options.search:
        return options.filter
    if not searchable:
        raise bad_request("Query option '$search' is not supported on this resource.")
    if headers.get("ConsistencyLevel", "").strip().lower() != "eventual":
        raise bad_request(CONSISTENCY_MESSAGE)
    if len(options.search) > MAX_SEARCH:
        raise bad_request(f"The $search query option is longer than {MAX_SEARCH} characters.")
    condition = " or ".join(" and ".join(_term(text, searchable) for text in group)
                            for group in _search_groups(options.search))
    if not options.filter:
        return condition
    try:
        odata.parse_filter(options.filter)  # its syntax errors, at their own positions
    except odata.ODataError as exc:
        raise bad_request(str(exc)) from None
    return f"({options.filter}) and ({condition})"


def _search_groups(raw: str) -> list[list[str]]:
    """'"a" AND "b" OR "c"' -> [["a", "b"], ["c"]]: the terms of each OR'd group of AND'ed terms."""
    groups, expect_term, i = [[]], True, 0
    while i < len(raw):
        match = _SEARCH_TOKEN.match(raw, i)
        if not match or (match.group(1) is None) == expect_term:
            wanted = "a quoted term" if expect_term else "AND or OR"
            raise bad_request(f'Invalid $search at position {i}: expected {wanted}, e.g. $search="word" or '
                              '$search="a" AND "b".')
        if match.group(2) == "OR":
            groups.append([])
        elif match.group(1) is not None:
            groups[-1].append(match.group(1))
        expect_term, i = not expect_term, match.end()
    if expect_term:
        raise bad_request('Invalid $search: it must end with a quoted term, e.g. $search="word".')
    return groups


def _term(text: str, searchable: tuple[str, ...]) -> str:
    """One term as a condition: "property:value" searches that property, any other text all of them."""
    name, colon, value = text.partition(":")
    names, value = ((name,), value) if colon and name in searchable else (searchable, text)
    if not value.strip():
        raise bad_request("A $search term is empty.")
    literal = "'" + value.replace("'", "''") + "'"
    return "(" + " or ".join(f"contains({name}, {literal})" for name in names) + ")"
