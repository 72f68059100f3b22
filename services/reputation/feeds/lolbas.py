"""LOLBAS (LOLBAS-Project/LOLBAS): one YAML file per Windows binary, script or library that attackers abuse.
The data has no hashes, so a record is found by file name (and its aliases, e.g. a PE original file name)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PureWindowsPath

import yaml

from . import Format, Item, Problem, Record, files, snapshot_version

GITHUB = "https://github.com/LOLBAS-Project/LOLBAS/blob/master/yml/"


def read(path: Path) -> Iterator[Item]:
    for file, name in files(path, (".yml", ".yaml")):
        text = file.read_text(encoding="utf-8", errors="replace")
        try:
            documents = [d for d in yaml.load_all(text, Loader=yaml.CSafeLoader) if d is not None]
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            yield Problem(f"{name}:{mark.line + 1 if mark else 1}", f"not valid YAML: {getattr(exc, 'problem', exc)}")
            continue
        for document in documents:
            yield record(document, name)


def record(entry, name: str) -> Item:
    if not isinstance(entry, dict) or not isinstance(entry.get("Name"), str) or not entry["Name"].strip():
        return Problem(f"{name}:1", "a LOLBAS entry needs a Name")
    binary = entry["Name"].strip()
    aliases = [a.get("Alias") for a in entry.get("Aliases") or () if isinstance(a, dict)]
    names = dict.fromkeys(n.strip().lower() for n in (binary, *aliases) if isinstance(n, str) and n.strip())
    commands = [c for c in entry.get("Commands") or () if isinstance(c, dict)]
    paths = [p.get("Path") for p in entry.get("Full_Path") or () if isinstance(p, dict)]
    tags = [
        *(f"category:{c}" for c in sorted({str(c["Category"]) for c in commands if c.get("Category")})),
        *(f"attack:{m}" for m in sorted({str(c["MitreID"]) for c in commands if c.get("MitreID")})),
        *(f"path:{normalize_path(p)}" for p in paths if isinstance(p, str) and p.strip()),
    ]
    reference = GITHUB + name if name.count("/") == 1 else "https://lolbas-project.github.io/"
    return Record("dualUse", tuple(("fileName", n) for n in names), binary, str(entry.get("Description") or ""),
                  reference, tuple(tags))


def normalize_path(path: str) -> str:
    """A Windows path as compared here: lowercase, backslashes."""
    return str(PureWindowsPath(path.strip())).lower()


FORMAT = Format("lolbas", read, snapshot_version, "LOLBAS YAML (a folder of .yml files, or one file)")
