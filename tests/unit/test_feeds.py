"""The feed readers (services/reputation/feeds): the real LOLBAS and LOLDrivers data checked against counts worked
out here from the YAML, and MalwareBazaar, NSRL (RDSv3 and legacy) and hash lists written the way their
publishers ship them, including the broken lines a reader must report with their place and skip."""

from __future__ import annotations

import multiprocessing
import re
import sqlite3
import zipfile
from concurrent.futures import ProcessPoolExecutor
from functools import cache
from pathlib import Path

import pytest
import yaml

from services.reputation.feeds import Problem, Record, csv_fields, formats, hex_digest
from services.reputation.feeds.nsrl import ABOUT
from tests import feed_data

SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
SHA1 = "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"
MD5 = "098f6bcd4621d373cade4e832627b4f6"
LOLBAS_GITHUB = "https://github.com/LOLBAS-Project/LOLBAS/blob/master/yml/"


def read(name: str, path: Path) -> list:
    return list(formats()[name].read(path))


def records(items: list) -> list[Record]:
    return [i for i in items if isinstance(i, Record)]


def problems(items: list) -> list[Problem]:
    return [i for i in items if isinstance(i, Problem)]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_the_formats():
    assert set(formats()) == {"lolbas", "loldrivers", "malwarebazaar", "nsrl", "nsrl-legacy", "hashlist"}
    assert all(name == fmt.name and fmt.description for name, fmt in formats().items())


@pytest.mark.parametrize(("value", "kind", "expected"), [
    (SHA256.upper(), None, SHA256), (f"  {SHA1}\n", "sha1", SHA1), (MD5, "md5", MD5), (SHA1, "authentihash", SHA1),
    (SHA1, "sha256", None), ("z" * 64, None, None), ("ab" * 10, None, None), ("", None, None), (None, None, None),
    (12345, None, None),
])
def test_hex_digest(value, kind, expected):
    assert hex_digest(value, kind) == expected


def test_csv_fields_with_and_without_a_space_after_the_comma():
    assert csv_fields('"a", "b, c", n/a,d') == ["a", "b, c", "n/a", "d"]
    assert csv_fields("") == []


# --- LOLBAS, the real data ----------------------------------------------------------------------------------

@cache
def lolbas_items() -> tuple:
    return tuple(read("lolbas", feed_data.lolbas()))


