"""Risk scoring (services/reputation/scoring.py), rule by rule: the base, the hard rules, publisher trust, dual-use
binaries, paths, prevalence, user and device risk, the verdict and recommendation bands, evidence and summary.
Every expected number is worked out here from the documented weights, not read back from the module."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from services.reputation import scoring
from services.reputation.publishers import Certificate
from services.reputation.scoring import (
    BASE,
    RULES,
    WEIGHTS,
    Activity,
    Counts,
    Facts,
    Match,
    Risk,
    analyze,
    device_risk,
    full_path,
    user_risk,
)
from tests.certificates import certificate_chain

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
FILE_HASH = "ab" * 32
DAY = timedelta(days=1)

MALWARE = Match("malwarebazaar", "", False, "malicious", "sha256", name="invoice.exe", title="AgentTesla",
                reference="https://bazaar.abuse.ch/sample/x/")
EVIL_DRIVER = Match("loldrivers", "2026-08-12", False, "malicious", "sha1", name="evil.sys", title="Poortry")
DRIVER = Match("loldrivers", "2026-08-12", False, "vulnerableDriver", "sha256", name="RTCore64.sys",
               title="MSI Afterburner", reference="https://www.loldrivers.io/drivers/x/")
NSRL = Match("nsrl", "2025.03.1", False, "knownGood", "sha1", name="notepad.exe", title="Windows 11 10.0")
ALLOW = Match("allowlist", "v3", True, "allowed", "sha256", name="tool.exe")
BLOCK = Match("blocklist", "v1", True, "blocked", "sha256", name="evil.exe")
CERTUTIL_PATHS = (r"c:\windows\system32\certutil.exe", r"c:\windows\syswow64\certutil.exe")

# A known publisher (-5) and nothing else, for tests about something other than the publisher.
SIGNED = dict(publisher_name="Contoso")


def facts(**fields) -> Facts:
    return Facts(file_hash=FILE_HASH, now=NOW, **fields)


def lolbas(name: str = "certutil.exe", *categories: str, paths: tuple[str, ...] = CERTUTIL_PATHS,
           feed: str = "lolbas") -> Match:
    tags = tuple(f"category:{c}" for c in categories) + tuple(f"path:{p}" for p in paths)
    return Match(feed, "2026-07-31", False, "dualUse", "fileName", name=name, title="Windows binary",
                 reference=f"https://github.com/LOLBAS-Project/LOLBAS/blob/master/yml/OSBinaries/{name}.yml",
                 tags=tags)


def rule(label: str, kind: str = "certificate", name: str = "Contoso signing") -> Match:
    return Match(RULES, "", True, label, kind, name=name, tags=("rule-id",))


def signer(driver: str = "evil.sys") -> Match:
    return Match("loldrivers", "2026-08-12", False, "maliciousSigner", "certificate", name="Shady Ltd",
                 title=f"signed the malicious driver {driver}", reference="https://www.loldrivers.io/drivers/y/")


def cert(subject: str = "Contoso Ltd", issuer: str = "Contoso CA", *, not_after: datetime = NOW + 365 * DAY,
         self_signed: bool = False) -> Certificate:
    return Certificate(subject=subject, issuer=issuer, thumbprint="1" * 40, thumbprint_sha256="2" * 64,
                       tbs_sha256="3" * 64, not_before=NOW - 365 * DAY, not_after=not_after,
                       self_signed=self_signed, is_ca=False)


def signals(analysis: scoring.Analysis) -> dict[str, int]:
    return {e.signal: e.contribution for e in analysis.evidence}


def evidence(analysis: scoring.Analysis, signal: str) -> scoring.Evidence:
    return next(e for e in analysis.evidence if e.signal == signal)


# The common "calm" context: a protected folder (-5) and a file that ran on many devices for weeks (-10).
SYSTEM = dict(file_name="notepad.exe", file_path=r"C:\Windows\System32")
COMMON = Activity(file_devices=40, file_users=12, file_elevations=300, file_first_seen=NOW - 60 * DAY,
                  file_last_seen=NOW - DAY)


# --- the documented constants -------------------------------------------------------------------------------

def test_the_weights_are_the_documented_ones():
    assert BASE == 40
    assert WEIGHTS == {
        "feed.malicious": 50, "feed.vulnerableDriver": 40, "feed.dualUse": 20, "feed.dualUse.category": 5,
        "feed.dualUse.relocated": 10, "feed.knownGood": -20,
        "publisher.trusted.certificate": -25, "publisher.trusted.name": -15, "publisher.signed": -5,
        "publisher.unsigned": 15, "publisher.selfSigned": 15, "publisher.expired": 5, "publisher.unreadable": 10,
        "publisher.maliciousSigner": 35,
        "prevalence.new": 5, "prevalence.common": -10, "path.userWritable": 10, "path.system": -5,
    }
    assert (scoring.USER_SHARE, scoring.DEVICE_SHARE) == (0.3, 0.2)
    assert scoring.FLOORS == {"malicious": 95, "vulnerableDriver": 85, "dualUse": 50}


# --- the base -----------------------------------------------------------------------------------------------

def test_nothing_known_is_the_base_plus_unsigned_and_is_not_good_news():
    analysis = analyze(facts())
    assert signals(analysis) == {"publisher.unsigned": 15}
    assert analysis.risk_score == BASE + 15 == 55
    assert analysis.app_reputation == "unknown" and analysis.publisher_trust == "unknown"
    assert analysis.verdict == "unknown" and analysis.recommendation == "investigate"
    assert analysis.sources == () and analysis.user_risk is None and analysis.device_risk is None
    assert analysis.summary == ("Unknown file: no feed or rule knows this hash, which is neither good nor bad news. "
                                "Unsigned: no publisher or certificate. Risk 55/100: investigate.")


def test_a_known_publisher_alone_lowers_the_base_by_five():
    analysis = analyze(facts(publisher_name="Contoso"))
    assert signals(analysis) == {"publisher.signed": -5}
    assert analysis.risk_score == 35 and analysis.verdict == "unknown"


# --- hard rules: the tenant's own lists ----------------------------------------------------------------------

def test_an_allowed_hash_is_at_most_10_and_approved_even_when_a_malware_feed_lists_it():
    analysis = analyze(facts(matches=(ALLOW, MALWARE), file_path=r"C:\Users\bob\Downloads", file_name="tool.exe",
                             activity=Activity()))
    assert "feed.malicious" in signals(analysis)  # the evidence still shows what the feed says
    assert analysis.risk_score == 10  # 40 + 50 + 15 + 10 + 5 = 120, bounded to 10
    assert analysis.verdict == "clean" and analysis.recommendation == "approve"
    assert analysis.app_reputation == "knownGood"
    assert analysis.summary.startswith(
        "Allowed by your organization's list, which takes precedence over reputation data. Note that MalwareBazaar ")
    assert "MalwareBazaar flags it as dangerous." in analysis.summary
    assert analysis.summary.endswith("Risk 10/100: approve.")


def test_an_allowed_hash_keeps_a_lower_score():
    analysis = analyze(facts(matches=(ALLOW, NSRL, rule("allowed")), certificate=cert()))
    assert analysis.risk_score == 0  # 40 - 20 - 25 = -5, never below 0
    assert analysis.recommendation == "approve"
    assert "Note that" not in analysis.summary  # nothing dangerous to note


def test_an_allowed_hash_beats_a_vulnerable_driver_and_a_dual_use_listing():
    for listed in (DRIVER, lolbas()):
        analysis = analyze(facts(matches=(ALLOW, listed), file_name="certutil.exe"))
        assert analysis.risk_score <= 10
        assert analysis.verdict == "clean" and analysis.recommendation == "approve"


def test_an_allowed_hash_is_approved_even_for_a_high_risk_user():
    analysis = analyze(facts(matches=(ALLOW,), user=Counts(malicious=2)))
    assert analysis.user_risk.level == "high"
    assert analysis.recommendation == "approve"


def test_a_blocked_hash_is_100_and_malicious_whatever_else_is_known():
    analysis = analyze(facts(matches=(BLOCK, NSRL, rule("allowed")), certificate=cert(), activity=COMMON, **SYSTEM))
    assert analysis.risk_score == 100
    assert analysis.verdict == "malicious" and analysis.recommendation == "deny"
    assert analysis.app_reputation == "knownMalicious"
    assert "feed.knownGood" not in signals(analysis)
    assert analysis.summary.startswith("Known malicious: your block list lists it as malicious (evil.exe).")


def test_blocked_beats_allowed_when_both_lists_name_the_hash():
    analysis = analyze(facts(matches=(ALLOW, BLOCK)))
    assert analysis.risk_score == 100
    assert analysis.verdict == "malicious" and analysis.recommendation == "deny"
    assert analysis.app_reputation == "knownMalicious"
    assert not analysis.summary.startswith("Allowed")


def test_an_allowed_hash_signed_by_a_blocked_publisher_scores_like_its_verdict():
    """BUG: a publisher block beats the hash allow for verdict (malicious), recommendation (deny) and
    explicit_allow, but the score is still bounded to 10 by `if allowed and not blocked` (scoring.py, the
    `score = min(score, 10)` line), which ignores the publisher block: the result is "Risk 10/100: deny"."""
    analysis = analyze(facts(matches=(ALLOW, rule("blocked", "publisherName", "Evil")), publisher_name="Evil Corp"))
    assert analysis.verdict == "malicious" and analysis.recommendation == "deny"
    assert analysis.publisher_trust == "blocked"
    assert analysis.risk_score == 100


def test_the_conflict_note_names_only_the_feeds_that_flag_the_file():
    """BUG: the "Note that ... flag it as dangerous" sentence names every non-allow source, so a catalogue of
    known software (NSRL) is said to flag the file as dangerous (scoring.summarize, the `Note that` line)."""
    analysis = analyze(facts(matches=(ALLOW, MALWARE, NSRL)))
    assert "Note that MalwareBazaar " in analysis.summary
    assert "NIST NSRL" not in analysis.summary


def test_a_hash_list_entry_without_a_name_leaves_no_empty_brackets():
    """BUG: a block-list entry without a name or title (hash,verdict lines are the common case) gives
    "Known malicious: your block list lists it as malicious ()." (scoring.summarize, `about` is empty)."""
    analysis = analyze(facts(matches=(replace(BLOCK, name=""),)))
    assert analysis.summary.startswith("Known malicious: your block list lists it as malicious")
    assert "()" not in analysis.summary


# --- hard rules: the feeds ------------------------------------------------------------------------------------

def test_a_known_malicious_hash_is_at_least_95():
    analysis = analyze(facts(matches=(MALWARE, NSRL, rule("allowed")), certificate=cert(), activity=COMMON,
                             **SYSTEM))
    assert signals(analysis) == {"feed.malicious": 50, "publisher.trusted.certificate": -25, "path.system": -5,
                                 "prevalence.common": -10}  # known good is not evidence next to malware
    assert analysis.risk_score == 95  # 40 + 50 - 25 - 5 - 10 = 50, raised to the floor
    assert analysis.verdict == "malicious" and analysis.recommendation == "deny"
    assert analysis.app_reputation == "knownMalicious"


def test_a_known_malicious_hash_with_bad_signs_is_capped_at_100():
    analysis = analyze(facts(matches=(MALWARE,), file_path=r"C:\Users\bob\AppData\Local\Temp",
                             file_name="invoice.exe", activity=Activity()))
    assert sum(signals(analysis).values()) + BASE == 120
    assert analysis.risk_score == 100


def test_an_authentihash_match_identifies_the_file():
    analysis = analyze(facts(matches=(replace(DRIVER, kind="authentihash"),), **SIGNED))
    assert analysis.app_reputation == "vulnerableDriver" and analysis.risk_score == 85


def test_only_hashes_identify_a_file_as_malicious_or_known():
    by_name = (replace(MALWARE, kind="fileName"), replace(NSRL, kind="fileName"), replace(BLOCK, kind="fileName"),
               replace(DRIVER, kind="certificate"))
    analysis = analyze(facts(matches=by_name, **SIGNED))
    assert analysis.app_reputation == "unknown" and analysis.verdict == "unknown"
    assert signals(analysis) == {"publisher.signed": -5} and analysis.risk_score == 35


def test_a_trusted_publisher_does_not_override_a_malicious_hash():
    analysis = analyze(facts(matches=(MALWARE, rule("allowed")), certificate=cert()))
    assert analysis.publisher_trust == "trusted"
    assert analysis.risk_score >= 95 and analysis.verdict == "malicious" and analysis.recommendation == "deny"


def test_a_vulnerable_driver_is_at_least_85_suspicious_and_denied():
    analysis = analyze(facts(matches=(DRIVER, rule("allowed")), certificate=cert(), activity=COMMON, **SYSTEM))
    assert signals(analysis)["feed.vulnerableDriver"] == 40
    assert analysis.risk_score == 85  # 40 + 40 - 25 - 5 - 10 = 40, raised to the floor
    assert analysis.verdict == "suspicious" and analysis.recommendation == "deny"
    assert analysis.app_reputation == "vulnerableDriver"


def test_a_dual_use_binary_is_at_least_50_suspicious_and_never_approved():
    analysis = analyze(facts(matches=(lolbas(), NSRL, rule("allowed")), certificate=cert(), activity=COMMON,
                             file_name="certutil.exe", file_path=r"C:\Windows\System32"))
    assert signals(analysis) == {"feed.dualUse": 20, "publisher.trusted.certificate": -25, "path.system": -5,
                                 "prevalence.common": -10}
    assert analysis.risk_score == 50  # 40 + 20 - 25 - 5 - 10 = 20, raised to the floor
    assert analysis.verdict == "suspicious" and analysis.recommendation == "investigate"
    assert analysis.app_reputation == "dualUse"


def test_a_dual_use_binary_with_enough_bad_signs_is_denied():
    analysis = analyze(facts(matches=(lolbas("certutil.exe", "UAC Bypass", "AWL Bypass"),),
                             file_name="certutil.exe", file_path=r"C:\Users\Public", activity=Activity()))
    # 40 + 20 + 10 (two risky categories) + 10 (relocated) + 15 (unsigned) + 10 (user-writable) + 5 (new)
    assert analysis.risk_score == 100
    assert analysis.verdict == "suspicious" and analysis.recommendation == "deny"


def test_a_certificate_that_signed_malicious_drivers_makes_the_publisher_untrusted_and_the_file_suspicious():
    analysis = analyze(facts(matches=(signer(), NSRL), certificate=cert(), activity=COMMON, **SYSTEM))
    assert analysis.publisher_trust == "untrusted"
    assert analysis.publisher_reasons == ("its certificate also signed 1 known malicious driver",)
    found = evidence(analysis, "publisher.maliciousSigner")
    assert found.contribution == 35 and found.observed.endswith(": evil.sys")
    assert found.source == "loldrivers 2026-08-12" and found.reference == "https://www.loldrivers.io/drivers/y/"
    assert analysis.risk_score == 40  # 40 - 20 + 35 - 5 - 10: not high, yet
    assert analysis.verdict == "suspicious" and analysis.recommendation == "investigate"


def test_malicious_signer_drivers_are_counted_deduplicated_and_listed_three_at_most():
    matches = tuple(signer(d) for d in ("d.sys", "a.sys", "c.sys", "a.sys", "b.sys"))
    analysis = analyze(facts(matches=matches, certificate=cert()))
    assert analysis.publisher_reasons == ("its certificate also signed 4 known malicious drivers",)
    assert evidence(analysis, "publisher.maliciousSigner").observed == (
        "its certificate also signed 4 known malicious drivers: a.sys, b.sys, c.sys")


# --- publisher trust, in order ----------------------------------------------------------------------------

def test_a_blocked_publisher_rule_beats_everything_and_scores_100():
    analysis = analyze(facts(matches=(rule("allowed"), signer(), rule("blocked", "publisherName", "Contoso")),
                             certificate=cert()))
    assert analysis.publisher_trust == "blocked"
    assert analysis.publisher_reasons == ("Contoso Ltd is blocked by your publisher rules (name rule Contoso)",)
    assert signals(analysis) == {"publisher.blocked": 0}
    assert analysis.risk_score == 100 and analysis.verdict == "malicious" and analysis.recommendation == "deny"
    assert analysis.app_reputation == "unknown"  # the file itself is not known; its publisher is blocked
    assert "Publisher blocked: Contoso Ltd is blocked by your publisher rules (name rule Contoso)." in \
        analysis.summary


def test_a_malicious_signer_beats_a_trusted_rule():
    analysis = analyze(facts(matches=(rule("allowed"), signer()), certificate=cert()))
    assert analysis.publisher_trust == "untrusted"
    assert "publisher.trusted.certificate" not in signals(analysis)
    assert signals(analysis)["publisher.maliciousSigner"] == 35


@pytest.mark.parametrize(("kind", "signal", "weight", "text"), [
    ("certificate", "publisher.trusted.certificate", -25, "certificate rule"),
    ("publisherName", "publisher.trusted.name", -15, "name rule"),
])
def test_a_trusted_rule_lowers_the_risk_by_its_kind(kind, signal, weight, text):
    analysis = analyze(facts(matches=(rule("allowed", kind),), certificate=cert()))
    assert analysis.publisher_trust == "trusted"
    assert signals(analysis) == {signal: weight}
    assert analysis.risk_score == 40 + weight
    assert analysis.publisher_reasons == (f"Contoso Ltd is trusted by your publisher rules ({text} Contoso signing)",)
    assert (f"Publisher trusted: Contoso Ltd is trusted by your publisher rules ({text} Contoso signing)."
            in analysis.summary)


def test_a_rule_without_a_display_name_is_named_by_its_kind_only():
    analysis = analyze(facts(matches=(rule("allowed", "publisherName", ""),), publisher_name="Contoso"))
    assert analysis.publisher_reasons == ("Contoso is trusted by your publisher rules (name rule)",)


def test_a_trusted_rule_beats_an_unreadable_or_self_signed_certificate():
    for extra in (dict(certificate_problem="publisherCert is not a base64 X.509 certificate (Error)"),
                  dict(certificate=cert(self_signed=True))):
        analysis = analyze(facts(matches=(rule("allowed", "publisherName"),), publisher_name="Contoso", **extra))
        assert analysis.publisher_trust == "trusted"
        assert signals(analysis) == {"publisher.trusted.name": -15}


def test_an_unreadable_certificate_is_untrusted_and_beats_self_signed():
    problem = "publisherCert is not a base64 X.509 certificate (Error)"
    analysis = analyze(facts(certificate=cert(self_signed=True), certificate_problem=problem))
    assert analysis.publisher_trust == "untrusted" and analysis.publisher_reasons == (problem,)
    assert signals(analysis) == {"publisher.unreadable": 10}
    assert analysis.risk_score == 50
    assert f"Publisher untrusted: {problem}." in analysis.summary


def test_a_self_signed_certificate_is_untrusted():
    analysis = analyze(facts(certificate=cert("Me", "Me", self_signed=True), publisher_name="Someone Else"))
    assert analysis.publisher_trust == "untrusted"
    assert analysis.publisher_reasons == ("the certificate of Me is self-signed",)
    assert signals(analysis) == {"publisher.selfSigned": 15}
    assert analysis.risk_score == 55
    assert "Publisher untrusted: the certificate of Me is self-signed." in analysis.summary


def test_a_certificate_makes_the_publisher_known_by_its_subject_and_issuer():
    analysis = analyze(facts(certificate=cert(), publisher_name="Whatever The Device Says"))
    assert analysis.publisher_trust == "known"
    assert analysis.publisher_reasons == ("signed by Contoso Ltd",)
    found = evidence(analysis, "publisher.signed")
    assert (found.source, found.observed, found.contribution) == (
        "publisherCert", "signed by Contoso Ltd, issued by Contoso CA", -5)
    assert analysis.risk_score == 35
    assert "Publisher: signed by Contoso Ltd." in analysis.summary


def test_a_publisher_name_alone_makes_the_publisher_known():
    analysis = analyze(facts(publisher_name="  Contoso Ltd.  "))
    found = evidence(analysis, "publisher.signed")
    assert (found.source, found.observed) == ("publisherName", "signed by Contoso Ltd.")
    assert "Publisher: signed by Contoso Ltd. " in analysis.summary  # no doubled full stop
    assert ".." not in analysis.summary


def test_an_expired_certificate_adds_five_and_a_reason_but_stays_known():
    analysis = analyze(facts(certificate=cert(not_after=datetime(2025, 6, 30, tzinfo=timezone.utc))))
    assert analysis.publisher_trust == "known"
    assert analysis.publisher_reasons == (
        "signed by Contoso Ltd",
        "the certificate expired on 2025-06-30 (still valid if the signature was timestamped)")
    assert signals(analysis) == {"publisher.signed": -5, "publisher.expired": 5}
    assert analysis.risk_score == 40


def test_a_certificate_that_ends_right_now_has_not_expired():
    analysis = analyze(facts(certificate=cert(not_after=NOW)))
    assert "publisher.expired" not in signals(analysis)


def test_a_blank_publisher_name_is_unsigned():
    analysis = analyze(facts(publisher_name="   "))
    assert analysis.publisher_trust == "unknown"
    assert analysis.publisher_reasons == ("unsigned: no publisher or certificate",)
    assert evidence(analysis, "publisher.unsigned").source == "application detail"


def test_a_real_certificate_chain_scores_as_a_known_publisher():
    _, leaf = certificate_chain("Fabrikam Code Signing")
    analysis = analyze(Facts(file_hash=FILE_HASH, now=leaf.not_before + DAY, certificate=leaf))
    assert analysis.publisher_trust == "known"
    assert evidence(analysis, "publisher.signed").observed == \
        "signed by Fabrikam Code Signing, issued by Fabrikam Code Signing CA"
    expired = analyze(Facts(file_hash=FILE_HASH, now=leaf.not_after + DAY, certificate=leaf))
    assert signals(expired) == {"publisher.signed": -5, "publisher.expired": 5}


def test_publisher_rules_are_not_sources():
    analysis = analyze(facts(matches=(rule("allowed"), NSRL), certificate=cert()))
    assert analysis.sources == (NSRL,)


# --- dual-use binaries --------------------------------------------------------------------------------------

def test_a_dual_use_listing_without_risky_categories_adds_20():
    analysis = analyze(facts(matches=(lolbas("certutil.exe", "Download", "Encode"),), **SIGNED))
    found = evidence(analysis, "feed.dualUse")
    assert found.contribution == 20
    assert found.observed == "certutil.exe is a dual-use binary attackers abuse (Download, Encode)"
    assert found.source == "lolbas 2026-07-31" and found.reference.endswith("/certutil.exe.yml")
    assert "feed.dualUse.category" not in signals(analysis)


def test_a_dual_use_listing_without_categories_says_so():
    analysis = analyze(facts(matches=(lolbas(),), **SIGNED))
    assert evidence(analysis, "feed.dualUse").observed.endswith("(no category)")


@pytest.mark.parametrize(("categories", "points"), [
    (("UAC Bypass",), 5),
    (("AWL Bypass", "Download"), 5),
    (("Credentials", "Dump"), 10),
    (("UAC Bypass", "AWL Bypass", "Credentials"), 15),
    (("UAC Bypass", "AWL Bypass", "Credentials", "Dump"), 15),  # capped
])
def test_risky_dual_use_categories_add_five_each_up_to_15(categories, points):
    analysis = analyze(facts(matches=(lolbas("certutil.exe", *categories),), **SIGNED))
    found = evidence(analysis, "feed.dualUse.category")
    assert found.contribution == points
    risky = sorted(c for c in categories if c in ("UAC Bypass", "AWL Bypass", "Credentials", "Dump"))
    assert found.observed == f"abused for {', '.join(risky)}"


def test_categories_of_several_dual_use_matches_are_merged_once():
    matches = (lolbas("certutil.exe", "UAC Bypass", "Download"),
               lolbas("certutil.exe", "UAC Bypass", "Dump", feed="lolbas-mirror"))
    analysis = analyze(facts(matches=matches, **SIGNED))
    assert evidence(analysis, "feed.dualUse.category").contribution == 10  # UAC Bypass counted once
    assert evidence(analysis, "feed.dualUse").source == "lolbas 2026-07-31, lolbas-mirror 2026-07-31"
    assert "(Download, Dump, UAC Bypass)" in evidence(analysis, "feed.dualUse").observed


def test_a_dual_use_match_by_hash_is_not_a_dual_use_listing():
    analysis = analyze(facts(matches=(replace(lolbas(), kind="sha256"),), **SIGNED))
    assert analysis.app_reputation == "unknown" and "feed.dualUse" not in signals(analysis)


def test_known_good_is_not_evidence_next_to_a_dual_use_listing():
    analysis = analyze(facts(matches=(lolbas(), NSRL), **SIGNED))
    assert "feed.knownGood" not in signals(analysis)
    assert analysis.app_reputation == "dualUse"


@pytest.mark.parametrize("where", [
    r"C:\Windows\System32", r"c:\windows\syswow64\\", r"%windir%\System32", r"%SystemRoot%\SysWOW64",
    r"%SYSTEMDRIVE%\Windows\System32", r"C:\Windows\System32\certutil.exe", "C:/Windows/System32",
])
def test_a_dual_use_binary_where_windows_keeps_it_is_not_relocated(where):
    analysis = analyze(facts(matches=(lolbas(),), file_name="CertUtil.exe", file_path=where, **SIGNED))
    assert "feed.dualUse.relocated" not in signals(analysis)
    assert signals(analysis)["path.system"] == -5


@pytest.mark.parametrize(("where", "documented"), [
    (r"%ProgramFiles%\Microsoft VS Code", r"c:\program files\microsoft vs code\code.exe"),
    (r"%ProgramFiles(x86)%\Microsoft VS Code", r"c:\program files (x86)\microsoft vs code\code.exe"),
])
def test_program_files_variables_are_expanded_before_comparing(where, documented):
    analysis = analyze(facts(matches=(lolbas("code.exe", paths=(documented,)),), file_name="Code.exe",
                             file_path=where, **SIGNED))
    assert "feed.dualUse.relocated" not in signals(analysis)


def test_a_dual_use_binary_run_from_elsewhere_is_relocated():
    analysis = analyze(facts(matches=(lolbas(),), file_name="certutil.exe", file_path=r"C:\Users\Public", **SIGNED))
    found = evidence(analysis, "feed.dualUse.relocated")
    assert found.contribution == 10
    assert found.observed == r"runs from c:\users\public\certutil.exe, not from where Windows keeps it"
    assert signals(analysis)["path.userWritable"] == 10
    assert analysis.risk_score == 40 + 20 + 10 - 5 + 10  # 75: relocated and user-writable both count


def test_relocation_needs_a_path_and_documented_paths():
    no_path = analyze(facts(matches=(lolbas(),), file_name="certutil.exe", **SIGNED))
    undocumented = analyze(facts(matches=(lolbas(paths=()),), file_name="certutil.exe", file_path=r"D:\Tools",
                                 **SIGNED))
    assert "feed.dualUse.relocated" not in signals(no_path)
    assert "feed.dualUse.relocated" not in signals(undocumented)


def test_a_documented_per_user_path_with_a_placeholder_is_not_relocated():
    """BUG: LOLBAS documents per-user and versioned locations with placeholders (Code.yml:
    C:\\Users\\<username>\\AppData\\Local\\Programs\\Microsoft VS Code\\Code.exe). scoring._dual_use compares the
    real path with them literally (`where not in documented`), so code.exe run from exactly that place is flagged
    "relocated" (+10, "not from where Windows keeps it")."""
    documented = r"c:\users\<username>\appdata\local\programs\microsoft vs code\code.exe"
    analysis = analyze(facts(matches=(lolbas("code.exe", "Execute", paths=(documented,)),), file_name="Code.exe",
                             file_path=r"C:\Users\bob\AppData\Local\Programs\Microsoft VS Code", **SIGNED))
    assert "feed.dualUse.relocated" not in signals(analysis)


# --- full_path ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "name", "expected"), [
    ("", "cmd.exe", ""),
    ("   ", "cmd.exe", ""),
    (r"C:\Windows\System32", "cmd.exe", r"c:\windows\system32\cmd.exe"),
    ("C:\\Windows\\System32\\", "CMD.EXE", r"c:\windows\system32\cmd.exe"),
    (r"C:\Windows\System32\cmd.exe", "cmd.exe", r"c:\windows\system32\cmd.exe"),
    (r"C:\Windows\System32", "", r"c:\windows\system32"),
    ("C:/Tools/bin", "x.exe", r"c:\tools\bin\x.exe"),
    (r"%WINDIR%\System32", "cmd.exe", r"c:\windows\system32\cmd.exe"),
    (r"%SystemRoot%\System32", "cmd.exe", r"c:\windows\system32\cmd.exe"),
    (r"%ProgramFiles%\App", "app.exe", r"c:\program files\app\app.exe"),
    (r"%ProgramFiles(x86)%\App", "app.exe", r"c:\program files (x86)\app\app.exe"),
    (r"%SystemDrive%\Tools", "t.exe", r"c:\tools\t.exe"),
    (r"%TEMP%\x", "t.exe", r"%temp%\x\t.exe"),  # a user folder stays a variable (it is user-writable anyway)
])
def test_full_path(path, name, expected):
    assert full_path(path, name) == expected


# --- path signals ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", [
    r"C:\Users\bob", r"C:\Users\bob\AppData\Roaming\App", r"C:\Windows\Temp", r"D:\Temp\build",
    r"C:\Users\bob\Downloads", r"C:\ProgramData\Vendor", r"%TEMP%", r"%TMP%\sub", r"%APPDATA%\App",
    r"%LocalAppData%\Programs", r"%USERPROFILE%\Desktop",
])
def test_user_writable_folders_add_ten(where):
    analysis = analyze(facts(file_name="tool.exe", file_path=where, **SIGNED))
    assert signals(analysis)["path.userWritable"] == 10 and "path.system" not in signals(analysis)
    assert analysis.risk_score == 40 - 5 + 10


@pytest.mark.parametrize("where", [
    r"C:\Windows\System32", r"C:\Program Files\App", r"C:\Program Files (x86)\App", r"%windir%\SysWOW64",
    r"%ProgramFiles%\App",
])
def test_protected_folders_lower_the_risk_by_five(where):
    analysis = analyze(facts(file_name="tool.exe", file_path=where, **SIGNED))
    assert signals(analysis)["path.system"] == -5 and "path.userWritable" not in signals(analysis)
    assert evidence(analysis, "path.system").observed.startswith("runs from a protected folder: c:\\")


@pytest.mark.parametrize("where", ["", r"D:\Tools", r"C:\Windowsold\x", r"\\server\share\tools"])
def test_other_folders_are_no_signal(where):
    analysis = analyze(facts(file_name="tool.exe", file_path=where, **SIGNED))
    assert not {"path.system", "path.userWritable"} & set(signals(analysis))


# --- prevalence ---------------------------------------------------------------------------------------------

def test_without_the_events_service_there_is_no_prevalence_signal():
    analysis = analyze(facts(activity=None, **SIGNED))
    assert not {"prevalence.new", "prevalence.common"} & set(signals(analysis))
    assert "ran elevated" not in analysis.summary.lower()


def test_a_file_never_seen_is_new():
    analysis = analyze(facts(activity=Activity(), **SIGNED))
    found = evidence(analysis, "prevalence.new")
    assert (found.contribution, found.observed) == (5, "never ran elevated in your organization before")
    assert "Never ran elevated here before." in analysis.summary


def test_a_file_first_seen_less_than_a_day_ago_is_new():
    activity = Activity(file_devices=30, file_first_seen=NOW - DAY + timedelta(seconds=1))
    analysis = analyze(facts(activity=activity, **SIGNED))
    assert evidence(analysis, "prevalence.new").observed == \
        "first ran elevated in your organization on 2026-02-28 12:00 UTC"
    assert "prevalence.common" not in signals(analysis)


@pytest.mark.parametrize(("devices", "age", "signal"), [
    (50, DAY, None),                       # a day old exactly: no longer new, not yet common
    (50, 7 * DAY - timedelta(seconds=1), None),
    (9, 30 * DAY, None),                   # old but on too few devices
    (10, 7 * DAY, "prevalence.common"),
    (500, 365 * DAY, "prevalence.common"),
])
def test_prevalence_bands(devices, age, signal):
    analysis = analyze(facts(activity=Activity(file_devices=devices, file_first_seen=NOW - age), **SIGNED))
    found = {"prevalence.new", "prevalence.common"} & set(signals(analysis))
    assert found == ({signal} if signal else set())
    if signal:
        assert signals(analysis)[signal] == -10
        assert evidence(analysis, signal).observed == f"ran elevated on {devices} devices since " \
                                                      f"{NOW - age:%Y-%m-%d}"


def test_the_summary_tells_how_widely_it_ran():
    one = analyze(facts(activity=Activity(file_devices=1, file_first_seen=datetime(2026, 1, 5, tzinfo=timezone.utc)),
                        **SIGNED))
    assert "Ran elevated on 1 device here since 2026-01-05." in one.summary
    many = analyze(facts(activity=COMMON, **SIGNED))
    assert "Ran elevated on 40 devices here since 2025-12-31." in many.summary


# --- user risk ----------------------------------------------------------------------------------------------

def test_no_user_is_no_user_risk():
    assert user_risk(None) is None


def test_a_user_without_history_has_no_risk():
    assert user_risk(Counts()) == Risk(0, "none", ())
    assert user_risk(Counts(total=500, distinct_users=9)) == Risk(0, "none", ())  # asking often is no risk


@pytest.mark.parametrize(("counts", "score", "level", "factors"), [
    (Counts(denied=1), 15, "low", ("1 denied request",)),
    (Counts(denied=2), 30, "medium", ("2 denied requests",)),
    (Counts(denied=9), 45, "medium", ("9 denied requests",)),
    (Counts(malicious=1), 30, "medium", ("1 request for malicious files",)),
    (Counts(malicious=2), 60, "high", ("2 requests for malicious files",)),
    (Counts(malicious=5), 60, "high", ("5 requests for malicious files",)),
    (Counts(revoked=1), 10, "low", ("1 revoked approval",)),
    (Counts(revoked=4), 20, "low", ("4 revoked approvals",)),
    (Counts(last_day=3), 0, "none", ()),
    (Counts(last_day=4), 10, "low", ("4 requests in 24 h",)),
    (Counts(last_day=10), 10, "low", ("10 requests in 24 h",)),
    (Counts(last_day=11), 25, "low", ("11 requests in 24 h",)),
    (Counts(denied=1, revoked=1, last_day=4), 35, "medium",
     ("1 denied request", "1 revoked approval", "4 requests in 24 h")),
    (Counts(denied=3, malicious=2, revoked=2, last_day=20), 100, "high",
     ("3 denied requests", "2 requests for malicious files", "2 revoked approvals", "20 requests in 24 h")),
])
def test_user_risk(counts, score, level, factors):
    assert user_risk(counts) == Risk(score, level, factors)


# --- device risk --------------------------------------------------------------------------------------------

def test_no_device_is_no_device_risk_whatever_the_events_say():
    assert device_risk(None, Activity(device_unmanaged=50, device_failed=50)) is None


@pytest.mark.parametrize(("counts", "activity", "score", "level", "factors"), [
    (Counts(), None, 0, "none", ()),
    (Counts(), Activity(), 0, "none", ()),
    (Counts(denied=1), None, 10, "low", ("1 denied request on it",)),
    (Counts(denied=4), None, 30, "medium", ("4 denied requests on it",)),
    (Counts(malicious=1), None, 30, "medium", ("1 request for malicious files on it",)),
    (Counts(malicious=3), None, 60, "high", ("3 requests for malicious files on it",)),
    (Counts(distinct_users=2), None, 0, "none", ()),
    (Counts(distinct_users=3), None, 10, "low", ("3 different users asked on it",)),
    (Counts(last_day=5), None, 0, "none", ()),
    (Counts(last_day=6), None, 10, "low", ("6 requests in 24 h",)),
    (Counts(), Activity(device_unmanaged=3), 6, "none", ("3 unmanaged elevations",)),
    (Counts(), Activity(device_unmanaged=15), 20, "low", ("15 unmanaged elevations",)),
    (Counts(), Activity(device_failed=9), 9, "none", ("9 failed elevations",)),
    (Counts(), Activity(device_failed=40), 10, "low", ("40 failed elevations",)),
    (Counts(), Activity(device_unmanaged=10, device_failed=9), 29, "low",
     ("10 unmanaged elevations", "9 failed elevations")),
    (Counts(malicious=1), Activity(device_unmanaged=10, device_failed=9), 59, "medium",
     ("1 request for malicious files on it", "10 unmanaged elevations", "9 failed elevations")),
    (Counts(denied=5, malicious=5, distinct_users=4, last_day=9), Activity(device_unmanaged=99, device_failed=99),
     100, "high", ("5 denied requests on it", "5 requests for malicious files on it", "4 different users asked on it",
                   "9 requests in 24 h", "99 unmanaged elevations", "99 failed elevations")),
])
def test_device_risk(counts, activity, score, level, factors):
    assert device_risk(counts, activity) == Risk(score, level, factors)


def test_a_device_risk_of_10_is_low():
    assert device_risk(Counts(), Activity(device_failed=10)).level == "low"


# --- their share of the score -------------------------------------------------------------------------------

def test_user_and_device_risk_add_their_share():
    analysis = analyze(facts(user=Counts(denied=3), device=Counts(denied=3), **SIGNED))
    user, device = evidence(analysis, "user.risk"), evidence(analysis, "device.risk")
    assert user.contribution == 14  # 30 % of 45, rounded
    assert user.observed == "user risk medium (45/100): 3 denied requests" and user.source == "elevation requests"
    assert device.contribution == 6  # 20 % of 30
    assert device.observed == "device risk medium (30/100): 3 denied requests on it"
    assert analysis.risk_score == 40 - 5 + 14 + 6
    assert analysis.user_risk == Risk(45, "medium", ("3 denied requests",))
    assert "User risk medium, device risk medium." in analysis.summary


def test_the_device_share_uses_the_events_activity():
    analysis = analyze(facts(device=Counts(), activity=Activity(device_unmanaged=10, file_devices=1,
                                                                file_first_seen=NOW - 30 * DAY), **SIGNED))
    assert evidence(analysis, "device.risk").contribution == 4  # 20 % of 20
    assert evidence(analysis, "device.risk").observed == "device risk low (20/100): 10 unmanaged elevations"


def test_no_risk_is_no_evidence_but_still_a_summary_note():
    analysis = analyze(facts(user=Counts(), device=Counts(), **SIGNED))
    assert not {"user.risk", "device.risk"} & set(signals(analysis))
    assert analysis.user_risk == Risk(0, "none", ()) and analysis.device_risk == Risk(0, "none", ())
    assert "User risk none, device risk none." in analysis.summary


def test_a_share_that_rounds_to_zero_is_no_evidence():
    analysis = analyze(facts(device=Counts(), activity=Activity(device_failed=2, file_first_seen=NOW - 30 * DAY),
                             **SIGNED))
    assert analysis.device_risk.score == 2
    assert "device.risk" not in signals(analysis)


# --- verdict and recommendation bands -----------------------------------------------------------------------

def test_a_score_of_25_is_clean_and_approved():
    analysis = analyze(facts(matches=(rule("allowed", "publisherName"),), publisher_name="Contoso"))
    assert analysis.risk_score == 25
    assert analysis.verdict == "clean" and analysis.recommendation == "approve"


def test_a_score_of_26_is_unknown_and_investigated():
    analysis = analyze(facts(matches=(rule("allowed", "publisherName"),), publisher_name="Contoso", device=Counts(),
                             activity=Activity(device_failed=5, file_devices=1, file_first_seen=NOW - 3 * DAY)))
    assert analysis.risk_score == 26  # 40 - 15 + 1 (20 % of a device risk of 5)
    assert analysis.verdict == "unknown" and analysis.recommendation == "investigate"


def test_known_software_from_a_trusted_publisher_is_clean():
    analysis = analyze(facts(matches=(NSRL, rule("allowed")), certificate=cert(), activity=COMMON, **SYSTEM))
    assert signals(analysis) == {"publisher.trusted.certificate": -25, "feed.knownGood": -20,
                                 "prevalence.common": -10, "path.system": -5}
    assert analysis.risk_score == 0
    assert analysis.app_reputation == "knownGood"
    assert analysis.verdict == "clean" and analysis.recommendation == "approve"


@pytest.mark.parametrize("who", ["user", "device"])
def test_a_clean_file_for_a_high_risk_user_or_device_is_investigated(who):
    clean = dict(matches=(NSRL, rule("allowed")), certificate=cert(), activity=COMMON, **SYSTEM)
    analysis = analyze(facts(**{who: Counts(malicious=3)}, **clean))
    assert getattr(analysis, f"{who}_risk").level == "high"
    assert analysis.verdict == "clean" and analysis.recommendation == "investigate"


def test_a_clean_file_for_a_medium_risk_user_is_approved():
    analysis = analyze(facts(matches=(NSRL, rule("allowed")), certificate=cert(), user=Counts(denied=3)))
    assert analysis.user_risk.level == "medium"
    assert analysis.verdict == "clean" and analysis.recommendation == "approve"


def test_69_is_unknown_and_70_is_suspicious():
    unknown = analyze(facts(user=Counts(denied=3)))  # 55 + 14
    assert (unknown.risk_score, unknown.verdict, unknown.recommendation) == (69, "unknown", "investigate")
    suspicious = analyze(facts(file_name="a.exe", file_path=r"C:\Users\bob", activity=Activity()))  # 55 + 10 + 5
    assert (suspicious.risk_score, suspicious.verdict, suspicious.recommendation) == (70, "suspicious", "investigate")


def test_79_is_investigated_and_80_is_denied():
    risky = dict(file_name="a.exe", file_path=r"C:\Users\bob", activity=Activity())  # 70
    investigated = analyze(facts(user=Counts(malicious=1), **risky))  # + 9
    assert (investigated.risk_score, investigated.verdict, investigated.recommendation) == (
        79, "suspicious", "investigate")
    denied = analyze(facts(device=Counts(malicious=1), **{**risky, "activity": Activity(device_unmanaged=10)}))
    assert (denied.risk_score, denied.verdict, denied.recommendation) == (80, "suspicious", "deny")


# --- evidence and summary -----------------------------------------------------------------------------------

def test_evidence_is_sorted_by_absolute_contribution():
    analysis = analyze(facts(matches=(DRIVER, NSRL), publisher_name="Contoso", activity=COMMON,
                             user=Counts(denied=1), **SYSTEM))
    contributions = [e.contribution for e in analysis.evidence]
    assert contributions == [40, -20, -10, -5, -5, 4]
    assert [e.signal for e in analysis.evidence][:3] == ["feed.vulnerableDriver", "feed.knownGood",
                                                        "prevalence.common"]


def test_feed_evidence_names_the_feeds_and_the_file():
    analysis = analyze(facts(matches=(MALWARE, EVIL_DRIVER), **SIGNED))
    found = evidence(analysis, "feed.malicious")
    assert found.observed.startswith("MalwareBazaar and LOLDrivers ")
    assert found.observed.endswith(" as malicious: invoice.exe (AgentTesla)")
    assert found.source == "malwarebazaar, loldrivers 2026-08-12"
    assert found.reference == MALWARE.reference and found.contribution == 50


@pytest.mark.parametrize(("matches", "start"), [
    ((MALWARE,), "Known malicious: MalwareBazaar lists it as malicious (AgentTesla)."),
    ((MALWARE, EVIL_DRIVER), "Known malicious: MalwareBazaar and LOLDrivers list it as malicious (AgentTesla)."),
    ((DRIVER,), "Vulnerable driver: LOLDrivers lists it (MSI Afterburner); attackers load such drivers to reach "
                "the kernel."),
    ((lolbas(),), "Dual-use binary: certutil.exe is a legitimate Windows binary that attackers abuse, so it should "
                  "not run elevated without a reason."),
    ((NSRL,), "Known software: NIST NSRL lists it (Windows 11 10.0); catalogued is not a promise that it is benign."),
    ((replace(NSRL, title=""),), "Known software: NIST NSRL lists it (notepad.exe);"),
    ((), "Unknown file: no feed or rule knows this hash, which is neither good nor bad news."),
    ((ALLOW,), "Allowed by your organization's list, which takes precedence over reputation data. Publisher"),
])
def test_the_summary_starts_with_the_app_reputation(matches, start):
    assert analyze(facts(matches=matches, **SIGNED)).summary.startswith(start)


def test_a_whole_summary():
    analysis = analyze(facts(matches=(DRIVER,), certificate=cert(), activity=COMMON, user=Counts(denied=1),
                             device=Counts(), **SYSTEM))
    assert analysis.summary == (
        "Vulnerable driver: LOLDrivers lists it (MSI Afterburner); attackers load such drivers to reach the kernel. "
        "Publisher: signed by Contoso Ltd. "
        "Ran elevated on 40 devices here since 2025-12-31; user risk low, device risk none. "
        "Risk 85/100: deny.")


def test_the_summary_ends_with_the_score_and_the_recommendation():
    for matches in ((), (MALWARE,), (NSRL, rule("allowed")), (lolbas(),)):
        analysis = analyze(facts(matches=matches, certificate=cert()))
        assert analysis.summary.endswith(f" Risk {analysis.risk_score}/100: {analysis.recommendation}.")
