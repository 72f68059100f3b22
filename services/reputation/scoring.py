"""Risk scoring: what the feeds, the tenant's rules and the tenant's history say about one file and one request,
turned into a verdict, a 0-100 risk score, the evidence and a summary a reviewer reads in ten seconds.
Pure: no I/O, and the clock is an argument.

The score starts at BASE (no data is not good news) and every signal adds its contribution (WEIGHTS; a
negative one lowers the risk). Then hard rules bound it whatever the sum, as the reference anchors say:
explicit tenant rules beat reputation (an allowed hash is at most 10, a blocked one 100), a known malicious
hash is at least 95, a vulnerable driver at least 85 and a dual-use binary at least 50 (never auto-approved).
The user's and the device's own risk scores (0-100, from their request and elevation history) add
USER_SHARE and DEVICE_SHARE of themselves.

verdict: malicious (known malicious or tenant-blocked) > suspicious (vulnerable driver, dual-use, a signer of
malicious drivers, or score >= 70) > clean (score <= 25) > unknown.
recommendation: deny (malicious, vulnerable driver, or score >= 80), approve (tenant-allowed, or clean with
no high user or device risk), else investigate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import PureWindowsPath

from .publishers import Certificate

BASE = 40
WEIGHTS = {
    "feed.malicious": 50, "feed.vulnerableDriver": 40, "feed.dualUse": 20, "feed.dualUse.category": 5,
    "feed.dualUse.relocated": 10, "feed.knownGood": -20,
    "publisher.trusted.certificate": -25, "publisher.trusted.name": -15, "publisher.signed": -5,
    "publisher.unsigned": 15, "publisher.selfSigned": 15, "publisher.expired": 5, "publisher.unreadable": 10,
    "publisher.maliciousSigner": 35,
    "prevalence.new": 5, "prevalence.common": -10, "path.userWritable": 10, "path.system": -5,
}
USER_SHARE, DEVICE_SHARE = 0.3, 0.2
FLOORS = {"malicious": 95, "vulnerableDriver": 85, "dualUse": 50}
RISKY_CATEGORIES = ("UAC Bypass", "AWL Bypass", "Credentials", "Dump")  # LOLBAS categories that raise the risk
HASH_KINDS = ("sha256", "sha1", "md5", "authentihash")
RULES = "publisherRules"
FEED_NAMES = {"loldrivers": "LOLDrivers", "lolbas": "LOLBAS", "malwarebazaar": "MalwareBazaar", "nsrl": "NIST NSRL",
              "nsrl-legacy": "NIST NSRL"}
ENVIRONMENT = {"%windir%": r"c:\windows", "%systemroot%": r"c:\windows", "%programfiles%": r"c:\program files",
               "%programfiles(x86)%": r"c:\program files (x86)", "%systemdrive%": "c:"}
USER_WRITABLE = ("\\users\\", "\\appdata\\", "\\temp\\", "\\downloads\\", "\\programdata\\", "%temp%", "%tmp%",
                 "%appdata%", "%localappdata%", "%userprofile%")


@dataclass(frozen=True)
class Match:
    """What one feed entry or tenant rule says about one of the file's keys."""

    feed: str
    feed_version: str
    own: bool          # the tenant's own data
    label: str         # knownGood, malicious, vulnerableDriver, dualUse, maliciousSigner, allowed, blocked
    kind: str          # what matched: sha256, sha1, md5, authentihash, fileName, certificate, publisherName
    name: str = ""
    title: str = ""
    reference: str = ""
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Counts:
    """A user's or a device's request history (HistoryCounts of the requests service)."""

    total: int = 0
    denied: int = 0
    revoked: int = 0
    malicious: int = 0
    last_day: int = 0
    distinct_users: int = 0


@dataclass(frozen=True)
class Activity:
    """What the elevation events say: about the file (prevalence) and about the device."""

    file_devices: int = 0
    file_users: int = 0
    file_elevations: int = 0
    file_first_seen: datetime | None = None  # None: never ran elevated here
    file_last_seen: datetime | None = None
    device_unmanaged: int = 0
    device_failed: int = 0


@dataclass(frozen=True)
class Facts:
    file_hash: str
    now: datetime
    file_name: str = ""
    file_path: str = ""
    publisher_name: str = ""
    certificate: Certificate | None = None
    certificate_problem: str = ""
    matches: tuple[Match, ...] = ()
    activity: Activity | None = None      # None: the events service did not answer
    user: Counts | None = None            # None: no user given (or the requests service did not answer)
    device: Counts | None = None