@cache
def lolbas_yaml() -> dict[str, dict]:
    """relative path -> the YAML document, as PyYAML reads it here."""
    folder = feed_data.lolbas()
    return {p.relative_to(folder).as_posix(): yaml.load(p.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
            for p in sorted(folder.rglob("*.yml"))}


def lolbas_by_file() -> dict[str, Record]:
    return {r.reference.removeprefix(LOLBAS_GITHUB): r for r in records(list(lolbas_items()))}


def test_lolbas_gives_one_dual_use_record_per_yml_file_and_no_problems():
    files = sorted(feed_data.lolbas().rglob("*.yml"))
    assert len(files) > 200
    items = lolbas_items()
    assert problems(list(items)) == []
    assert len(items) == len(files)
    assert {r.label for r in items} == {"dualUse"}
    assert set(lolbas_by_file()) == {f.relative_to(feed_data.lolbas()).as_posix() for f in files}


def test_lolbas_records_are_found_by_their_lowercase_names_and_aliases():
    by_file = lolbas_by_file()
    for path, document in lolbas_yaml().items():
        names = [document["Name"]] + [a["Alias"] for a in document.get("Aliases") or ()]
        expected = list(dict.fromkeys(n.strip().lower() for n in names))
        assert by_file[path].keys == tuple(("fileName", n) for n in expected), path
        assert by_file[path].name == document["Name"]
        assert by_file[path].title == document["Description"]
    assert by_file["OtherMSBinaries/Procdump.yml"].keys == (("fileName", "procdump.exe"),
                                                           ("fileName", "procdump64.exe"))
    assert by_file["OtherMSBinaries/Dsdbutil.yml"].keys == (("fileName", "dsdbutil.exe"),)  # alias differs by case


def test_lolbas_tags_are_categories_attack_ids_and_documented_paths():
    at = lolbas_by_file()["OSBinaries/At.yml"]
    assert at.tags == ("category:Execute", "attack:T1053.002", r"path:c:\windows\system32\at.exe",
                       r"path:c:\windows\syswow64\at.exe")
    for path, document in lolbas_yaml().items():
        tags = lolbas_by_file()[path].tags
        commands = document.get("Commands") or ()
        assert {t for t in tags if t.startswith("category:")} == {f"category:{c['Category']}" for c in commands}
        assert {t for t in tags if t.startswith("attack:")} == {f"attack:{c['MitreID']}" for c in commands
                                                                if c.get("MitreID")}
        paths = [t.removeprefix("path:") for t in tags if t.startswith("path:")]
        assert paths == [p["Path"].strip().lower().replace("/", "\\") for p in document.get("Full_Path") or ()
                         if p.get("Path")], path
        assert all(t.split(":", 1)[0] in ("category", "attack", "path") for t in tags)


def test_lolbas_references_point_at_the_file_on_github():
    assert lolbas_by_file()["OSBinaries/At.yml"].reference == \
        "https://github.com/LOLBAS-Project/LOLBAS/blob/master/yml/OSBinaries/At.yml"
    assert all(r.reference.startswith(LOLBAS_GITHUB) for r in lolbas_items())


def test_lolbas_source_version_is_the_snapshot_date():
    version = formats()["lolbas"].source_version(feed_data.lolbas())
    assert version == (feed_data.lolbas().parent / "SNAPSHOT").read_text().split()[-1]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", version)


# --- LOLBAS, malformed ----------------------------------------------------------------------------------------

GOOD_LOLBAS = """\
Name: Good.exe
Description: A good binary
Commands:
  - Command: good.exe /run
    Category: UAC Bypass
    MitreID: T1548.002
Full_Path:
  - Path: C:\\Windows\\System32\\Good.exe
"""


def test_a_lolbas_syntax_error_is_a_problem_at_its_line_and_the_rest_still_reads(tmp_path):
    write(tmp_path / "Good.yml", GOOD_LOLBAS)
    write(tmp_path / "Broken.yml", "Name: Broken.exe\nAuthor: someone\nDescription: runs: things\n")
    write(tmp_path / "Nameless.yml", "Description: no name\nCommands: []\n")
    write(tmp_path / "notes.txt", "not a feed file")
    items = read("lolbas", tmp_path)
    assert problems(items) == [
        Problem("Broken.yml:3", "not valid YAML: mapping values are not allowed in this context"),
        Problem("Nameless.yml:1", "a LOLBAS entry needs a Name"),
    ]
    assert records(items) == [Record("dualUse", (("fileName", "good.exe"),), "Good.exe", "A good binary",
                                     "https://lolbas-project.github.io/",
                                     ("category:UAC Bypass", "attack:T1548.002", r"path:c:\windows\system32\good.exe"))]


def test_a_lolbas_entry_with_a_blank_name_is_a_problem(tmp_path):
    items = read("lolbas", write(tmp_path / "Blank.yml", "Name: '  '\n"))
    assert items == [Problem("Blank.yml:1", "a LOLBAS entry needs a Name")]


# --- LOLDrivers, the real data -----------------------------------------------------------------------------

FILE_HASHES = {"SHA256": 64, "SHA1": 40, "MD5": 32}


def _is_hash(value, lengths) -> bool:
    return isinstance(value, str) and bool(re.fullmatch(r"[0-9a-fA-F]+", value.strip())) and \
        len(value.strip()) in lengths


def _loldrivers_facts(folder: str) -> dict:
    """What the real LOLDrivers YAML says, worked out independently of the reader (run in a second process; the
    base loader reads every scalar as text, which is all this needs, and is the quickest)."""
    facts = {"files": 0, "samples": {}, "with_file_hash": {}, "with_authentihash": 0, "sha256": set(), "ids": {},
             "leaves": set(), "authorities": {}, "microsoft": set(), "vulnerable_tbs": set()}
    for path in sorted(Path(folder).glob("*.yaml")):
        driver = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CBaseLoader)
        facts["files"] += 1
        category = driver["Category"].strip().lower()
        facts["ids"][driver["Id"]] = category
        for sample in driver.get("KnownVulnerableSamples") or ():
            file_hash = any(_is_hash(sample.get(f), (n,)) for f, n in FILE_HASHES.items())
            authentihash = sample.get("Authentihash") or {}
            auth = any(_is_hash(authentihash.get(f), (32, 40, 64)) for f in FILE_HASHES)
            if not (file_hash or auth):
                continue
            facts["samples"][category] = facts["samples"].get(category, 0) + 1
            facts["with_file_hash"][category] = facts["with_file_hash"].get(category, 0) + file_hash
            facts["with_authentihash"] += auth
            if _is_hash(sample.get("SHA256"), (64,)):
                facts["sha256"].add(sample["SHA256"].strip().lower())
            for signature in sample.get("Signatures") or ():
                for cert in (signature.get("Certificates") or ()) if isinstance(signature, dict) else ():
                    tbs = (cert.get("TBS") or {}).get("SHA256")
                    if not _is_hash(tbs, (64,)):
                        continue
                    tbs, subject = tbs.lower(), str(cert.get("Subject"))
                    # the signer is the leaf code-signing certificate: LOLDrivers' CertificateType says which
                    # (a CA by either flag, or a time-stamping "Intermediate", is not)
                    flags = {str(cert.get(k)).lower() for k in ("IsCertificateAuthority", "IsCA")}
                    kind = str(cert.get("CertificateType") or "")
                    authority = "true" in flags and not kind.startswith("Leaf")
                    leaf = kind.startswith("Leaf") if kind else not authority
                    if category != "malicious":
                        facts["vulnerable_tbs"] |= {tbs} if leaf else set()
                    elif "O=Microsoft" in subject:
                        facts["microsoft"].add(tbs)
                    elif leaf:
                        facts["leaves"].add(tbs)
                    elif authority:
                        facts["authorities"][tbs] = subject
    return facts


