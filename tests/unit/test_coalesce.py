import asyncio

import pytest

from services.common.coalesce import Coalescer


async def test_concurrent_submits_share_writes_and_get_their_own_results():
    writes = []

    async def write(items):
        writes.append(list(items))
        await asyncio.sleep(0.01)
        return [i * 10 for i in items]

    coalescer = Coalescer(write, in_flight=2)
    results = await asyncio.gather(*(coalescer.submit(i) for i in range(50)))
    assert results == [i * 10 for i in range(50)]
    assert sorted(i for batch in writes for i in batch) == list(range(50))
    assert len(writes) < 50 and writes[0] == [0]  # the first write did not wait for company


async def test_a_failed_write_fails_each_of_its_callers_and_the_next_write_still_runs():
    async def write(items):
        if 0 in items:
            raise RuntimeError("disk on fire")
        return items

    coalescer = Coalescer(write, in_flight=1)
    first, second = await asyncio.gather(coalescer.submit(0), coalescer.submit(1), return_exceptions=True)
    assert isinstance(first, RuntimeError) and second == 1
    with pytest.raises(RuntimeError):
        await coalescer.submit(0)
