"""`status eq …` compiles to conditions on the stored columns (which the indexes serve); on real PostgreSQL they
pick exactly the rows the effective status (expired once past the deadline) picks, for every state."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from services.common.odata import compile_filter
from services.requests.lifecycle import State
from services.requests.store import EFFECTIVE_STATUS, FIELDS, status_is


@pytest.fixture
async def conn(database_url):
    conn = await asyncpg.connect(database_url)
    await conn.execute("CREATE TEMP TABLE r (id uuid, status text, valid_until timestamptz)")
    yield conn
    await conn.close()


async def ids(conn, where: str, now: datetime, *params) -> set:
    return {r["id"] for r in await conn.fetch(f"SELECT id FROM r WHERE $1::timestamptz IS NOT NULL AND {where}",
                                              now, *params)}


async def test_every_state_selects_what_the_effective_status_selects(conn):
    now = datetime.now(timezone.utc)
    rows = [(uuid.uuid4(), state.value, now + offset) for state in State
            for offset in (timedelta(hours=-1), timedelta(0), timedelta(hours=1))]  # past, the deadline, future
    await conn.executemany("INSERT INTO r VALUES ($1, $2, $3)", rows)
    effective = EFFECTIVE_STATUS.replace("$2", "$1")
    for state in State:
        expected = await ids(conn, f"{effective} = $2", now, state.value)
        assert expected, state
        assert await ids(conn, status_is(state.value).replace("$2", "$1"), now) == expected, state
        assert await ids(conn, f"NOT ({status_is(state.value)})".replace("$2", "$1"), now) == \
            {r[0] for r in rows} - expected, state


def test_filters_compile_to_the_index_friendly_conditions():
    params: list = ["tenant", "now"]
    sql = compile_filter("status eq 'pending' or status in ('expired', 'denied')", FIELDS, params)
    assert sql == ("((status = 'pending' AND valid_until > $2) OR ((status = 'expired' OR (status IN ('pending', "
                   "'approved') AND valid_until <= $2)) OR status = 'denied'))")
    assert params == ["tenant", "now"]  # the members are allowlisted constants, nothing is bound
    with pytest.raises(Exception, match="not a valid value"):
        compile_filter("status eq 'pending'' OR 1=1 --'", FIELDS, [])