@pytest.fixture(scope="module")
def loldrivers() -> tuple[list, dict]:
    """(the reader's items, the independent facts): each parse of the ~4 s of YAML once, side by side."""
    folder = feed_data.loldrivers()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        expected = pool.submit(_loldrivers_facts, str(folder))
        items = read("loldrivers", folder)
        return items, expected.result()


def driver_records(items: list) -> list[Record]:
    return [r for r in records(items) if r.label in ("malicious", "vulnerableDriver")]


def test_loldrivers_reads_without_problems(loldrivers):
    items, facts = loldrivers
    assert facts["files"] == len(list(feed_data.loldrivers().glob("*.yaml"))) > 500
    assert problems(items) == []
    assert {r.label for r in records(items)} == {"malicious", "vulnerableDriver", "maliciousSigner"}


def test_loldrivers_gives_one_record_per_sample_with_a_hash(loldrivers):
    items, facts = loldrivers
    found = driver_records(items)
    assert len(found) == sum(facts["samples"].values())
    assert sum(r.label == "malicious" for r in found) == facts["samples"]["malicious"]
    assert sum(r.label == "vulnerableDriver" for r in found) == facts["samples"]["vulnerable driver"]
    with_file_hash = [r for r in found if any(kind in ("sha256", "sha1", "md5") for kind, _ in r.keys)]
    assert len(with_file_hash) == sum(facts["with_file_hash"].values())
    assert {key for r in found for kind, key in r.keys if kind == "sha256"} == facts["sha256"]


def test_loldrivers_labels_follow_the_category_and_references_name_the_driver(loldrivers):
    items, facts = loldrivers
    labels = {"malicious": "malicious", "vulnerable driver": "vulnerableDriver"}
    for record in driver_records(items):
        driver_id = record.reference.removeprefix("https://www.loldrivers.io/drivers/").rstrip("/")
        assert record.label == labels[facts["ids"][driver_id]], record


def test_loldrivers_keys_include_authentihashes(loldrivers):
    items, facts = loldrivers
    found = driver_records(items)
    assert sum(any(k == "authentihash" for k, _ in r.keys) for r in found) == facts["with_authentihash"] > 1000
    poortry = next(r for r in found if ("sha256", "090d409f86430e078694e621ad0bd5e458d32aa727f0eb99bda3961577df8d49")
                   in r.keys)
    assert poortry == Record(
        "malicious",
        (("sha256", "090d409f86430e078694e621ad0bd5e458d32aa727f0eb99bda3961577df8d49"),
         ("sha1", "e9bca8f4b8c60688eacc7d18c6ba7777c181bb84"), ("md5", "41046ce853788277da0d7e8c4e0a3123"),
         ("authentihash", "77cb09dc2fc3c56f3b12ad03a85cedbe3a8e0bb876dadfd76a1fb6c57602817b"),
         ("authentihash", "f27d87a335c87654ebbbde16d41645be85f0424a"),
         ("authentihash", "7ca020674114f5f8aad94c9cc61dccb4")),
        "RWTKrl.sys", "RansomwareTerminator", "https://www.loldrivers.io/drivers/00561455-9da1-4f0c-8564-e4c99b716a74/",
        ("company:Pinchins Technology Co.,Ltd.", "product:RansomwareTerminator", "originalFileName:RWTKrl.sys",
         "loadsDespiteHVCI:true", "verified:true"))


