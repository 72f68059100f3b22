"""A tenant's own allow and block list: CSV lines `hash,verdict[,name[,comment]]`, an optional header line first,
'#' comments. The hash is a SHA-256, SHA-1 or MD5 digest; the verdict is allow or block."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from . import HASH_KINDS, Format, Item, Problem, Record, csv_fields, hex_digest, lines

VERDICTS = {"allow": "allowed", "allowed": "allowed", "trusted": "allowed", "good": "allowed",
            "block": "blocked", "blocked": "blocked", "deny": "blocked", "malicious": "blocked", "bad": "blocked"}
HEADER = ("hash", "sha256", "sha1", "md5", "filehash")  # the first field of an optional header line


def read(path: Path) -> Iterator[Item]:
    first = True
    for name, number, line in lines(path):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [f.strip() for f in csv_fields(line)]
        if first and fields and fields[0].lower() in HEADER:
            first = False
            continue
        first = False
        digest = hex_digest(fields[0] if fields else "")
        if digest is None:
            yield Problem(f"{name}:{number}", f"not a SHA-256, SHA-1 or MD5 digest: {fields[0] if fields else ''!r}")
            continue
        verdict = VERDICTS.get(fields[1].lower() if len(fields) > 1 else "")
        if verdict is None:
            yield Problem(f"{name}:{number}", "the verdict must be allow or block, not "
                                               f"{fields[1] if len(fields) > 1 else 'nothing'!r}")
            continue
        yield Record(verdict, ((HASH_KINDS[len(digest)], digest),), fields[2] if len(fields) > 2 else "",
                     fields[3] if len(fields) > 3 else "")


FORMAT = Format("hashlist", read, lambda path: "", "CSV of hash,verdict[,name[,comment]] (allow or block)")
