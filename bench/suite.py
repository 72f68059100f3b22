"""bench/run: every path of the performance table, each against a floor measured in the same run, then one table
of the headline ratios (with the machine it ran on).

    bench/run [--quick] [--only ingest,reads,reputation,watch] [--markdown FILE]

Each benchmark runs as its own process with the options below (--quick: smaller sizes, one rep, for a smoke run)
and appends its headline rows to a JSON-lines file; their full tables go to the terminal as they finish.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = {  # name -> (full options, --quick options)
    "ingest": (["--rows", "200000", "--reps", "3", "--scale", "10000,100000,1000000", "--memory-events", "0"],
               ["--rows", "20000", "--reps", "1", "--scale", "10000,50000", "--scale-chunk", "5000",
                "--memory-events", "0"]),
    "reads": (["--rows", "1000000", "--reps", "3"],
              ["--rows", "50000", "--reps", "1", "--seconds", "3", "--lists", "60"]),
    "reputation": (["--parts", "lookup,analysis", "--lookup-scale", "10000,100000,1000000", "--reps", "3"],
                   ["--parts", "lookup,analysis", "--rows", "50000", "--lookup-keys", "20000", "--reps", "1",
                    "--seconds", "3", "--distinct", "100"]),
    "watch": (["--watchers", "1000", "--rate", "50", "--rounds", "1", "--idle", "0"],
              ["--watchers", "100", "--rate", "50", "--rounds", "1", "--idle", "0", "--resume", "0"]),
}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    database = "EPM_BENCH_DATABASE_URL" if os.environ.get("EPM_BENCH_DATABASE_URL") else "embedded pgserver"
    return (f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, Python {platform.python_version()}, "
            f"PostgreSQL: {database}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def table(rows: list[dict]) -> str:
    head = ["path", "floor (same run)", "product", "ratio", "target", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join([r["path"], r["floor"], r["product"], r["ratio"], r["target"],
                                 "yes" if r["met"] else "**no**"]) + " |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, one rep: a smoke run, not a measurement")
    p.add_argument("--only", default=",".join(BENCHES), help="comma-separated subset of " + ", ".join(BENCHES))
    p.add_argument("--markdown", help="also write the headline table and the machine to this file")
    args = p.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    if unknown := set(chosen) - set(BENCHES):
        p.error(f"--only: unknown {sorted(unknown)}")
    summary = Path(tempfile.mkstemp(prefix="epm-bench-summary-", suffix=".jsonl")[1])
    failed = []
    for name in chosen:
        options = BENCHES[name][1 if args.quick else 0]
        argv_ = [sys.executable, str(HERE / f"{name}.py"), *options, "--summary", str(summary)]
        print(f"\n=== {name}: {' '.join(argv_[1:])}", flush=True)
        started = time.monotonic()
        if subprocess.run(argv_, cwd=HERE.parent).returncode:
            failed.append(name)
        print(f"=== {name}: {time.monotonic() - started:.0f} s", flush=True)
    rows = [json.loads(line) for line in summary.read_text().splitlines() if line]
    summary.unlink()
    report = f"Machine: {machine()}{' (--quick: not a measurement)' if args.quick else ''}\n\n{table(rows)}\n"
    print("\n" + report, flush=True)
    if args.markdown:
        Path(args.markdown).write_text(report, encoding="utf-8")
    if failed:
        print(f"FAILED: {', '.join(failed)} (their rows are missing above)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