def test_loldrivers_malicious_signers_come_only_from_malicious_drivers_and_never_from_microsoft(loldrivers):
    items, facts = loldrivers
    signers = [r for r in records(items) if r.label == "maliciousSigner"]
    keys = {key for r in signers for _, key in r.keys}
    assert all(r.keys[0][0] == "certificate" and len(r.keys) == 1 for r in signers)
    assert all(facts["ids"][r.reference.split("/")[-2]] == "malicious" for r in signers)
    assert all(r.title.startswith("signed the malicious driver ") for r in signers)
    assert keys == facts["leaves"]  # every leaf that signed one, and nothing else
    assert facts["microsoft"] and not facts["microsoft"] & keys
    assert not any(r.name.startswith("Microsoft") for r in signers)
    # certificates seen only on vulnerable (not malicious) drivers do not become signers
    only_vulnerable = facts["vulnerable_tbs"] - facts["leaves"] - set(facts["authorities"])
    assert only_vulnerable and not only_vulnerable & keys


def test_loldrivers_certificate_authorities_are_not_malicious_signers(loldrivers):
    """BUG: loldrivers._is_ca reads `IsCA` first and `IsCertificateAuthority` only when IsCA is absent. The real
    data marks intermediate certificates IsCA: false, IsCertificateAuthority: true (e.g. the cross-signed
    "C=BE, O=GlobalSign nv,sa, OU=Root CA, CN=GlobalSign Root CA" in 080a834f-...yaml, line 223), so such CA
    certificates become maliciousSigner records (GlobalSign Root CA: 150 of them; also "WoSign Time Stamping
    Services CA"). The servicer looks up every certificate of a file's chain by TBS, so any file whose chain has
    that CA would be "signed by a signer of malicious drivers" (+35, suspicious)."""
    items, facts = loldrivers
    keys = {key for r in records(items) if r.label == "maliciousSigner" for _, key in r.keys}
    assert {facts["authorities"][k] for k in keys & set(facts["authorities"])} == set()


def test_loldrivers_source_version_is_the_snapshot_date():
    folder = feed_data.loldrivers()
    version = formats()["loldrivers"].source_version(folder)
    assert version == (folder.parent / "SNAPSHOT").read_text().split()[-1] == feed_data.snapshot(folder)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", version)


# --- LOLDrivers, written here ---------------------------------------------------------------------------------

def driver_yaml(category: str = "malicious", *, sha256: str = SHA256, subject: str = "CN=Shady Ltd",
                tbs: str = "ab" * 32) -> str:
    return f"""\
Id: 11111111-2222-3333-4444-555555555555
Tags:
- shady.sys
Verified: 'TRUE'
Category: {category}
KnownVulnerableSamples:
- Filename: ''
  MD5: {MD5}
  SHA256: {sha256}
  Company: Shady Ltd
  Product: Shady Driver
  Signatures:
  - Certificates:
    - Subject: {subject}
      IsCertificateAuthority: false
      SerialNumber: 0A1B2C
      TBS:
        SHA256: {tbs}
    - Subject: CN=Shady Root CA
      IsCertificateAuthority: true
      TBS:
        SHA256: {"cd" * 32}
"""


def test_a_driver_written_here_reads_with_its_signer(tmp_path):
    items = read("loldrivers", write(tmp_path / "shady.yaml", driver_yaml()))
    reference = "https://www.loldrivers.io/drivers/11111111-2222-3333-4444-555555555555/"
    assert items == [
        Record("malicious", (("sha256", SHA256), ("md5", MD5)), "shady.sys", "Shady Driver", reference,
               ("company:Shady Ltd", "product:Shady Driver", "verified:true")),
        Record("maliciousSigner", (("certificate", "ab" * 32),), "Shady Ltd",
               "signed the malicious driver shady.sys", reference, ("serial:0a1b2c",)),
    ]


def test_a_signer_without_a_serial_number_has_no_empty_serial_tag(tmp_path):
    """BUG (minor): loldrivers._signers always adds f"serial:{...}", so a certificate without SerialNumber (15 in
    the real data) gets the empty tag "serial:"; every other tag of the readers is left out when it has no value."""
    text = driver_yaml().replace("      SerialNumber: 0A1B2C\n", "")
    signers = [r for r in read("loldrivers", write(tmp_path / "s.yaml", text)) if r.label == "maliciousSigner"]
    assert [r.tags for r in signers] == [()]


def test_a_vulnerable_driver_has_no_signer_records(tmp_path):
    items = read("loldrivers", write(tmp_path / "v.yaml", driver_yaml("vulnerable driver")))
    assert [r.label for r in items] == ["vulnerableDriver"]


def test_a_microsoft_signer_is_left_out(tmp_path):
    subject = "C=US, ST=Washington, L=Redmond, O=Microsoft Corporation, CN=Microsoft Windows Hardware Compatibility " \
              "Publisher"
    items = read("loldrivers", write(tmp_path / "m.yaml", driver_yaml(subject=subject)))
    assert [r.label for r in items] == ["malicious"]


