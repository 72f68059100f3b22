"""CI's security checks of the code and its dependencies, each shown able to fail.

- bandit over services/ and gateway/ at every severity and confidence: no finding. A false positive is
  answered on its own line, `# nosec BXXX # why`; a bare `# nosec` (which silences every test) is refused.
- The installed runtime dependencies against PyPI's advisories (see dependency_audit): no finding.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from . import dependency_audit as audit

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("services", "gateway")
# `# nosec` must name the tests it silences, then say why: `# nosec B608 # constant table, bound values`
NOSEC = re.compile(r"#\s*nosec\b(?P<rest>.*)$")
NAMED = re.compile(r":?\s*(B\d{3})(\s*,\s*B\d{3})*\s*#\s*\S")


def bandit(*targets: str | Path) -> list[dict]:
    """bandit's findings over `targets`, at every severity and confidence."""
    run = subprocess.run([sys.executable, "-m", "bandit", "-r", *map(str, targets), "-f", "json", "-q",
                          "--severity-level", "all", "--confidence-level", "all"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode in (0, 1), run.stderr[-2000:]  # 1: findings
    report = json.loads(run.stdout)
    assert not report["errors"], report["errors"]
    return report["results"]


def unexplained_nosec(*targets: Path) -> list[str]:
    """Lines whose `# nosec` names no test id or gives no reason."""
    out = []
    for target in targets:
        for path in sorted(target.rglob("*.py")) if target.is_dir() else [target]:
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if (m := NOSEC.search(line)) and not NAMED.match(m["rest"]):
                    out.append(f"{path.relative_to(target.parent)}:{number}: {line.strip()}")
    return out


def describe(results: list[dict]) -> str:
    return "\n".join(f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_severity']}/"
                     f"{r['issue_confidence']} {r['issue_text']}" for r in results)


def test_bandit_finds_nothing_in_the_services_and_the_gateway():
    results = bandit(*TARGETS)
    assert not results, f"bandit: {len(results)} findings\n{describe(results)}"
    assert not (bad := unexplained_nosec(*(ROOT / t for t in TARGETS))), "\n".join(bad)


def test_bandit_flags_a_bad_snippet(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import hashlib\nimport subprocess\n\nimport yaml\n\n\n"
                   "def run(command, text):\n"
                   "    subprocess.call(command, shell=True)\n"
                   "    hashlib.md5(text.encode()).hexdigest()\n"
                   "    return yaml.load(text)\n")
    flagged = {r["test_id"] for r in bandit(bad)}
    assert {"B602", "B324", "B506"} <= flagged, flagged  # shell=True, md5 for security, yaml.load
    silenced = tmp_path / "silenced.py"
    silenced.write_text("import subprocess\n\n\ndef run(command):\n"
                        "    subprocess.call(command, shell=True)  # nosec\n"
                        "    subprocess.call(command, shell=True)  # nosec B602\n"
                        "    subprocess.call(command, shell=True)  # nosec B602 # a constant command\n")
    assert [line.split(": ", 1)[0] for line in unexplained_nosec(silenced)] == ["silenced.py:5", "silenced.py:6"]


def _audit(pins: dict[str, str]) -> audit.Report:
    try:
        return audit.audit(pins)
    except audit.Unreachable as exc:
        pytest.skip(f"the advisory source is unreachable, nothing audited: {exc}")


def test_runtime_dependencies_have_no_known_vulnerabilities(request):
    pins = audit.runtime_dependencies()
    assert len(pins) >= 15 and {"aiohttp", "cryptography", "grpcio", "pyjwt"} <= set(pins), pins
    report = _audit(pins)
    print(report.summary())
    try:
        request.getfixturevalue("figures")(report.summary())
    except pytest.FixtureLookupError:
        pass
    assert not report.findings, "\n".join(report.findings)
    assert sum(p.audited for p in report.packages) >= len(pins) // 2, report.summary()  # coverage, not a formality


def test_the_audit_reports_a_vulnerable_pin():
    # pycrypto 2.6.1 is its newest release, with advisories and no fix: reported from the same source and path
    report = _audit({"pycrypto": "2.6.1"})
    assert report.packages[0].audited, report.summary()
    assert any("CVE-2013-7459" in f for f in report.findings), report.findings
    # an old aiohttp with published advisories: this source cannot vouch for it, so it fails too (not a pass)
    report = _audit({"aiohttp": "3.9.0"})
    assert not report.packages[0].audited and report.findings, report.summary()
    assert "not audited" in report.findings[-1], report.findings


def test_a_package_the_source_does_not_have_is_a_finding(monkeypatch):
    monkeypatch.setattr(audit, "_fetch", lambda name, timeout: (None, ""))  # PyPI's 404
    report = audit.audit({"aiohttp": "3.14.5"})
    assert report.packages[0].missing and report.findings == ["aiohttp 3.14.5: not on PyPI, so not audited"]