@dataclass(frozen=True)
class Evidence:
    signal: str
    source: str
    observed: str
    contribution: int
    reference: str = ""


@dataclass(frozen=True)
class Risk:
    score: int
    level: str  # none, low, medium, high
    factors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Analysis:
    app_reputation: str  # unknown, knownGood, knownMalicious, vulnerableDriver, dualUse
    sources: tuple[Match, ...]
    publisher_trust: str  # unknown, known, trusted, untrusted, blocked
    publisher_reasons: tuple[str, ...]
    user_risk: Risk | None
    device_risk: Risk | None
    verdict: str  # unknown, clean, suspicious, malicious
    risk_score: int
    recommendation: str  # approve, deny, investigate
    evidence: tuple[Evidence, ...] = field(default=())
    summary: str = ""


def analyze(facts: Facts) -> Analysis:
    hashed = [m for m in facts.matches if m.kind in HASH_KINDS and m.feed != RULES]
    allowed = [m for m in hashed if m.label == "allowed"]
    blocked = [m for m in hashed if m.label == "blocked"]
    found = {label: [m for m in hashed if m.label == label] for label in ("malicious", "vulnerableDriver", "knownGood")}
    found["malicious"] += blocked
    found["dualUse"] = [m for m in facts.matches if m.label == "dualUse" and m.kind == "fileName"]
    evidence: list[Evidence] = []

    if found["malicious"]:
        evidence.append(_feed_evidence("feed.malicious", found["malicious"], ("lists", "list"), "it as malicious"))
    if found["vulnerableDriver"]:
        evidence.append(_feed_evidence("feed.vulnerableDriver", found["vulnerableDriver"], ("lists", "list"),
                                       "it as a vulnerable driver"))
    if found["dualUse"]:
        evidence += _dual_use(found["dualUse"], facts)
    if found["knownGood"] and not (found["dualUse"] or found["malicious"]):
        evidence.append(_feed_evidence("feed.knownGood", found["knownGood"], ("catalogues", "catalogue"),
                                       "it as known software"))
    trust, reasons, publisher_evidence = _publisher(facts)
    evidence += publisher_evidence + _context(facts)
    user, device = user_risk(facts.user), device_risk(facts.device, facts.activity)
    for who, risk, share in (("user", user, USER_SHARE), ("device", device, DEVICE_SHARE)):
        if risk and (points := round(risk.score * share)):
            factors = f": {'; '.join(risk.factors)}" if risk.factors else ""
            evidence.append(Evidence(f"{who}.risk", "elevation requests",
                                     f"{who} risk {risk.level} ({risk.score}/100){factors}", points))

    allow_listed = bool(allowed) and not blocked  # the tenant's own list speaks for the file...
    explicit_allow = allow_listed and trust != "blocked"  # ...unless its own rules block the publisher
    score = BASE + sum(e.contribution for e in evidence)
    for label, floor in FLOORS.items():
        if found[label]:
            score = max(score, floor)
    if trust == "blocked" or blocked:
        score = 100
    elif explicit_allow:
        score = min(score, 10)
    score = max(0, min(100, score))
    reputation = "knownGood" if allow_listed else next(
        (name for name, label in (("knownMalicious", "malicious"), ("vulnerableDriver", "vulnerableDriver"),
                                  ("dualUse", "dualUse"), ("knownGood", "knownGood")) if found[label]), "unknown")
    signer = any(m.label == "maliciousSigner" for m in facts.matches)
    verdict = _verdict(found, trust, explicit_allow, signer, score)
    recommendation = _recommendation(verdict, found, explicit_allow, score, (user, device))
    evidence.sort(key=lambda e: -abs(e.contribution))
    sources = tuple(m for m in facts.matches if m.feed != RULES)
    analysis = Analysis(reputation, sources, trust, tuple(reasons), user, device, verdict, score, recommendation,
                        tuple(evidence))
    return replace(analysis, summary=summarize(analysis, facts, allow_listed))


# --- the parts ----------------------------------------------------------------------------------------------

def _verdict(found: dict, trust: str, explicit_allow: bool, signer: bool, score: int) -> str:
    if explicit_allow:
        return "clean" if score <= 25 else "unknown"
    if found["malicious"] or trust == "blocked":
        return "malicious"
    if found["vulnerableDriver"] or found["dualUse"] or signer or score >= 70:
        return "suspicious"
    return "clean" if score <= 25 else "unknown"


