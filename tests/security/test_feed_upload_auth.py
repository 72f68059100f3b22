"""A refused client stream (a feed upload, a stream of event batches) ends with the refusal, every time, and stores
nothing. A grpc.aio client that is still writing when the server answers reports 'Internal error from Core'
(INTERNAL) instead of the server's status (grpc/grpc#36066), so each case is tried many times over with the
asynchronous client."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections import Counter
from datetime import datetime, timedelta, timezone
from functools import cache

import grpc
import pytest
from epm.events.v1 import elevation_event_service_pb2 as events_pb
from epm.events.v1 import elevation_event_service_pb2_grpc as events_grpc
from epm.reputation.v1 import file_reputation_service_pb2 as pb
from epm.reputation.v1 import file_reputation_service_pb2_grpc as pb_grpc

from services.common.auth import CONFIG_READ, CONFIG_WRITE, DEVICES_READ, DEVICES_WRITE, mint
from services.common.server import DRAIN_LIMIT

ATTEMPTS, AT_ONCE = 200, 8
CHUNK = 64 << 10
UPLOAD = 4 << 20  # bytes of each upload, in CHUNK pieces
BATCHES, BATCH = 16, 1000  # events per stream: about 2 MiB


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def md(token: str) -> tuple:
    return (("authorization", f"Bearer {token}"),)


@cache
def upload(feed: str) -> list[pb.ImportFeedRequest]:
    """A well-formed hash list of UPLOAD bytes for `feed`: only the refusal keeps it out."""
    lines = b"".join(f"{sha(f'refused {i}')},block\n".encode() for i in range(UPLOAD // 71 + 1))
    return [pb.ImportFeedRequest(header=pb.ImportHeader(format=pb.FEED_FORMAT_HASH_LIST, feed=feed))] + [
        pb.ImportFeedRequest(content=pb.FeedContent(path="list.csv", data=lines[start:start + CHUNK]))
        for start in range(0, len(lines), CHUNK)]


@cache
def batches() -> list[events_pb.IngestElevationEventsRequest]:
    """BATCHES of BATCH distinct, valid events."""
    now = datetime.now(timezone.utc)
    out = []
    for number in range(BATCHES):
        batch = events_pb.IngestElevationEventsRequest()
        for index in range(BATCH):
            event = batch.events.add(device_id=f"refused-{number}", hash=sha(f"{number} {index}"),
                                     elevation_type=events_pb.ELEVATION_TYPE_ZERO_TOUCH_ELEVATION,
                                     file_path=f"C:\\Program Files\\Refused\\tool-{index}.exe")
            event.event_date_time.FromDatetime(now - timedelta(seconds=index))
        out.append(batch)
    return out


async def outcomes(call) -> Counter:
    """How ATTEMPTS calls of `call`, AT_ONCE at a time, ended: by status code, or 'accepted'."""
    seen = Counter()

    async def one():
        try:
            await call()
        except grpc.aio.AioRpcError as error:
            seen[error.code()] += 1
        else:
            seen["accepted"] += 1

    for _ in range(ATTEMPTS // AT_ONCE):
        await asyncio.gather(*(one() for _ in range(AT_ONCE)))
    return seen


def callers(token, tenant) -> dict[str, tuple[grpc.StatusCode, tuple]]:
    """Who is refused, and how: a token signed by someone else (for this tenant), and an application that may read
    configuration and devices but write neither."""
    forged = mint(secrets.token_urlsafe(32), tenant=tenant, roles=(CONFIG_WRITE, DEVICES_WRITE))
    return {"forged": (grpc.StatusCode.UNAUTHENTICATED, md(forged)),
            "reader": (grpc.StatusCode.PERMISSION_DENIED, md(token(scopes=(), roles=(CONFIG_READ, DEVICES_READ))))}


@pytest.mark.parametrize("who", ["forged", "reader"])
async def test_a_refused_upload_always_ends_with_the_refusal(reputation_channel, token, tenant, untouched, who):
    expected, metadata = callers(token, tenant)[who]
    stub = pb_grpc.FileReputationServiceStub(reputation_channel)
    messages = upload("refused")

    async def call():
        async for _ in stub.ImportFeed(iter(messages), metadata=metadata, timeout=60):
            pass

    async with untouched(tenant):
        assert await outcomes(call) == {expected: ATTEMPTS}


async def test_an_upload_refused_after_its_header_always_ends_with_the_refusal(reputation_channel, token, tenant,
                                                                                untouched):
    """The same once the caller is let in and the header read: a feed name the service refuses."""
    writer = md(token(scopes=(), roles=(CONFIG_WRITE,)))
    stub = pb_grpc.FileReputationServiceStub(reputation_channel)
    messages = upload("../refused")

    async def call():
        async for _ in stub.ImportFeed(iter(messages), metadata=writer, timeout=60):
            pass

    async with untouched(tenant):
        assert await outcomes(call) == {grpc.StatusCode.INVALID_ARGUMENT: ATTEMPTS}


@pytest.mark.parametrize("style", ["iterator", "writer"])
@pytest.mark.parametrize("who", ["forged", "reader"])
async def test_refused_event_batches_always_end_with_the_refusal(events_channel, token, tenant, untouched, who,
                                                                 style):
    """Batches given as an iterator, or written one by one (a refused write would raise INTERNAL itself)."""
    expected, metadata = callers(token, tenant)[who]
    stub = events_grpc.ElevationEventServiceStub(events_channel)

    async def call():
        if style == "iterator":
            return await stub.IngestElevationEvents(iter(batches()), metadata=metadata, timeout=60)
        stream = stub.IngestElevationEvents(metadata=metadata, timeout=60)
        for batch in batches():
            await stream.write(batch)
        await stream.done_writing()
        return await stream

    async with untouched(tenant):
        assert await outcomes(call) == {expected: ATTEMPTS}


async def test_a_refused_stream_is_read_only_so_far(reputation_channel, tenant, untouched):
    """An endless upload with a forged token: the server reads DRAIN_LIMIT bytes of it at most, then ends the call
    (with the refusal, or the INTERNAL that grpc.aio makes of it once the server stops reading)."""
    forged = md(mint(secrets.token_urlsafe(32), tenant=tenant, roles=(CONFIG_WRITE,)))
    stub = pb_grpc.FileReputationServiceStub(reputation_channel)
    chunk = pb.ImportFeedRequest(content=pb.FeedContent(path="list.csv", data=b"\n" * (1 << 20)))
    sent = 0

    def endless():
        nonlocal sent
        yield upload("refused")[0]
        while True:
            sent += 1
            yield chunk

    async with untouched(tenant):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in stub.ImportFeed(endless(), metadata=forged, timeout=30):
                pass
    assert err.value.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INTERNAL)
    assert sent <= (DRAIN_LIMIT >> 20) + 16  # what the server read, and what was on its way
