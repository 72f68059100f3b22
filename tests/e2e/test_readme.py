"""The README's API examples, run as written: every ```sh block of its API section, in order, in one bash from the
repository root, against `epm up` started as the README starts it (a real process on a fresh data directory and
database). Only the ports change (the README's 8080 and 9000 become free ones). Every curl must answer 2xx: bash
runs them through a function that checks the status line; a following stream (`follow=true`) that its --max-time
ends counts when it had answered 2xx. Blocks marked ```sh grpcurl need a tool a fresh machine lacks, and are
skipped."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from itertools import product
from pathlib import Path

import pytest

from tests.system import ROOT, EpmUp, drop_database, free_port, scratch_database

README = ROOT / "README.md"
SKIPPED = "sh grpcurl"  # the info string of blocks that need grpcurl

# Every curl of an example goes through this: the status of the last response must be 2xx (so also no redirect),
# and curl must succeed, except that a stream followed until --max-time ends with curl's exit 28.
HARNESS = r"""
set -euo pipefail
shopt -s inherit_errexit
curl() {
    local headers status rc=0
    headers=$(mktemp)
    command curl --show-error --dump-header "$headers" "$@" || rc=$?
    status=$(awk 'toupper($1) ~ /^HTTP\// { status = $2 } END { print status }' "$headers")
    rm -f "$headers"
    if [[ $status != 2?? ]]; then
        echo "README example: HTTP ${status:-no answer} from: curl $*" >&2
        return 1
    fi
    if [[ $rc == 28 && "$*" == *follow=true* && "$*" == *--max-time* ]]; then
        return 0
    fi
    return $rc
}
trap 'echo "README example failed (exit $?): $BASH_COMMAND" >&2' ERR
"""
VENV_EPM = ".venv/bin/epm() { \"$EPM_TEST_PYTHON\" -m services.cli \"$@\"; }\n"


def blocks(text: str) -> list[tuple[str, str]]:
    """(info string, body) of every fenced block of the README's API section."""
    section = text.split("\n## API\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```([^\n]*)\n(.*?)^```$", section, re.M | re.S)


def runnable(text: str) -> list[str]:
    return [body for info, body in blocks(text) if info == "sh"]


def script(bodies: list[str], ports: dict[str, int]) -> str:
    """The bash script of the examples, on these ports; `.venv/bin/epm` runs this interpreter's epm when the
    checkout has no .venv of its own."""
    text = "\n".join(bodies)
    text = text.replace("127.0.0.1:8080", f"127.0.0.1:{ports['gateway']}")
    text = text.replace("--port 9000", f"--port {ports['webhook']}")
    text = text.replace("127.0.0.1:9000", f"127.0.0.1:{ports['webhook']}")
    shim = "" if (ROOT / ".venv" / "bin" / "epm").exists() else VENV_EPM
    return HARNESS + shim + text


def run(up: EpmUp, bodies: list[str], directory: Path, timeout: float = 300) -> tuple[int, str, str]:
    """Runs the examples in one bash (a session of its own: what they start in the background goes with it);
    its exit code, stdout and stderr."""
    env = dict(up.env, EPM_TEST_PYTHON=sys.executable)
    out, err = directory / "readme.out", directory / "readme.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        bash = subprocess.Popen(["bash", "-c", script(bodies, up.ports)], cwd=ROOT, env=env, stdout=stdout,
                                stderr=stderr, start_new_session=True)
        try:
            code = bash.wait(timeout)
        except subprocess.TimeoutExpired:
            code = -1
        finally:
            try:
                os.killpg(bash.pid, signal.SIGTERM)  # the webhook it started in the background
            except ProcessLookupError:
                pass
            bash.wait()
    return code, out.read_text(errors="replace"), err.read_text(errors="replace")