def _recommendation(verdict: str, found: dict, explicit_allow: bool, score: int, risks) -> str:
    if explicit_allow:
        return "approve"
    if verdict == "malicious" or found["vulnerableDriver"] or score >= 80:
        return "deny"
    if verdict == "clean" and not any(r and r.level == "high" for r in risks):
        return "approve"
    return "investigate"

def user_risk(counts: Counts | None) -> Risk | None:
    """A user's risk from their request history: denials, requests judged malicious, revocations, bursts."""
    if counts is None:
        return None
    parts = [
        (min(45, 15 * counts.denied), f"{counts.denied} denied request{'s' * (counts.denied != 1)}"),
        (min(60, 30 * counts.malicious), f"{counts.malicious} request{'s' * (counts.malicious != 1)} "
                                         "for malicious files"),
        (min(20, 10 * counts.revoked), f"{counts.revoked} revoked approval{'s' * (counts.revoked != 1)}"),
        (25 if counts.last_day > 10 else 10 if counts.last_day > 3 else 0, f"{counts.last_day} requests in 24 h"),
    ]
    return _risk(parts)


def device_risk(counts: Counts | None, activity: Activity | None) -> Risk | None:
    """A device's risk from the requests made on it and the elevations it ran."""
    if counts is None:
        return None
    activity = activity or Activity()
    parts = [
        (min(30, 10 * counts.denied), f"{counts.denied} denied request{'s' * (counts.denied != 1)} on it"),
        (min(60, 30 * counts.malicious), f"{counts.malicious} request{'s' * (counts.malicious != 1)} "
                                         "for malicious files on it"),
        (10 if counts.distinct_users >= 3 else 0, f"{counts.distinct_users} different users asked on it"),
        (10 if counts.last_day > 5 else 0, f"{counts.last_day} requests in 24 h"),
        (min(20, 2 * activity.device_unmanaged), f"{activity.device_unmanaged} unmanaged elevations"),
        (min(10, activity.device_failed), f"{activity.device_failed} failed elevations"),
    ]
    return _risk(parts)


def _risk(parts: list[tuple[int, str]]) -> Risk:
    score = min(100, sum(points for points, _ in parts))
    level = "high" if score >= 60 else "medium" if score >= 30 else "low" if score >= 10 else "none"
    return Risk(score, level, tuple(text for points, text in parts if points))


def _publisher(facts: Facts) -> tuple[str, list[str], list[Evidence]]:
    """Publisher trust, its reasons, and its evidence: tenant rules first, then what the data and the
    certificate say."""
    rules = [m for m in facts.matches if m.feed == RULES]
    cert, name = facts.certificate, facts.publisher_name.strip()
    who = cert.subject if cert else name
    if blocks := [m for m in rules if m.label == "blocked"]:
        reason = f"{who} is blocked by your publisher rules ({_rule(blocks[0])})"
        return "blocked", [reason], [Evidence("publisher.blocked", "tenant rules", reason, 0)]
    signers = [m for m in facts.matches if m.label == "maliciousSigner" and m.kind == "certificate"]
    if signers:
        drivers = sorted({m.title.removeprefix("signed the malicious driver ") for m in signers})
        reason = f"its certificate also signed {len(drivers)} known malicious driver{'s' * (len(drivers) != 1)}"
        return "untrusted", [reason], [Evidence("publisher.maliciousSigner", _source(signers),
                                                f"{reason}: {', '.join(drivers[:3])}",
                                                WEIGHTS["publisher.maliciousSigner"], signers[0].reference)]
    if trusts := [m for m in rules if m.label == "allowed"]:
        signal = "publisher.trusted.certificate" if trusts[0].kind == "certificate" else "publisher.trusted.name"
        reason = f"{who} is trusted by your publisher rules ({_rule(trusts[0])})"
        return "trusted", [reason], [Evidence(signal, "tenant rules", reason, WEIGHTS[signal])]
    if facts.certificate_problem:
        return "untrusted", [facts.certificate_problem], [Evidence(
            "publisher.unreadable", "publisherCert", facts.certificate_problem, WEIGHTS["publisher.unreadable"])]
    if cert and cert.self_signed:
        reason = f"the certificate of {cert.subject} is self-signed"
        return "untrusted", [reason], [Evidence("publisher.selfSigned", "publisherCert", reason,
                                                WEIGHTS["publisher.selfSigned"])]
    if cert or name:
        issued = f", issued by {cert.issuer}" if cert else ""
        evidence = [Evidence("publisher.signed", "publisherCert" if cert else "publisherName",
                             f"signed by {who}{issued}", WEIGHTS["publisher.signed"])]
        reasons = [f"signed by {who}"]
        if cert and cert.not_after < facts.now:
            expired = (f"the certificate expired on {cert.not_after:%Y-%m-%d} "
                       "(still valid if the signature was timestamped)")
            reasons.append(expired)
            evidence.append(Evidence("publisher.expired", "publisherCert", expired, WEIGHTS["publisher.expired"]))
        return "known", reasons, evidence
    return "unknown", ["unsigned: no publisher or certificate"], [
        Evidence("publisher.unsigned", "application detail", "no publisher and no certificate",
                 WEIGHTS["publisher.unsigned"])]