def test_a_signer_is_named_by_the_whole_common_name(tmp_path):
    """BUG: loldrivers._common_name splits the subject on ", " and so cuts a common name that contains ", "
    (most company names: "Co., Ltd.") to its first part. The real data has such signers, e.g. the subject
    "C=CN, ..., O=Shenzhen Jinxian Technology Co., Ltd., ..., CN=Shenzhen Jinxian Technology Co., Ltd." becomes a
    maliciousSigner named "Shenzhen Jinxian Technology Co." instead of "Shenzhen Jinxian Technology Co., Ltd."."""
    subject = "C=CN, ST=Guangdong, L=Shenzhen, O=Shenzhen Jinxian Technology Co., Ltd., OU=Digital ID Class 3 , " \
              "Microsoft Software Validation v2, CN=Shenzhen Jinxian Technology Co., Ltd."
    items = read("loldrivers", write(tmp_path / "j.yaml", driver_yaml(subject=f'"{subject}"')))
    assert [r.name for r in items if r.label == "maliciousSigner"] == ["Shenzhen Jinxian Technology Co., Ltd."]


def test_a_loldrivers_syntax_error_is_a_problem_at_its_line_and_the_rest_still_reads(tmp_path):
    write(tmp_path / "good.yaml", driver_yaml())
    write(tmp_path / "broken.yaml", "Id: x\nCategory: malicious\nKnownVulnerableSamples:\n- MD5: a: b\n")
    items = read("loldrivers", tmp_path)
    assert problems(items) == [Problem("broken.yaml:4", "not valid YAML: mapping values are not allowed in this "
                                                        "context")]
    assert [r.label for r in records(items)] == ["malicious", "maliciousSigner"]


def test_an_invalid_hash_is_reported_at_its_line_and_the_valid_hashes_still_count(tmp_path):
    text = driver_yaml(sha256="not-a-sha256-at-all")
    assert text.splitlines()[8] == "  SHA256: not-a-sha256-at-all"  # line 9
    items = read("loldrivers", write(tmp_path / "bad.yaml", text))
    assert problems(items) == [Problem("bad.yaml:9", "not a valid hash: 'not-a-sha256-at-all'")]
    assert records(items)[0].keys == (("md5", MD5),)


def test_a_hash_of_the_wrong_kind_is_invalid(tmp_path):
    items = read("loldrivers", write(tmp_path / "bad.yaml", driver_yaml(sha256=SHA1)))
    assert problems(items) == [Problem("bad.yaml:9", f"not a valid hash: '{SHA1}'")]


def test_loldrivers_entries_that_cannot_be_read(tmp_path):
    write(tmp_path / "a_list.yaml", "- just\n- a list\n")
    write(tmp_path / "b_category.yaml", "Id: x\nTags: []\nCategory: harmless\n")
    write(tmp_path / "c_nohash.yaml", "Id: x\nCategory: malicious\nKnownVulnerableSamples:\n- Filename: x.sys\n")
    assert read("loldrivers", tmp_path) == [
        Problem("a_list.yaml:1", "a LOLDrivers entry must be a mapping"),
        Problem("b_category.yaml:3", "unknown Category 'harmless'"),
        Problem("c_nohash.yaml:3", "a sample without any hash"),
    ]


def test_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read("loldrivers", tmp_path / "nowhere")


# --- MalwareBazaar ----------------------------------------------------------------------------------------

BAZAAR_HEADER = ('# "first_seen_utc","sha256_hash","md5_hash","sha1_hash","reporter","file_name","file_type_guess",'
                 '"mime_type","signature","clamav","vtpercent","imphash","ssdeep","tlsh"')
OTHER_SHA256 = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"


def bazaar_row(first_seen: str, sha256: str, md5: str, sha1: str, file_name: str, file_type: str,
               signature: str) -> str:
    fields = [first_seen, sha256, md5, sha1, "abuse_ch", file_name, file_type, "application/x-dosexec", signature,
              "n/a", "n/a", "f34d5f2d4577ed6d9ceec516c1f5a744", "1536:Zk3hOmbyd:Zk3hOmbyd", "T1A2B3C4D5"]
    return ", ".join(f'"{f}"' for f in fields)


