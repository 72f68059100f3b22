"""Feed formats: each reads a real public threat-intelligence format from a path and yields Records (what to
store) and Problems (a record it could not read, with where it was). Pure readers: they only read the path.

A record has one lookup key per hash or name it can be found by; the store writes one row per key.
"""

from __future__ import annotations

import csv
import functools
import io
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

HEX = re.compile(r"^[0-9a-f]+$")
HASH_KINDS = {64: "sha256", 40: "sha1", 32: "md5"}  # hex length -> kind


@dataclass(frozen=True, slots=True)
class Record:
    label: str                            # knownGood, malicious, vulnerableDriver, dualUse, maliciousSigner, ...
    keys: tuple[tuple[str, str], ...]     # (kind, key): kind is sha256, sha1, md5, authentihash, fileName, certificate
    name: str = ""
    title: str = ""
    reference: str = ""
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Problem:
    location: str  # "file:line"
    message: str


Item = Record | Problem


@dataclass(frozen=True)
class Format:
    name: str                                   # the CLI's and the default feed's name
    read: Callable[[Path], Iterator[Item]]
    source_version: Callable[[Path], str]       # the data's own version, or ""
    description: str


def hex_digest(value, kind: str | None = None) -> str | None:
    """`value` as a lowercase hex digest of `kind` (or of any kind when None); None when it is not one."""
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    if not HEX.match(text) or len(text) not in HASH_KINDS:
        return None
    if kind not in (None, "authentihash") and HASH_KINDS[len(text)] != kind:
        return None
    return text


def snapshot_version(path: Path) -> str:
    """The date in a SNAPSHOT file ("<commit> <date>") beside the data or one folder up, as the shared data has."""
    folder = path if path.is_dir() else path.parent
    for candidate in (folder / "SNAPSHOT", folder.parent / "SNAPSHOT"):
        if candidate.is_file():
            words = candidate.read_text().split()
            return words[-1] if words else ""
    return ""


def line_of(text: str, needle: str) -> int:
    """The 1-based line where `needle` first appears in `text` (1 when it does not)."""
    at = text.find(needle) if needle else -1
    return text.count("\n", 0, at) + 1 if at >= 0 else 1


def files(path: Path, suffixes: tuple[str, ...]) -> list[tuple[Path, str]]:
    """(file, name relative to `path`) for a single file, or for every file with one of `suffixes` below a folder."""
    if path.is_file():
        return [(path, path.name)]
    if not path.is_dir():
        raise FileNotFoundError(f"no such file or folder: {path}")
    found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    return [(p, p.relative_to(path).as_posix()) for p in found]


@functools.cache
def formats() -> dict[str, Format]:
    from . import hashlist, lolbas, loldrivers, malwarebazaar, nsrl

    return {f.name: f for f in (lolbas.FORMAT, loldrivers.FORMAT, malwarebazaar.FORMAT, nsrl.FORMAT,
                                 nsrl.LEGACY_FORMAT, hashlist.FORMAT)}


def lines(path: Path) -> Iterator[tuple[str, int, str]]:
    """(file name, 1-based line number, text without the line end) of a text file, or of the first member of
    a .zip (the exports come zipped). Bytes that are not UTF-8 become U+FFFD rather than stopping the import."""
    if path.suffix.lower() == ".zip":
        with zipfile.ZipFile(path) as archive:
            member = next((m for m in archive.infolist() if not m.is_dir()), None)
            if member is None:
                return
            with archive.open(member) as raw:
                text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
                yield from ((member.filename, n, line.rstrip("\r\n")) for n, line in enumerate(text, 1))
        return
    with path.open(encoding="utf-8", errors="replace", newline="") as text:
        yield from ((path.name, n, line.rstrip("\r\n")) for n, line in enumerate(text, 1))


def csv_fields(line: str) -> list[str]:
    """One CSV line's fields: quoted or not, with or without a space after each comma (MalwareBazaar's style)."""
    return next(csv.reader((line,), skipinitialspace=True), [])