def _rule(match: Match) -> str:
    return f"{'certificate' if match.kind == 'certificate' else 'name'} rule" + (f" {match.name}" if match.name else "")


def _dual_use(matches: list[Match], facts: Facts) -> list[Evidence]:
    first = matches[0]
    categories = sorted({t.removeprefix("category:") for m in matches for t in m.tags if t.startswith("category:")})
    abused = ", ".join(categories) or "no category"
    evidence = [Evidence("feed.dualUse", _source(matches),
                         f"{first.name} is a dual-use binary attackers abuse ({abused})", WEIGHTS["feed.dualUse"],
                         first.reference)]
    risky = [c for c in categories if c in RISKY_CATEGORIES]
    if risky:
        evidence.append(Evidence("feed.dualUse.category", _source(matches), f"abused for {', '.join(risky)}",
                                 min(15, WEIGHTS["feed.dualUse.category"] * len(risky)), first.reference))
    documented = [_path_pattern(t.removeprefix("path:")) for m in matches for t in m.tags if t.startswith("path:")]
    where = full_path(facts.file_path, facts.file_name)
    if where and documented and not any(pattern.fullmatch(where) for pattern in documented):
        evidence.append(Evidence("feed.dualUse.relocated", _source(matches),
                                 f"runs from {where}, not from where Windows keeps it",
                                 WEIGHTS["feed.dualUse.relocated"]))
    return evidence


def _context(facts: Facts) -> list[Evidence]:
    evidence = []
    where = full_path(facts.file_path, facts.file_name)
    if where and any(marker in where for marker in USER_WRITABLE):
        evidence.append(Evidence("path.userWritable", "filePath", f"runs from a user-writable folder: {where}",
                                 WEIGHTS["path.userWritable"]))
    elif where.startswith(("c:\\windows\\", "c:\\program files")):
        evidence.append(Evidence("path.system", "filePath", f"runs from a protected folder: {where}",
                                 WEIGHTS["path.system"]))
    activity = facts.activity
    if activity is not None:
        first = activity.file_first_seen
        if first is None or facts.now - first < timedelta(days=1):
            seen = "never ran elevated in your organization before" if first is None else \
                f"first ran elevated in your organization on {first:%Y-%m-%d %H:%M} UTC"
            evidence.append(Evidence("prevalence.new", "elevation events", seen, WEIGHTS["prevalence.new"]))
        elif activity.file_devices >= 10 and facts.now - first >= timedelta(days=7):
            evidence.append(Evidence("prevalence.common", "elevation events",
                                     f"ran elevated on {activity.file_devices} devices since {first:%Y-%m-%d}",
                                     WEIGHTS["prevalence.common"]))
    return evidence


def _path_pattern(documented: str) -> re.Pattern:
    """A documented path as a pattern: LOLBAS writes placeholders such as <username> or <version>."""
    return re.compile(re.sub(r"<[^>]*>", lambda _: r"[^\\]+", re.escape(documented)))


def _feed_evidence(signal: str, matches: list[Match], verbs: tuple[str, str], rest: str) -> Evidence:
    first = matches[0]
    about = first.name + (f" ({first.title})" if first.title and first.title != first.name else "") \
        if first.name else first.title
    said = f"{_feeds(matches)} {_verb(matches, verbs)} {rest}" + (f": {about}" if about else "")
    return Evidence(signal, _source(matches), said, WEIGHTS.get(signal, 0), first.reference)