BAZAAR = "\n".join([
    "################################################################",
    "# MalwareBazaar full malware samples dump (CSV)                #",
    "# Last updated: 2026-11-30 08:05:01 UTC                        #",
    "#                                                              #",
    "# Terms Of Use: https://bazaar.abuse.ch/faq/#tos               #",
    "# For questions please contact bazaar [at] abuse.ch            #",
    "################################################################",
    "#",
    BAZAAR_HEADER,
    bazaar_row("2026-11-30 07:59:02", SHA256, MD5, SHA1, "invoice, march.exe", "exe", "AgentTesla"),  # line 10
    bazaar_row("2026-11-30 07:58:40", "0d" * 31, MD5, SHA1, "broken.exe", "exe", "Formbook"),        # line 11
    "",
    bazaar_row("2026-11-29 23:01:13", OTHER_SHA256, "n/a", SHA1, "payload.bin", "n/a", "n/a"),       # line 13
    "# END OF FILE",
]) + "\n"

BAZAAR_RECORDS = [
    Record("malicious", (("sha256", SHA256), ("sha1", SHA1), ("md5", MD5)), "invoice, march.exe", "AgentTesla",
           f"https://bazaar.abuse.ch/sample/{SHA256}/",
           ("fileType:exe", "firstSeen:2026-11-30 07:59:02", "reporter:abuse_ch")),
    Record("malicious", (("sha256", OTHER_SHA256), ("sha1", SHA1)), "payload.bin", "malware sample",
           f"https://bazaar.abuse.ch/sample/{OTHER_SHA256}/", ("firstSeen:2026-11-29 23:01:13", "reporter:abuse_ch")),
]


def test_a_malwarebazaar_export_reads_and_a_bad_row_is_a_problem_at_its_line(tmp_path):
    items = read("malwarebazaar", write(tmp_path / "full.csv", BAZAAR))
    assert problems(items) == [Problem("full.csv:11", f"sha256_hash is not a SHA-256 digest: '{'0d' * 31}'")]
    assert records(items) == BAZAAR_RECORDS
    assert formats()["malwarebazaar"].source_version(tmp_path / "full.csv") == ""


def test_a_zipped_malwarebazaar_export_reads_the_same(tmp_path):
    archive = tmp_path / "full.csv.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("full.csv", BAZAAR)
    assert read("malwarebazaar", archive) == read("malwarebazaar", write(tmp_path / "full.csv", BAZAAR))


def test_malwarebazaar_with_windows_line_ends_reads_the_same(tmp_path):
    (tmp_path / "full.csv").write_bytes(BAZAAR.replace("\n", "\r\n").encode())
    items = read("malwarebazaar", tmp_path / "full.csv")
    assert records(items) == BAZAAR_RECORDS and [p.location for p in problems(items)] == ["full.csv:11"]


def test_malwarebazaar_columns_follow_the_header_and_default_to_the_documented_order(tmp_path):
    reordered = '# "sha256_hash","signature","file_name"\n' f'"{SHA256}", "Emotet", "a.doc"\n'
    assert read("malwarebazaar", write(tmp_path / "r.csv", reordered)) == [
        Record("malicious", (("sha256", SHA256),), "a.doc", "Emotet", f"https://bazaar.abuse.ch/sample/{SHA256}/")]
    headerless = bazaar_row("2026-11-30 07:59:02", SHA256, MD5, SHA1, "invoice, march.exe", "exe", "AgentTesla")
    assert read("malwarebazaar", write(tmp_path / "h.csv", headerless + "\n")) == BAZAAR_RECORDS[:1]


# --- NSRL RDSv3 -------------------------------------------------------------------------------------------

RDS_SCHEMA = """
CREATE TABLE FILE (sha256 VARCHAR NOT NULL, sha1 VARCHAR NOT NULL, md5 VARCHAR NOT NULL, crc32 VARCHAR NOT NULL,
                   file_name VARCHAR NOT NULL, file_size INTEGER NOT NULL, package_id INTEGER NOT NULL);
CREATE TABLE PKG (package_id INTEGER NOT NULL, name VARCHAR NOT NULL, version VARCHAR NOT NULL,
                  operating_system_id INTEGER NOT NULL, manufacturer_id INTEGER NOT NULL, language VARCHAR NOT NULL,
                  application_type VARCHAR NOT NULL);
CREATE TABLE MFG (manufacturer_id INTEGER NOT NULL, name VARCHAR NOT NULL);
CREATE TABLE OS (operating_system_id INTEGER NOT NULL, name VARCHAR NOT NULL, version VARCHAR NOT NULL,
                 manufacturer_id INTEGER NOT NULL);
CREATE TABLE VERSION (version VARCHAR UNIQUE NOT NULL, build_set VARCHAR NOT NULL, build_date TIMESTAMP NOT NULL,
                      release_date TIMESTAMP NOT NULL, description VARCHAR NOT NULL);
"""


