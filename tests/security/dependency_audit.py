"""Audit of installed distributions against the advisories that PyPI publishes.

The source: PyPI's JSON API, https://pypi.org/pypi/NAME/json, whose `vulnerabilities` are OSV's advisories
(the PyPA advisory database and GitHub's) that affect the project's newest release. It is the one vulnerability
database this machine and CI reach: api.osv.dev, OSV's bulk exports, GitHub, OSS Index and Safety's data are not
reachable, and the per-version endpoint that pip-audit's PyPI service asks (pypi.org/pypi/NAME/VERSION/json)
answers 404 through the registry proxy, so pip-audit reports every package as "not found" and passes.

What follows from "the newest release only": an installed version equal to the newest one is audited in full;
one behind it is not, and is a failure unless a requirement of an installed distribution holds it back (a pin
such as grpcio==1.85.1), in which case it is listed as held back and the advisories open at the newest release
still count against it. A fresh install (CI's) takes the newest releases, so everything else is audited.
"""

from __future__ import annotations

import concurrent.futures
import importlib.metadata as metadata
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

SOURCE = "https://pypi.org/pypi/{}/json"
SOURCE_NAME = "PyPI JSON API (OSV advisories: PyPA advisory database, GitHub advisories)"


class Unreachable(Exception):
    """The source did not answer (network error, time-out, server error): nothing could be audited."""


@dataclass
class Package:
    name: str
    installed: str
    newest: str = ""
    advisories: list[str] = field(default_factory=list)  # "ID (aliases) fixed in ..." of the newest release
    held_back_by: str = ""  # the requirement that keeps `installed` below `newest`
    missing: bool = False  # not on PyPI

    @property
    def audited(self) -> bool:
        return not self.missing and _same(self.installed, self.newest)


@dataclass
class Report:
    packages: list[Package]
    fetched_at: str  # the source's Date header: when the advisories were read (PyPI serves them live)

    @property
    def findings(self) -> list[str]:
        """Everything that fails the audit: advisories, and versions this source cannot vouch for."""
        out = []
        for p in self.packages:
            out += [f"{p.name} {p.installed}: {a}" for a in p.advisories]
            if p.missing:
                out.append(f"{p.name} {p.installed}: not on PyPI, so not audited")
            elif not p.audited and not p.held_back_by:
                out.append(f"{p.name} {p.installed}: not audited, the source covers only the newest release "
                           f"({p.newest}) and no requirement holds it back: upgrade it")
        return out

    def summary(self) -> str:
        audited = [p for p in self.packages if p.audited]
        held = [p for p in self.packages if p.held_back_by]
        text = (f"{len(self.packages)} packages, {len(audited)} audited at their newest release, "
                f"{len(held)} held back, {len(self.findings)} findings; source {SOURCE_NAME}, read {self.fetched_at}")
        if held:
            text += "; held back: " + ", ".join(f"{p.name} {p.installed} < {p.newest} ({p.held_back_by})" for p in held)
        return text


def runtime_dependencies(root: str = "epm") -> dict[str, str]:
    """name -> installed version of every distribution that `root` needs at run time (transitively, with the
    extras it asks for and the markers of this interpreter), `root` itself excluded."""
    seen: dict[str, set[str]] = {}
    todo = [(root, frozenset[str]())]
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        if key in seen and extras <= seen[key]:
            continue
        seen[key] = seen.get(key, set()) | extras
        for text in metadata.distribution(name).requires or []:
            req = Requirement(text)
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
                continue
            todo.append((req.name, frozenset(req.extras)))
    seen.pop(canonicalize_name(root))
    return {name: metadata.version(name) for name in sorted(seen)}


def audit(pins: dict[str, str], *, timeout: float = 30, workers: int = 8) -> Report:
    """Audits `pins` (name -> version). Raises Unreachable when the source does not answer."""
    holds = _holds()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        answers = list(pool.map(lambda name: _fetch(name, timeout), pins))
    packages, dates = [], []
    for (name, version), (document, date) in zip(pins.items(), answers, strict=True):
        package = Package(name, version)
        packages.append(package)
        if document is None:
            package.missing = True
            continue
        dates.append(date)
        package.newest = document["info"]["version"]
        package.advisories = [_describe(v) for v in document.get("vulnerabilities") or [] if not v.get("withdrawn")]
        if not package.audited:
            package.held_back_by = next((f"{who}: {req}" for who, req in holds.get(canonicalize_name(name), [])
                                         if not req.specifier.contains(package.newest, prereleases=True)), "")
    return Report(packages, max(dates, key=_http_date) if dates else "never")


def _fetch(name: str, timeout: float) -> tuple[dict | None, str]:
    """(the project's JSON document, the answer's Date header), or (None, "") when PyPI has no such project."""
    for attempt in range(3):
        try:
            with urllib.request.urlopen(SOURCE.format(name), timeout=timeout) as answer:
                return json.load(answer), answer.headers.get("Date", "")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None, ""
            if exc.code < 500:
                raise
            error: Exception = exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            error = exc
        time.sleep(1 + attempt)
    raise Unreachable(f"{SOURCE.format(name)}: {error}")


def _holds() -> dict[str, list[tuple[str, Requirement]]]:
    """name -> (installed distribution, its requirement on name), for every installed distribution."""
    out: dict[str, list[tuple[str, Requirement]]] = {}
    for dist in metadata.distributions():
        for text in dist.requires or []:
            try:
                req = Requirement(text)
            except ValueError:
                continue
            out.setdefault(canonicalize_name(req.name), []).append((dist.metadata["Name"], req))
    return out


def _describe(vulnerability: dict) -> str:
    aliases = ", ".join(vulnerability.get("aliases") or [])
    fixed = ", ".join(vulnerability.get("fixed_in") or []) or "no fixed release"
    return f"{vulnerability['id']}{f' ({aliases})' if aliases else ''}, fixed in: {fixed}"


def _same(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def _http_date(text: str) -> float:
    try:
        return parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError):
        return 0.0