def _verb(matches: list[Match], verbs: tuple[str, str]) -> str:
    """The verb that agrees with _feeds(matches): one feed lists, two feeds list."""
    return verbs[" and " in _feeds(matches)]


def _feeds(matches: list[Match]) -> str:
    names = dict.fromkeys("your block list" if m.label == "blocked" else FEED_NAMES.get(m.feed, m.feed)
                          for m in matches)
    return " and ".join(names)


def _source(matches: list[Match]) -> str:
    return ", ".join(dict.fromkeys(f"{m.feed} {m.feed_version}".strip() for m in matches))


def full_path(path: str, name: str) -> str:
    """The file's full Windows path, lowercase, environment variables for system folders expanded; "" if unknown."""
    text = path.strip().lower()
    if not text:
        return ""
    for variable, value in ENVIRONMENT.items():
        text = text.replace(variable, value)
    if name and not text.endswith(name.strip().lower()):
        text = text.rstrip("\\") + "\\" + name.strip().lower()
    return str(PureWindowsPath(text)).lower()


# --- the summary --------------------------------------------------------------------------------------------

REPUTATION_TEXT = {
    "knownMalicious": "Known malicious: {feeds} {verb} it as malicious{about}.",
    "vulnerableDriver": "Vulnerable driver: {feeds} {verb} it{about}; attackers load such drivers to reach the "
                        "kernel.",
    "dualUse": "Dual-use binary: {name} is a legitimate Windows binary that attackers abuse, so it should not run "
               "elevated without a reason.",
    "knownGood": "Known software: {feeds} {verb} it{about}; catalogued is not a promise that it is benign.",
    "unknown": "Unknown file: no feed or rule knows this hash, which is neither good nor bad news.",
}
LABEL_OF = {"knownMalicious": ("malicious", "blocked"), "vulnerableDriver": ("vulnerableDriver",),
            "dualUse": ("dualUse",), "knownGood": ("knownGood",)}
DANGEROUS = ("malicious", "vulnerableDriver")


def summarize(analysis: Analysis, facts: Facts, allow_listed: bool) -> str:
    if allow_listed and analysis.publisher_trust == "blocked":
        sentences = ["On your organization's allow list, but your rules block its publisher, and the block wins."]
    elif allow_listed:
        sentences = ["Allowed by your organization's list, which takes precedence over reputation data."]
        if flagged := [m for m in analysis.sources if m.label in DANGEROUS]:
            sentences.append(f"Note that {_feeds(flagged)} {_verb(flagged, ('flags', 'flag'))} it as dangerous.")
    else:
        matches = [m for m in facts.matches if m.label in LABEL_OF.get(analysis.app_reputation, ())]
        first = matches[0] if matches else None
        about = (first.title or first.name) if first else ""
        sentences = [REPUTATION_TEXT[analysis.app_reputation].format(
            feeds=_feeds(matches), verb=_verb(matches, ("lists", "list")) if matches else "",
            about=f" ({about})" if about else "", name=first.name if first else "it")]
    sentences.append(_publisher_sentence(analysis))
    context = []
    if (activity := facts.activity) is not None:
        context.append("Never ran elevated here before" if activity.file_first_seen is None else
                       f"Ran elevated on {activity.file_devices} device{'s' * (activity.file_devices != 1)} "
                       f"here since {activity.file_first_seen:%Y-%m-%d}")
    risks = [f"{who} risk {risk.level}" for who, risk in (("user", analysis.user_risk),
                                                          ("device", analysis.device_risk)) if risk]
    if risks:
        context.append(", ".join(risks))
    if context:
        sentences.append("; ".join(context).capitalize() + ".")
    sentences.append(f"Risk {analysis.risk_score}/100: {analysis.recommendation}.")
    return " ".join(sentences)


def _publisher_sentence(analysis: Analysis) -> str:
    reason = analysis.publisher_reasons[0] if analysis.publisher_reasons else ""
    return {
        "blocked": f"Publisher blocked: {reason}.",
        "untrusted": f"Publisher untrusted: {reason}.",
        "trusted": f"Publisher trusted: {reason}.",
        "known": f"Publisher: {reason}.",
        "unknown": "Unsigned: no publisher or certificate.",
    }[analysis.publisher_trust].replace("..", ".")