def rds(path: Path) -> Path:
    database = sqlite3.connect(path)
    database.executescript(RDS_SCHEMA)
    database.executemany("INSERT INTO MFG VALUES (?, ?)", [(1, "Microsoft Corporation"), (2, "Mozilla")])
    database.execute("INSERT INTO OS VALUES (1, 'Windows', '11', 1)")
    database.executemany("INSERT INTO PKG VALUES (?, ?, ?, ?, ?, ?, ?)", [
        (10, "Windows 11", "10.0.22621", 1, 1, "English", "Operating System"),
        (20, "Firefox", "128.0", 1, 2, "English", "Browser"),
        (30, "Orphan Tool", "", 1, 99, "English", "Utility"),  # its manufacturer is not in MFG
    ])
    database.executemany("INSERT INTO FILE VALUES (?, ?, ?, ?, ?, ?, ?)", [
        (SHA256.upper(), SHA1.upper(), MD5.upper(), "EBD105A0", "notepad.exe", 201216, 10),
        (OTHER_SHA256.upper(), "", "", "7A5407CA", "firefox.exe", 655000, 20),
        ("N/A", "NOT A HASH", "", "00000000", "broken.dll", 1, 10),
        (OTHER_SHA256.upper(), SHA1.upper(), MD5.upper(), "11111111", "orphan.exe", 2, 30),
        (SHA256.upper(), SHA1.upper(), MD5.upper(), "22222222", "lost.exe", 3, 77),  # no such package
    ])
    database.execute("INSERT INTO VERSION VALUES ('2025.03.1', 'modern', '2025-03-01 00:00:00', '2025-03-15', "
                     "'RDSv3 modern minimal')")
    database.commit()
    database.close()
    return path


def test_an_rdsv3_database_gives_known_good_records_with_product_and_manufacturer(tmp_path):
    items = read("nsrl", rds(tmp_path / "RDS_2025.03.1_modern_minimal.db"))
    all_keys = (("sha256", SHA256), ("sha1", SHA1), ("md5", MD5))
    assert items == [
        Record("knownGood", all_keys, "notepad.exe", "Windows 11 10.0.22621", ABOUT,
               ("product:Windows 11", "manufacturer:Microsoft Corporation")),
        Record("knownGood", (("sha256", OTHER_SHA256),), "firefox.exe", "Firefox 128.0", ABOUT,
               ("product:Firefox", "manufacturer:Mozilla")),
        Problem("RDS_2025.03.1_modern_minimal.db:FILE row 3", "no valid SHA-256, SHA-1 or MD5"),
        Record("knownGood", (("sha256", OTHER_SHA256), ("sha1", SHA1), ("md5", MD5)), "orphan.exe", "Orphan Tool",
               ABOUT, ("product:Orphan Tool",)),
        Record("knownGood", all_keys, "lost.exe", "", ABOUT, ()),
    ]
    assert all(key == key.lower() for r in records(items) for _, key in r.keys)


def test_the_rdsv3_source_version_is_the_version_table(tmp_path):
    assert formats()["nsrl"].source_version(rds(tmp_path / "rds.db")) == "2025.03.1"


