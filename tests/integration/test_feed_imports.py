"""Feed imports through the gRPC stream and the `epm feeds` CLI, on real PostgreSQL: the CSV and SQLite formats,
tenant allow and block lists and their precedence, versions, idempotence, problems with line numbers, one import
at a time per feed, and an analysis that goes on when the history services are down."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import sys
import uuid
import zipfile
from dataclasses import replace

import grpc
import pytest
from epm.reputation.v1 import file_reputation_service_pb2 as pb
from epm.reputation.v1 import file_reputation_service_pb2_grpc as pb_grpc

from services.reputation import app as reputation_app
from services.reputation.store import ReputationStore

from .. import feed_data
from .test_reputation_grpc import md, sha

BAZAAR_HEADER = ('# "first_seen_utc","sha256_hash","md5_hash","sha1_hash","reporter","file_name","file_type_guess",'
                 '"mime_type","signature","clamav","vtpercent","imphash","ssdeep","tlsh"')


@pytest.fixture
def stub(reputation_channel, shared_feeds):
    return pb_grpc.FileReputationServiceStub(reputation_channel)


@pytest.fixture
def caller(token):
    """An application (an automation that maintains the tenant's lists): its Graph permission is the grant."""
    return md(token(scopes=(), roles=("DeviceManagementConfiguration.ReadWrite.All",)))


async def reputation_of(stub, metadata, *hashes: str) -> list[int]:
    answer = await stub.LookupHashes(pb.LookupHashesRequest(hashes=hashes), metadata=metadata)
    return [r.app_reputation for r in answer.results]


def bazaar_csv(rows: list[tuple[str, str, str, str]]) -> str:
    """A MalwareBazaar export: the banner, the column comment, then `", "`-separated quoted rows."""
    lines = ["#" * 64, "# MalwareBazaar full malware samples dump (CSV)", "#", BAZAAR_HEADER]
    for sha256, md5, name, family in rows:
        fields = ["2026-11-30 08:15:00", sha256, md5, "n/a", "abuse_ch", name, "exe", "application/x-dosexec",
                  family, "n/a", "n/a", "n/a", "n/a", "n/a"]
        lines.append(", ".join(f'"{f}"' for f in fields))
    return "\n".join(lines) + "\n"


# --- formats -----------------------------------------------------------------------------------------------

async def test_a_tenant_hash_list_reports_bad_rows_by_line_and_imports_the_rest(stub, caller, token, tmp_path):
    blocked, allowed = sha(f"blocked {uuid.uuid4()}"), sha(f"allowed {uuid.uuid4()}")
    vulnerable = feed_data.driver_samples()["vulnerable driver"][1]["SHA256"].lower()
    lists = tmp_path / "lists.csv"
    lists.write_text(f"hash,verdict,name,comment\n{blocked},block,dropper.exe,ticket 1\n# a comment\n"
                     f"nothex,block\n{allowed.upper()},allow,tool.exe\n{vulnerable},allow,asr.sys,vendor says ok\n"
                     f"{sha('x')},maybe\n")
    done = (await feed_data.upload(stub, caller, pb.FEED_FORMAT_HASH_LIST, lists, feed="soc-lists"))[-1]
    assert (done.records, done.problem_count) == (3, 2)
    assert [(p.location, p.message.split(":")[0]) for p in done.problems] == [
        ("lists.csv:4", "not a SHA-256, SHA-1 or MD5 digest"),
        ("lists.csv:7", "the verdict must be allow or block, not 'maybe'")]
    assert done.feed.name == "soc-lists" and not done.feed.shared and done.feed.version == 1

    assert await reputation_of(stub, caller, blocked, allowed) == [pb.APP_REPUTATION_KNOWN_MALICIOUS,
                                                                   pb.APP_REPUTATION_KNOWN_GOOD]
    block = await stub.AnalyzeFile(pb.AnalyzeFileRequest(file=pb.FileDetail(file_hash=blocked)), metadata=caller)
    assert block.verdict == pb.VERDICT_MALICIOUS and block.risk_score == 100
    assert block.sources[0].tenant_owned and block.sources[0].label == pb.LABEL_BLOCKED
    # the tenant's explicit allow beats the shared feed, and the summary says what it overrides
    allow = await stub.AnalyzeFile(pb.AnalyzeFileRequest(file=pb.FileDetail(file_hash=vulnerable)), metadata=caller)
    assert allow.app_reputation == pb.APP_REPUTATION_KNOWN_GOOD and allow.recommendation == pb.RECOMMENDATION_APPROVE
    assert allow.risk_score <= 10 and "LOLDrivers" in allow.summary and "Allowed by your organization" in allow.summary
    # another tenant sees none of it
    other = md(token(tenant=str(uuid.uuid4())))
    assert await reputation_of(stub, other, blocked, vulnerable) == [pb.APP_REPUTATION_UNKNOWN,
                                                                     pb.APP_REPUTATION_VULNERABLE_DRIVER]
    listed = await stub.ListFeeds(pb.ListFeedsRequest(), metadata=caller)
    assert {(f.name, f.shared) for f in listed.feeds} >= {("soc-lists", False), ("loldrivers", True), ("lolbas", True)}
    assert "soc-lists" not in {f.name for f in (await stub.ListFeeds(pb.ListFeedsRequest(), metadata=other)).feeds}


async def test_a_new_version_replaces_the_old_and_the_same_data_changes_nothing(stub, caller, tmp_path):
    first, second = sha(f"one {uuid.uuid4()}"), sha(f"two {uuid.uuid4()}")
    lists = tmp_path / "blocklist.csv"
    lists.write_text(f"{first},block\n{second},block\n")
    one = (await feed_data.upload(stub, caller, pb.FEED_FORMAT_HASH_LIST, lists, feed="blocklist"))[-1]
    again = (await feed_data.upload(stub, caller, pb.FEED_FORMAT_HASH_LIST, lists, feed="blocklist"))[-1]
    assert again.unchanged and again.feed.version == one.feed.version == 1 and again.feed.digest == one.feed.digest
    lists.write_text(f"{second},block\n")
    two = (await feed_data.upload(stub, caller, pb.FEED_FORMAT_HASH_LIST, lists, feed="blocklist"))[-1]
    assert not two.unchanged and two.feed.version == 2 and two.feed.records == 1
    assert await reputation_of(stub, caller, first, second) == [pb.APP_REPUTATION_UNKNOWN,
                                                                pb.APP_REPUTATION_KNOWN_MALICIOUS]
    with pytest.raises(grpc.aio.AioRpcError) as err:  # a feed keeps its format
        await feed_data.upload(stub, caller, pb.FEED_FORMAT_MALWAREBAZAAR, lists, feed="blocklist")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "hashlist" in err.value.details()


async def test_a_malwarebazaar_export_zipped_or_not(stub, caller, tmp_path):
    samples = [(sha(f"sample {i} {uuid.uuid4()}"), hashlib.md5(str(i).encode()).hexdigest(), f"invoice{i}.exe",
                "AgentTesla" if i % 2 else "n/a") for i in range(50)]
    text = bazaar_csv(samples).replace(f'"{samples[7][0]}"', '"tooshort"')
    csv_path = tmp_path / "full.csv"
    csv_path.write_text(text)
    done = (await feed_data.upload(stub, caller, pb.FEED_FORMAT_MALWAREBAZAAR, csv_path, feed="bazaar"))[-1]
    assert (done.records, done.problem_count) == (49, 1) and done.problems[0].location == "full.csv:12"
    analysis = await stub.AnalyzeFile(pb.AnalyzeFileRequest(file=pb.FileDetail(file_hash=samples[1][0])),
                                      metadata=caller)
    assert analysis.app_reputation == pb.APP_REPUTATION_KNOWN_MALICIOUS and analysis.verdict == pb.VERDICT_MALICIOUS
    source = analysis.sources[0]
    assert (source.feed, source.title, source.name) == ("bazaar", "AgentTesla", "invoice1.exe")
    assert source.reference == f"https://bazaar.abuse.ch/sample/{samples[1][0]}/"
    by_md5 = await stub.AnalyzeFile(pb.AnalyzeFileRequest(file=pb.FileDetail(file_hash=sha("other"),
                                                                             md5=samples[2][1])), metadata=caller)
    assert by_md5.app_reputation == pb.APP_REPUTATION_KNOWN_MALICIOUS and by_md5.sources[0].matched_by == "md5"

    zipped = tmp_path / "full.csv.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("full.csv", text)
    same = (await feed_data.upload(stub, caller, pb.FEED_FORMAT_MALWAREBAZAAR, zipped, feed="bazaar"))[-1]
    assert same.unchanged and same.records == 49


def nsrl_database(path, files: list[tuple[str, str, str, str]]) -> None:
    """An NSRL RDSv3 database with its real tables (hashes upper case, as NIST ships them)."""
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE VERSION (version VARCHAR UNIQUE NOT NULL, build_set VARCHAR NOT NULL,
            build_date TIMESTAMP NOT NULL, release_date TIMESTAMP NOT NULL, description VARCHAR NOT NULL);
        CREATE TABLE MFG (manufacturer_id INTEGER NOT NULL PRIMARY KEY, name VARCHAR NOT NULL);
        CREATE TABLE OS (operating_system_id INTEGER NOT NULL, name VARCHAR NOT NULL, version VARCHAR NOT NULL,
            manufacturer_id INTEGER NOT NULL, PRIMARY KEY (operating_system_id, manufacturer_id));
        CREATE TABLE PKG (package_id INTEGER NOT NULL, name VARCHAR NOT NULL, version VARCHAR NOT NULL,
            operating_system_id INTEGER NOT NULL, manufacturer_id INTEGER NOT NULL, language VARCHAR NOT NULL,
            application_type VARCHAR NOT NULL,
            PRIMARY KEY (package_id, operating_system_id, manufacturer_id, language, application_type));
        CREATE TABLE FILE (sha256 VARCHAR NOT NULL, sha1 VARCHAR NOT NULL, md5 VARCHAR NOT NULL,
            crc32 VARCHAR NOT NULL, file_name VARCHAR NOT NULL, file_size INTEGER NOT NULL,
            package_id INTEGER NOT NULL, PRIMARY KEY (sha256, sha1, md5, file_name, file_size, package_id));
        INSERT INTO VERSION VALUES ('2026.09.1', 'modern minimal', '2026-09-01', '2026-09-15', 'test build');
        INSERT INTO MFG VALUES (7, 'Git for Windows');
        INSERT INTO PKG VALUES (42, 'Git', '2.45.1', 1, 7, 'English', 'Development');
    """)
    db.executemany("INSERT INTO FILE VALUES (?, ?, ?, '00000000', ?, 1024, 42)", files)
    db.commit()
    db.close()


async def test_nsrl_rds_v3_and_the_legacy_text_file(stub, caller, tmp_path):
    git = [(sha(f"git {i}").upper(), hashlib.sha1(f"git {i}".encode()).hexdigest().upper(),
            hashlib.md5(f"git {i}".encode()).hexdigest().upper(), f"git{i}.exe") for i in range(20)]
    nsrl_database(tmp_path / "RDS_2026.09.1_modern_minimal.db", git)
    done = (await feed_data.upload(stub, caller, pb.FEED_FORMAT_NSRL, tmp_path / "RDS_2026.09.1_modern_minimal.db",
                                   feed="nsrl"))[-1]
    assert (done.records, done.keys, done.feed.source_version) == (20, 60, "2026.09.1")
    analysis = await stub.AnalyzeFile(pb.AnalyzeFileRequest(file=pb.FileDetail(
        file_hash=git[3][0].lower(), file_name="git3.exe")), metadata=caller)
    assert analysis.app_reputation == pb.APP_REPUTATION_KNOWN_GOOD and "feed.knownGood" in \
        {e.signal for e in analysis.evidence}
    assert analysis.sources[0].title == "Git 2.45.1" and "manufacturer:Git for Windows" in analysis.sources[0].tags
    assert "not a promise that it is benign" in analysis.summary

    legacy = tmp_path / "NSRLFile.txt"
    sha1 = hashlib.sha1(b"setup, with a comma").hexdigest().upper()
    legacy.write_text('"SHA-1","MD5","CRC32","FileName","FileSize","ProductCode","OpSystemCode","SpecialCode"\n'
                      f'"{sha1}","{hashlib.md5(b"s").hexdigest().upper()}","0","setup, v2.exe",100,1234,"358",""\n'
                      '"XYZ","ABC","0","broken.exe",1,1,"1",""\n')
    old = (await feed_data.upload(stub, caller, pb.FEED_FORMAT_NSRL_LEGACY, legacy, feed="nsrl-2.x"))[-1]
    assert (old.records, old.problem_count, old.problems[0].location) == (1, 1, "NSRLFile.txt:3")
    found = await stub.LookupHashes(pb.LookupHashesRequest(hashes=[sha1]), metadata=caller)
    assert found.results[0].app_reputation == pb.APP_REPUTATION_KNOWN_GOOD
    assert found.results[0].sources[0].name == "setup, v2.exe"


async def test_an_upload_that_is_not_the_format_is_refused_and_changes_nothing(stub, caller, tmp_path,
                                                                               reputation_address):
    junk = tmp_path / "not.db"
    junk.write_bytes(b"SQLite format 2? no")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await feed_data.upload(stub, caller, pb.FEED_FORMAT_NSRL, junk, feed="nsrl-junk")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "NSRL" in err.value.details()
    no_header = iter([pb.ImportFeedRequest(content=pb.FeedContent(path="a", data=b"x"))])
    bad_name = feed_data.requests_for(pb.FEED_FORMAT_HASH_LIST, junk, feed="../../etc")
    for messages, words in ((no_header, "header"), (bad_name, "feed must be")):
        error = await feed_data.refused(reputation_address, caller, messages)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and words in error.details()


async def test_uploaded_paths_cannot_leave_the_upload_folder(stub, caller):
    data = f"{sha('escape')},block\n".encode()
    messages = [pb.ImportFeedRequest(header=pb.ImportHeader(format=pb.FEED_FORMAT_HASH_LIST, feed="escape")),
                pb.ImportFeedRequest(content=pb.FeedContent(path="../../../tmp/evil.csv", data=data))]
    done = [p async for p in stub.ImportFeed(iter(messages), metadata=caller)][-1]
    assert done.records == 1 and not os.path.exists("/tmp/evil.csv")


async def test_one_import_at_a_time_per_feed(stub, caller, tenant, reputation_service, settings, tmp_path):
    from services.common import db

    pool = await db.create_pool(settings.database_url, 2)
    try:
        async with ReputationStore(pool).importing(tenant, "busy", "hashlist"):
            lists = tmp_path / "busy.csv"
            lists.write_text(f"{sha('busy')},block\n")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await feed_data.upload(stub, caller, pb.FEED_FORMAT_HASH_LIST, lists, feed="busy")
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "already running" in err.value.details()
            other = (await feed_data.upload(stub, caller, pb.FEED_FORMAT_HASH_LIST, lists, feed="not-busy"))[-1]
            assert other.records == 1
        done = (await feed_data.upload(stub, caller, pb.FEED_FORMAT_HASH_LIST, lists, feed="busy"))[-1]
        assert done.feed.version == 1  # the import that was abandoned left nothing behind
    finally:
        await pool.close()


# --- the CLI -----------------------------------------------------------------------------------------------

async def test_the_cli_imports_a_real_feed_into_the_database(settings, tmp_path, caller, stub):
    feed = f"lolbas-{uuid.uuid4().hex[:6]}"
    env = dict(os.environ, EPM_DATABASE_URL=settings.database_url)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "feeds", "import", "lolbas", str(feed_data.lolbas()), "--feed", feed,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    summary = json.loads(out)
    assert (summary["feed"], summary["tenant"], summary["records"], summary["problems"]) == (feed, "(shared)", 243, 0)
    assert summary["sourceVersion"] == feed_data.snapshot(feed_data.lolbas()) and summary["changed"]
    listed = {f.name: f for f in (await stub.ListFeeds(pb.ListFeedsRequest(), metadata=caller)).feeds}
    assert listed[feed].records == 243 and listed[feed].shared

    broken = tmp_path / "yml"
    broken.mkdir()
    (broken / "Good.yml").write_text((feed_data.lolbas() / "OSBinaries" / "Mshta.yml").read_text())
    (broken / "Bad.yml").write_text("Name: Bad.exe\nCommands: [unclosed\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "feeds", "import", "lolbas", str(broken), "--feed", f"{feed}-b",
        "--tenant", str(uuid.uuid4()), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0 and json.loads(out)["records"] == 1 and json.loads(out)["problems"] == 1
    assert "Bad.yml:3: not valid YAML" in err.decode()

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "feeds", "import", "nsrl", str(tmp_path / "missing.db"),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1 and "no such file" in err.decode()


# --- degraded history ------------------------------------------------------------------------------------

async def test_an_analysis_goes_on_without_the_history_services(settings, reputation_service, caller, tmp_path):
    address = f"unix:{tmp_path}/lonely.sock"
    lonely = await reputation_app.start(replace(settings, events_addr="127.0.0.1:9", requests_addr="127.0.0.1:9"),
                                        address)
    channel = grpc.aio.insecure_channel(address)
    try:
        stub = pb_grpc.FileReputationServiceStub(channel)
        sample = feed_data.driver_samples()["malicious"][0]
        analysis = await stub.AnalyzeFile(pb.AnalyzeFileRequest(
            file=pb.FileDetail(file_hash=sample["SHA256"]), user_id=str(uuid.uuid4()), device_id="pc-1"),
            metadata=caller)
        assert sorted(analysis.unavailable) == ["events", "requests"]
        assert analysis.verdict == pb.VERDICT_MALICIOUS  # the feeds still speak
        assert not analysis.HasField("user_risk") and not analysis.HasField("prevalence")
    finally:
        await channel.close()
        await lonely.stop(1)
