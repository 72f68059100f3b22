"""LOLDrivers (magicsword-io/LOLDrivers): one YAML file per vulnerable or malicious Windows driver, with its
known samples (file hashes and Authenticode hashes) and their signers.

Besides one record per sample, the leaf certificates that signed *malicious* samples become maliciousSigner
records, keyed by the certificate's TBS SHA-256, so another file signed with the same certificate stands out.
Microsoft's own certificates are left out: Microsoft signs drivers for every vendor, so they say nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import yaml

from . import Format, Item, Problem, Record, files, hex_digest, line_of, snapshot_version

LABELS = {"malicious": "malicious", "vulnerable driver": "vulnerableDriver"}
COMMON_NAME = re.compile(r"(?:^|,\s*)CN=(.*?)(?=,\s*[A-Za-z?.]+=|$)")
SITE = "https://www.loldrivers.io/drivers/{}/"


def read(path: Path) -> Iterator[Item]:
    for file, name in files(path, (".yaml", ".yml")):
        text = file.read_text(encoding="utf-8", errors="replace")
        try:
            driver = yaml.load(text, Loader=yaml.CSafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            yield Problem(f"{name}:{mark.line + 1 if mark else 1}", f"not valid YAML: {getattr(exc, 'problem', exc)}")
            continue
        yield from records(driver, name, text)


def records(driver, name: str, text: str) -> Iterator[Item]:
    if not isinstance(driver, dict):
        yield Problem(f"{name}:1", "a LOLDrivers entry must be a mapping")
        return
    category = str(driver.get("Category") or "").strip().lower()
    if category not in LABELS:
        yield Problem(f"{name}:{line_of(text, 'Category:')}", f"unknown Category {driver.get('Category')!r}")
        return
    label, reference = LABELS[category], SITE.format(driver.get("Id", ""))
    for sample in driver.get("KnownVulnerableSamples") or ():
        if not isinstance(sample, dict):
            continue
        keys, bad = _keys(sample)
        for value in bad:
            yield Problem(f"{name}:{line_of(text, value)}", f"not a valid hash: {value!r}")
        if not keys:
            if not bad:
                yield Problem(f"{name}:{line_of(text, 'KnownVulnerableSamples')}", "a sample without any hash")
            continue
        file_name = _text(sample.get("Filename")) or _text(sample.get("OriginalFilename")) or \
            next(iter(driver.get("Tags") or ()), "")
        title = _text(sample.get("Product")) or _text(sample.get("Description"))
        tags = tuple(f"{tag}:{value}" for tag, value in (
            ("company", _text(sample.get("Company"))), ("product", _text(sample.get("Product"))),
            ("originalFileName", _text(sample.get("OriginalFilename"))),
            ("loadsDespiteHVCI", _text(sample.get("LoadsDespiteHVCI")).lower()),
            ("verified", _text(driver.get("Verified")).lower())) if value)
        yield Record(label, keys, str(file_name), title, reference, tags)
        if label == "malicious":
            yield from _signers(sample, str(file_name), reference)


def _keys(sample: dict) -> tuple[tuple[tuple[str, str], ...], list[str]]:
    keys, bad = {}, []
    hashes = [(kind, sample.get(field)) for kind, field in (("sha256", "SHA256"), ("sha1", "SHA1"), ("md5", "MD5"))]
    authentihash = sample.get("Authentihash") if isinstance(sample.get("Authentihash"), dict) else {}
    hashes += [("authentihash", authentihash.get(field)) for field in ("SHA256", "SHA1", "MD5")]
    for kind, value in hashes:
        if value in (None, "", "-"):
            continue
        if (digest := hex_digest(value, kind)) is None:
            bad.append(str(value))
        else:
            keys[(kind, digest)] = None
    return tuple(keys), bad


def _signers(sample: dict, file_name: str, reference: str) -> Iterator[Record]:
    for signature in sample.get("Signatures") or ():
        if not isinstance(signature, dict):
            continue
        for cert in signature.get("Certificates") or ():
            if not isinstance(cert, dict) or not _signs_code(cert) or "o=microsoft" in _text(
                    cert.get("Subject")).lower():
                continue
            tbs = hex_digest((cert.get("TBS") or {}).get("SHA256") if isinstance(cert.get("TBS"), dict) else None,
                             "sha256")
            if tbs:
                serial = _text(cert.get("SerialNumber")).lower()
                yield Record("maliciousSigner", (("certificate", tbs),), _common_name(_text(cert.get("Subject"))),
                             f"signed the malicious driver {file_name}", reference,
                             (f"serial:{serial}",) if serial else ())


def _signs_code(cert: dict) -> bool:
    """A leaf code-signing certificate: not a CA (the data marks some with only one of its two CA flags), not a
    time-stamping one."""
    if kind := _text(cert.get("CertificateType")):
        return kind.startswith("Leaf")
    ca, authority, signs = (_text(cert.get(f)).lower() for f in ("IsCA", "IsCertificateAuthority", "IsCodeSigning"))
    return "true" not in (ca, authority) and signs != "false"


def _common_name(subject: str) -> str:
    """The CN of a subject such as "C=CN, O=Fabrikam, CN=Fabrikam Co., Ltd." (commas may sit inside a value)."""
    found = COMMON_NAME.search(subject)
    return found.group(1).strip() if found else subject


def _text(value) -> str:
    return value.strip() if isinstance(value, str) else ("" if value is None else str(value))


FORMAT = Format("loldrivers", read, snapshot_version, "LOLDrivers YAML (a folder of .yaml files, or one file)")