def test_a_file_that_is_not_an_rdsv3_database_is_a_value_error(tmp_path):
    text = write(tmp_path / "NSRLFile.txt", '"SHA-1","MD5"\n')
    other = tmp_path / "other.db"
    sqlite3.connect(other).executescript("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
    for path in (text, other, write(tmp_path / "empty.db", "")):
        with pytest.raises(ValueError, match="is not an NSRL RDSv3 database"):
            read("nsrl", path)
    with pytest.raises(FileNotFoundError):
        read("nsrl", tmp_path / "missing.db")


# --- NSRL legacy (RDSv2 NSRLFile.txt) -----------------------------------------------------------------------

LEGACY = "\r\n".join([
    '"SHA-1","MD5","CRC32","FileName","FileSize","ProductCode","OpSystemCode","SpecialCode"',
    '"000000206738748EDD92C4E3D2E823896700F849","392126E756571EBF112CB1C1CDEDF926","EBD105A0","I05002T2.PFB",4109,'
    '1,"WIN",""',
    '"00000079FD7AAC9B2F9C988C50750E1F50B27EB5","8ED4B4ED952526D89899E723F3488DE4","7A5407CA","readme, first.txt",'
    '2520,190,"WIN",""',
    '"NOT-A-SHA1","NOT-AN-MD5","00000000","bad.txt",1,1,"WIN",""',
    '"00000142988AFA836117B1B572FAE4713F200567","",,"short.txt"',
    '"0000037A3D3A0B0E9D3D7C2D8B5F6A1E2C3B4D5E","","AA","nomd5.dll",1,"","WIN",""',
]) + "\r\n"


def test_a_legacy_nsrlfile_reads_with_quoted_commas_and_reports_bad_lines(tmp_path):
    items = read("nsrl-legacy", write(tmp_path / "NSRLFile.txt", LEGACY))
    assert records(items) == [
        Record("knownGood", (("sha1", "000000206738748edd92c4e3d2e823896700f849"),
                             ("md5", "392126e756571ebf112cb1c1cdedf926")), "I05002T2.PFB", "NSRL product 1", ABOUT,
               ("product:1",)),
        Record("knownGood", (("sha1", "00000079fd7aac9b2f9c988c50750e1f50b27eb5"),
                             ("md5", "8ed4b4ed952526d89899e723f3488de4")), "readme, first.txt", "NSRL product 190",
               ABOUT, ("product:190",)),
        Record("knownGood", (("sha1", "0000037a3d3a0b0e9d3d7c2d8b5f6a1e2c3b4d5e"),), "nomd5.dll", "", ABOUT, ()),
    ]
    assert [p.location for p in problems(items)] == ["NSRLFile.txt:4", "NSRLFile.txt:5"]
    assert problems(items)[0].message.startswith("expected 8 fields with a SHA-1 or MD5, got ['NOT-A-SHA1'")


def test_a_legacy_file_without_its_header_is_one_problem(tmp_path):
    body = LEGACY.split("\r\n", 1)[1]
    assert read("nsrl-legacy", write(tmp_path / "NSRLFile.txt", body)) == [
        Problem("NSRLFile.txt:1", 'the first line must be the header ("SHA-1","MD5",...)')]


def test_a_zipped_legacy_file_reads_the_same(tmp_path):
    archive = tmp_path / "rds_modernm.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("NSRLFile.txt", LEGACY)
    assert read("nsrl-legacy", archive) == read("nsrl-legacy", write(tmp_path / "NSRLFile.txt", LEGACY))


# --- hash lists -------------------------------------------------------------------------------------------

def test_a_hash_list_with_header_comments_and_bad_lines(tmp_path):
    text = "\n".join([
        "hash,verdict,name,comment",                          # 1
        "# approved by IT",                                   # 2
        f"{SHA256},allow,tool.exe,IT ticket 42",              # 3
        f"  {SHA1.upper()} , Block , evil.exe",               # 4
        f"{MD5},deny",                                        # 5
        "",                                                   # 6
        f"{SHA256},maybe,x.exe",                              # 7
        "not-a-hash,allow",                                   # 8
        f"{SHA256}",                                          # 9
        f'"{OTHER_SHA256}", "trusted", "name, with comma"',   # 10
        "   # an indented comment",                           # 11
    ]) + "\n"
    items = read("hashlist", write(tmp_path / "list.csv", text))
    assert records(items) == [
        Record("allowed", (("sha256", SHA256),), "tool.exe", "IT ticket 42"),
        Record("blocked", (("sha1", SHA1),), "evil.exe"),
        Record("blocked", (("md5", MD5),)),
        Record("allowed", (("sha256", OTHER_SHA256),), "name, with comma"),
    ]
    assert problems(items) == [
        Problem("list.csv:7", "the verdict must be allow or block, not 'maybe'"),
        Problem("list.csv:8", "not a SHA-256, SHA-1 or MD5 digest: 'not-a-hash'"),
        Problem("list.csv:9", "the verdict must be allow or block, not 'nothing'"),
    ]
    assert formats()["hashlist"].source_version(tmp_path / "list.csv") == ""


def test_a_hash_list_without_a_header(tmp_path):
    items = read("hashlist", write(tmp_path / "list.csv", f"{SHA256},block\n"))
    assert items == [Record("blocked", (("sha256", SHA256),))]


@pytest.mark.parametrize("header", ["hash,verdict", "SHA256,Verdict", "sha1,verdict", "md5,verdict",
                                    "FileHash,Verdict,Name"])
def test_hash_list_headers(tmp_path, header):
    items = read("hashlist", write(tmp_path / "list.csv", f"{header}\n{SHA256},allow\n"))
    assert items == [Record("allowed", (("sha256", SHA256),))]


@pytest.mark.parametrize(("verdict", "label"), [
    ("allow", "allowed"), ("allowed", "allowed"), ("trusted", "allowed"), ("good", "allowed"), ("ALLOW", "allowed"),
    ("block", "blocked"), ("blocked", "blocked"), ("deny", "blocked"), ("malicious", "blocked"), ("bad", "blocked"),
    ("Block", "blocked"),
])
def test_hash_list_verdict_synonyms(tmp_path, verdict, label):
    items = read("hashlist", write(tmp_path / "list.csv", f"{SHA256},{verdict}\n"))
    assert items == [Record(label, (("sha256", SHA256),))]
