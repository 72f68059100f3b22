"""Imports one feed: reads it with its Format in a worker thread, a batch at a time (constant memory), writes
each batch as the next version of the feed, then makes that version current in one step. A record that
cannot be read is counted and (the first MAX_PROBLEMS) reported with its location; the rest still goes in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from epm.reputation.v1 import file_reputation_service_pb2 as pb

from ..common.enums import graph_numbers
from .feeds import Format, Problem, Record
from .store import Import, ReputationStore

BATCH = 2000
MAX_PROBLEMS = 100


@dataclass
class Progress:
    records: int
    keys: int
    problem_count: int
    done: bool = False
    changed: bool = False  # done: a new version is current (False: the data equalled the current version)
    problems: list[Problem] = field(default_factory=list)  # done: the first MAX_PROBLEMS


async def run(store: ReputationStore, tenant: str, feed: str, fmt: Format, path: Path,
              source_version: str = "") -> AsyncIterator[Progress]:
    """Yields a Progress after every batch, and a last one with done=True."""
    source_version = source_version or await asyncio.to_thread(fmt.source_version, path)
    problems: list[Problem] = []
    async with store.importing(tenant, feed, fmt.name) as job:
        items = fmt.read(path)
        about = pb.SourceMatch(feed=feed, feed_version=source_version or f"v{job.version}", tenant_owned=bool(tenant))
        while chunk := await asyncio.to_thread(list, islice(items, BATCH)):
            await job.write(_rows(chunk, job, problems, about))
            yield Progress(job.records, job.keys, job.problems)
        changed = await store.finish(job, source_version)
    yield Progress(job.records, job.keys, job.problems, done=True, changed=changed, problems=problems)


def _rows(chunk: list, job: Import, problems: list[Problem], about: pb.SourceMatch) -> list[tuple]:
    rows = []
    for item in chunk:
        if isinstance(item, Problem):
            job.problems += 1
            if len(problems) < MAX_PROBLEMS:
                problems.append(item)
            continue
        job.records += 1
        job.digest.update("\x1f".join((item.label, item.name, item.title, item.reference, *item.tags,
                                       *(part for key in item.keys for part in key), "\x1e")).encode())
        source = source_of(item, about)
        rows.extend((key, kind, item.label, source + MATCHED_BY[kind]) for kind, key in item.keys)
    return rows


def source_of(record: Record, about: pb.SourceMatch) -> bytes:
    """The SourceMatch a lookup returns for any key of `record`, without matched_by: serialized messages
    concatenate, so each key's row is this plus MATCHED_BY[its kind]."""
    source = pb.SourceMatch(label=LABELS[record.label], name=record.name, title=record.title,
                            reference=record.reference, tags=record.tags)
    source.MergeFrom(about)
    return source.SerializeToString()


LABELS = graph_numbers(pb.Label.DESCRIPTOR)
MATCHED_BY = {kind: pb.SourceMatch(matched_by=kind).SerializeToString()
              for kind in ("sha256", "sha1", "md5", "authentihash", "fileName", "certificate")}
