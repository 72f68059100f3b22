"""The real public feeds the tests import (../shared/data: LOLBAS, LOLDrivers; never copied into the repo), and
the helpers that upload a feed over the gRPC stream."""

from __future__ import annotations

import asyncio
import os
from functools import cache
from pathlib import Path

import grpc
import yaml
from epm.reputation.v1 import file_reputation_service_pb2 as pb
from epm.reputation.v1 import file_reputation_service_pb2_grpc as pb_grpc

CHUNK = 256 * 1024


@cache
def data_dir() -> Path:
    """EPM_FEED_DATA, else the shared data folder beside the checkout (or the workplace's)."""
    candidates = [Path(os.environ["EPM_FEED_DATA"])] if os.environ.get("EPM_FEED_DATA") else [
        Path(__file__).resolve().parents[2] / "shared" / "data", Path("/work/shared/data")]
    for candidate in candidates:
        if (candidate / "loldrivers" / "yaml").is_dir() and (candidate / "lolbas" / "yml").is_dir():
            return candidate
    raise RuntimeError(f"the real feed files are needed for these tests; looked in {candidates} (set EPM_FEED_DATA)")


def loldrivers() -> Path:
    return data_dir() / "loldrivers" / "yaml"


def lolbas() -> Path:
    return data_dir() / "lolbas" / "yml"


def snapshot(folder: Path) -> str:
    return (folder.parent / "SNAPSHOT").read_text().split()[-1]


@cache
def driver_samples() -> dict[str, list[dict]]:
    """category ("malicious", "vulnerable driver") -> the samples with a SHA-256, as the YAML gives them."""
    out: dict[str, list[dict]] = {}
    for path in sorted(loldrivers().glob("*.yaml")):
        driver = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
        for sample in driver.get("KnownVulnerableSamples") or ():
            if len(str(sample.get("SHA256") or "")) == 64:
                out.setdefault(driver["Category"].lower(), []).append(dict(sample, Id=driver["Id"]))
    return out


def requests_for(fmt: int, path: Path, *, feed: str = "", shared: bool = False, source_version: str = ""):
    """The ImportFeed request stream for a file or a folder (each file in CHUNK pieces, with its relative path)."""
    yield pb.ImportFeedRequest(header=pb.ImportHeader(format=fmt, feed=feed, shared=shared,
                                                      source_version=source_version))
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        name = file.name if path.is_file() else file.relative_to(path).as_posix()
        data = file.read_bytes()
        for start in range(0, max(len(data), 1), CHUNK):
            yield pb.ImportFeedRequest(content=pb.FeedContent(path=name, data=data[start:start + CHUNK]))


async def upload(stub, metadata, fmt: int, path: Path, **header) -> list[pb.ImportFeedProgress]:
    """Every progress message of one import; the last is PHASE_DONE."""
    return [p async for p in stub.ImportFeed(requests_for(fmt, path, **header), metadata=metadata, timeout=120)]


async def refused(address: str, metadata, messages) -> grpc.RpcError:
    """The error that ends an upload (an ImportFeed request stream) the server refuses. With the sync client:
    grpc.aio reports INTERNAL instead of the server's status when the server ends a stream the client is still
    writing (grpc/grpc#36066)."""
    def run() -> grpc.RpcError:
        with grpc.insecure_channel(address) as channel:
            try:
                list(pb_grpc.FileReputationServiceStub(channel).ImportFeed(messages, metadata=metadata, timeout=60))
            except grpc.RpcError as error:
                return error
        raise AssertionError("the upload was accepted")

    return await asyncio.to_thread(run)
