"""`epm feeds import` and `epm feeds list`: the importer driven from a shell, progress on stderr."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..common import db
from . import importer
from .app import MIGRATIONS
from .feeds import formats
from .store import SHARED, FeedBusy, FeedFormatMismatch, ReputationStore

PROGRESS_EVERY = 1.0  # seconds between progress lines


async def main(url: str, args) -> None:
    pool = await db.create_pool(url, 2)
    try:
        await db.migrate(pool, "reputation", MIGRATIONS)
        store = ReputationStore(pool)
        if args.feeds_command == "list":
            await _list(store, args.tenant.lower())
        else:
            await _import(store, args)
    finally:
        await pool.close()


async def _import(store: ReputationStore, args) -> None:
    fmt, path = formats()[args.format], Path(args.path)
    feed, tenant = args.feed or fmt.name, args.tenant.lower() or SHARED
    started = shown = time.monotonic()
    try:
        async for progress in importer.run(store, tenant, feed, fmt, path, args.source_version):
            if not progress.done and time.monotonic() - shown >= PROGRESS_EVERY:
                shown = time.monotonic()
                print(f"{feed}: {progress.records:,} records, {progress.keys:,} keys, "
                      f"{progress.problem_count:,} problems", file=sys.stderr, flush=True)
    except (FeedBusy, FeedFormatMismatch, FileNotFoundError, ValueError) as exc:
        message = f"An import of feed '{feed}' is already running." if isinstance(exc, FeedBusy) else str(exc)
        raise SystemExit(f"epm feeds import: {message}") from None
    for problem in progress.problems:
        print(f"{problem.location}: {problem.message}", file=sys.stderr)
    if progress.problem_count > len(progress.problems):
        print(f"... and {progress.problem_count - len(progress.problems):,} more problems", file=sys.stderr)
    row = await store.feed(tenant, feed)
    print(json.dumps({
        "feed": feed, "tenant": tenant or "(shared)", "format": fmt.name, "version": row["version"],
        "sourceVersion": row["source_version"], "changed": progress.changed, "records": progress.records,
        "keys": progress.keys, "problems": progress.problem_count,
        "seconds": round(time.monotonic() - started, 2)}, indent=2))


async def _list(store: ReputationStore, tenant: str) -> None:
    rows = await store.feeds(tenant)
    print(f"{'feed':<20} {'scope':<8} {'format':<14} {'version':>7} {'source':<12} {'records':>10} {'keys':>10} "
          f"imported")
    for r in rows:
        print(f"{r['name']:<20} {'tenant' if r['own'] else 'shared':<8} {r['format']:<14} {r['version']:>7} "
              f"{r['source_version']:<12} {r['records']:>10,} {r['keys']:>10,} {r['imported_at']:%Y-%m-%d %H:%M}")
