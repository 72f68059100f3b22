"""NIST NSRL: catalogued software. RDSv3 is a SQLite database (FILE, PKG, MFG, VERSION); RDSv2 ("legacy") is
`NSRLFile.txt`, a quoted CSV with SHA-1 and MD5 only. Known software is not a promise that it is benign."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

from . import Format, Item, Problem, Record, csv_fields, hex_digest, lines

ABOUT = "https://www.nist.gov/itl/ssd/software-quality-group/national-software-reference-library-nsrl"
# One row per file and package; the package's product, version and manufacturer come along in one field.
FILES = """
SELECT rowid, sha256, sha1, md5, file_name,
       (SELECT p.name || char(31) || p.version || char(31) || coalesce(m.name, '')
        FROM PKG p LEFT JOIN MFG m ON m.manufacturer_id = p.manufacturer_id
        WHERE p.package_id = FILE.package_id LIMIT 1)
FROM FILE"""


def read(path: Path) -> Iterator[Item]:
    database = _open(path)
    try:
        for rowid, sha256, sha1, md5, file_name, package in database.execute(FILES):
            keys = tuple((kind, d) for kind, value in (("sha256", sha256), ("sha1", sha1), ("md5", md5))
                         if (d := hex_digest(value, kind)))
            if not keys:
                yield Problem(f"{path.name}:FILE row {rowid}", "no valid SHA-256, SHA-1 or MD5")
                continue
            product, version, maker = (package or "\x1f\x1f").split("\x1f")
            tags = tuple(f"{t}:{v}" for t, v in (("product", product), ("manufacturer", maker)) if v)
            yield Record("knownGood", keys, file_name or "", f"{product} {version}".strip(), ABOUT, tags)
    finally:
        database.close()


def source_version(path: Path) -> str:
    database = _open(path)
    try:
        row = database.execute("SELECT version FROM VERSION LIMIT 1").fetchone()
        return str(row[0]) if row else ""
    except sqlite3.Error:
        return ""
    finally:
        database.close()


def _open(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    # read batch by batch from worker threads, one at a time
    database = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    try:
        database.execute("SELECT 1 FROM FILE LIMIT 1")
    except sqlite3.Error as exc:
        database.close()
        raise ValueError(f"{path.name} is not an NSRL RDSv3 database: {exc}") from None
    return database


def read_legacy(path: Path) -> Iterator[Item]:
    columns: list[str] = []
    for name, number, line in lines(path):
        if not line.strip():
            continue
        fields = csv_fields(line)
        if not columns:
            if "SHA-1" not in fields:
                yield Problem(f"{name}:{number}", 'the first line must be the header ("SHA-1","MD5",...)')
                return
            columns = fields
            continue
        row = dict(zip(columns, fields, strict=False))
        keys = tuple((kind, d) for kind, column in (("sha1", "SHA-1"), ("md5", "MD5"))
                     if (d := hex_digest(row.get(column), kind)))
        if not keys or len(fields) != len(columns):
            got = repr(fields)[:120]
            yield Problem(f"{name}:{number}", f"expected {len(columns)} fields with a SHA-1 or MD5, got {got}")
            continue
        product = row.get("ProductCode", "")
        yield Record("knownGood", keys, row.get("FileName", ""), f"NSRL product {product}" if product else "", ABOUT,
                     (f"product:{product}",) if product else ())


FORMAT = Format("nsrl", read, source_version, "NIST NSRL RDSv3 SQLite database")
LEGACY_FORMAT = Format("nsrl-legacy", read_legacy, lambda path: "", "NIST NSRL RDSv2 NSRLFile.txt (or its .zip)")