@pytest.fixture(scope="module")
async def epm_up(server_url):
    database = await scratch_database(server_url)
    try:
        with tempfile.TemporaryDirectory(prefix="epm-readme-") as directory:
            with EpmUp(Path(directory), database) as up:
                up.ports["webhook"] = free_port()
                await up.ready()
                yield up
    finally:
        await drop_database(server_url, database)


def test_the_api_section_has_runnable_examples_and_skips_only_grpcurl():
    found = blocks(README.read_text())
    assert len(runnable(README.read_text())) >= 5
    skipped = [body for info, body in found if info != "sh" and info.startswith("sh")]
    assert skipped and all(info in ("sh", SKIPPED, "python") for info, _ in found)
    assert all("grpcurl" in body for body in skipped)
    assert not any(re.search(r"^\s*grpcurl\b", body, re.M) for body in runnable(README.read_text()))
    assert not any(re.search(r"\{[a-zA-Z]+\}", body) for body in runnable(README.read_text())), "placeholders"


async def test_every_api_example_runs_as_written(epm_up, tmp_path):
    code, out, err = run(epm_up, runnable(README.read_text()), tmp_path)
    assert code == 0, f"exit {code}\n--- stderr:\n{err[-6000:]}\n--- stdout:\n{out[-3000:]}"
    assert '"appReputation": "dualUse"' in out, out  # the README says mshta.exe is recognised once the feeds are in
    batch = re.search(r'\[\s*\{\s*"id": "1",.*?\]', out, re.S)  # the statuses of the README's $batch
    assert batch and json.loads(batch.group()) == [{"id": i, "status": 200} for i in "123"], out
    assert "Gave the dev admin the Endpoint Privilege Manager role" in epm_up.stdout()  # which the examples need
    assert "epm webhook: validated" in err  # the subscription's handshake reached the README's webhook


@pytest.mark.parametrize("example", [
    'curl -s http://127.0.0.1:8080/beta/deviceManagement/nothingHere -H "Authorization: Bearer $TOKEN"',  # 404
    "curl -s http://127.0.0.1:8080/beta/deviceManagement/managedDevices",  # 401: no token
    'X=$(curl -s http://127.0.0.1:8080/beta/security/reputationFeeds | jq -r .value)',  # 401 inside $( | jq)
    'curl -s -X POST http://127.0.0.1:8080/beta/security/publisherRules -H "Authorization: Bearer $TOKEN" '
    "-d '{\"kind\": \"nonsense\"}' | jq .",  # 400 at the head of a pipeline
    'curl -sN --max-time 2 "http://127.0.0.1:8080/beta/security/epm/auditEvents/stream?follow=true"',  # 401 follow
    "curl -s --max-time 5 http://127.0.0.1:9/",  # nobody listens
    "false",  # any command that fails
])
async def test_a_failing_example_fails_the_run(epm_up, tmp_path, example):
    """The harness cannot pass what does not work: each of these, after the README's first block (the token),
    fails the run."""
    first = runnable(README.read_text())[0]
    code, out, err = run(epm_up, [first, example], tmp_path, timeout=60)
    assert code != 0, f"{example!r} passed:\n{out}\n{err}"
    assert "README example failed" in err


def test_every_repository_path_the_readme_names_exists():
    """`services/common/feed.py`, `deploy/k8s/overlays/dev`, `protos/epm/{events,requests,reputation}/v1/`, ..."""
    tops = r"(?:services|gateway|tests|deploy|bench|protos|docs|\.ci)/"
    named = set(re.findall(rf"(?<![\w./-])({tops}[\w./{{}},*-]*)", README.read_text()))
    missing = [path for pattern in named for path in _expand(pattern.rstrip(".,"))
               if "*" not in path and not (ROOT / path).exists()]
    assert named and not missing, missing


def _expand(pattern: str) -> list[str]:
    """Brace expansion, as the shell does it: a/{b,c}/d -> a/b/d, a/c/d."""
    parts = re.split(r"\{([^{}]*)\}", pattern)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(c) for c in product(*choices)]
