"""FileReputationService over real gRPC and PostgreSQL, on the real LOLDrivers and LOLBAS feeds uploaded through
the streaming import: verdicts, publisher trust, history-driven risk, batch lookups, tenant lists, versions."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from epm.events.v1 import elevation_event_service_pb2 as events_pb
from epm.events.v1 import elevation_event_service_pb2_grpc as events_grpc
from epm.reputation.v1 import file_reputation_service_pb2 as pb
from epm.reputation.v1 import file_reputation_service_pb2_grpc as pb_grpc
from epm.requests.v1 import elevation_request_service_pb2 as requests_pb
from epm.requests.v1 import elevation_request_service_pb2_grpc as requests_grpc
from epm.requests.v1 import role_assignment_service_pb2 as roles_pb
from epm.requests.v1 import role_assignment_service_pb2_grpc as roles_grpc

from tests.claims import ROLE_ADMIN

from .. import feed_data
from ..certificates import certificate_chain

CONFIG_WRITE = "DeviceManagementConfiguration.ReadWrite.All"
CONFIG_READ = "DeviceManagementConfiguration.Read.All"
POWERSHELL = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"
MANAGER = "7f2d6a3c-0b1e-4c5d-9e8f-100000000001"  # Endpoint Privilege Manager: view + modify


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def md(bearer: str) -> tuple:
    return (("authorization", f"Bearer {bearer}"),)


@pytest.fixture
def stub(reputation_channel, shared_feeds):
    return pb_grpc.FileReputationServiceStub(reputation_channel)


@pytest.fixture
def caller(token):
    return md(token())


@pytest.fixture
def app(token):
    """A device agent's application token (Graph permissions as roles): creates, reviews, reports events."""
    return md(token(scopes=(), roles=(CONFIG_WRITE, "DeviceManagementManagedDevices.ReadWrite.All")))


async def analyze(stub, metadata, file_hash: str, **fields) -> pb.FileAnalysis:
    who = {k: fields.pop(k) for k in ("user_id", "user_principal_name", "device_id", "elevation_request_id")
           if k in fields}
    return await stub.AnalyzeFile(pb.AnalyzeFileRequest(file=pb.FileDetail(file_hash=file_hash, **fields), **who),
                                  metadata=metadata)


def signals(analysis: pb.FileAnalysis) -> dict[str, int]:
    return {e.signal: e.contribution for e in analysis.evidence}


# --- the real feeds -----------------------------------------------------------------------------------------

async def test_the_streaming_import_reports_progress_and_versions_the_feed(shared_feeds):
    samples = feed_data.driver_samples()
    for name, expected_records in (("loldrivers", None), ("lolbas", 243)):
        progress = shared_feeds[name]
        done = progress[-1]
        assert done.phase == pb.ImportFeedProgress.PHASE_DONE and done.problem_count == 0
        assert [p.phase for p in progress[:-1]] and all(p.phase in (pb.ImportFeedProgress.PHASE_RECEIVING,
                                                                    pb.ImportFeedProgress.PHASE_IMPORTING)
                                                        for p in progress[:-1])
        assert done.feed.name == name and done.feed.shared and done.feed.version >= 1
        assert done.feed.source_version == feed_data.snapshot(
            feed_data.loldrivers() if name == "loldrivers" else feed_data.lolbas())
        if expected_records:
            assert done.records == expected_records
    drivers = shared_feeds["loldrivers"][-1]
    assert drivers.records >= sum(len(v) for v in samples.values())  # every sample, plus malicious signers
    assert drivers.keys > drivers.records


async def test_a_known_malicious_driver_is_malicious(stub, caller):
    sample = feed_data.driver_samples()["malicious"][0]
    analysis = await analyze(stub, caller, sample["SHA256"].upper(), file_name=sample.get("Filename") or "x.sys")
    assert analysis.app_reputation == pb.APP_REPUTATION_KNOWN_MALICIOUS
    assert analysis.verdict == pb.VERDICT_MALICIOUS and analysis.recommendation == pb.RECOMMENDATION_DENY
    assert analysis.risk_score >= 95
    source = next(s for s in analysis.sources if s.label == pb.LABEL_MALICIOUS)
    assert source.feed == "loldrivers" and source.matched_by == "sha256"
    assert source.reference == f"https://www.loldrivers.io/drivers/{sample['Id']}/"
    assert source.feed_version == feed_data.snapshot(feed_data.loldrivers())
    assert "feed.malicious" in signals(analysis)
    assert analysis.summary.startswith("Known malicious: LOLDrivers lists it as malicious")
    assert "deny" in analysis.summary


async def test_a_vulnerable_driver_is_a_vulnerable_driver(stub, caller):
    sample = feed_data.driver_samples()["vulnerable driver"][0]
    analysis = await analyze(stub, caller, sample["SHA256"])
    assert analysis.app_reputation == pb.APP_REPUTATION_VULNERABLE_DRIVER
    assert analysis.verdict == pb.VERDICT_SUSPICIOUS and analysis.recommendation == pb.RECOMMENDATION_DENY
    assert analysis.risk_score >= 85
    assert analysis.summary.startswith("Vulnerable driver:")


async def test_a_driver_is_found_by_its_sha1_md5_and_authentihash_too(stub, caller):
    sample = next(s for s in feed_data.driver_samples()["vulnerable driver"]
                  if isinstance(s.get("Authentihash"), dict) and len(s["Authentihash"].get("SHA256") or "") == 64)
    by_other = await analyze(stub, caller, sha("not the file"), sha1=sample["SHA1"], md5=sample["MD5"])
    assert by_other.app_reputation == pb.APP_REPUTATION_VULNERABLE_DRIVER
    assert {s.matched_by for s in by_other.sources} == {"sha1", "md5"}
    by_authentihash = await analyze(stub, caller, sample["Authentihash"]["SHA256"])
    assert {s.matched_by for s in by_authentihash.sources} == {"authentihash"}


@pytest.mark.parametrize("name, path", [("powershell.exe", POWERSHELL), ("mshta.exe", r"C:\Windows\System32")])
async def test_powershell_and_mshta_are_dual_use(stub, caller, name, path):
    analysis = await analyze(stub, caller, sha(name + "build 1"), file_name=name, file_path=path,
                             publisher_name="Microsoft Windows")
    assert analysis.app_reputation == pb.APP_REPUTATION_DUAL_USE
    assert analysis.verdict == pb.VERDICT_SUSPICIOUS
    assert analysis.recommendation == pb.RECOMMENDATION_INVESTIGATE  # never approved on its own
    assert analysis.risk_score >= 50
    source = next(s for s in analysis.sources if s.label == pb.LABEL_DUAL_USE)
    assert source.feed == "lolbas" and source.matched_by == "fileName"
    assert "category:Execute" in source.tags and source.reference.startswith("https://github.com/LOLBAS-Project/")
    assert analysis.summary.startswith("Dual-use binary:")
    assert "feed.dualUse.relocated" not in signals(analysis)  # where Windows keeps it


async def test_a_dual_use_binary_copied_to_downloads_scores_higher(stub, caller):
    home = await analyze(stub, caller, sha("mshta"), file_name="mshta.exe", file_path=r"C:\Windows\System32")
    copied = await analyze(stub, caller, sha("mshta"), file_name="mshta.exe",
                           file_path=r"C:\Users\adele\Downloads\mshta.exe")
    assert {"feed.dualUse.relocated", "path.userWritable"} <= set(signals(copied))
    assert copied.risk_score > home.risk_score


async def test_the_file_name_may_come_from_the_path_alone(stub, caller):
    analysis = await analyze(stub, caller, sha("ps"), file_path=POWERSHELL)
    assert analysis.app_reputation == pb.APP_REPUTATION_DUAL_USE


# --- publishers ---------------------------------------------------------------------------------------------

async def test_an_unknown_unsigned_file_is_riskier_than_one_from_a_trusted_publisher(stub, app):
    unsigned = await analyze(stub, app, sha(f"tool {uuid.uuid4()}"), file_name="tool.exe",
                             file_path=r"C:\Tools\tool.exe")
    assert unsigned.app_reputation == pb.APP_REPUTATION_UNKNOWN
    assert unsigned.verdict == pb.VERDICT_UNKNOWN
    assert unsigned.publisher.trust == pb.PUBLISHER_TRUST_UNKNOWN and "publisher.unsigned" in signals(unsigned)
    assert unsigned.summary.startswith("Unknown file:") and "Unsigned" in unsigned.summary

    chain, leaf = certificate_chain("Contoso Tools Ltd")
    rule = await stub.CreatePublisherRule(pb.CreatePublisherRuleRequest(rule=pb.PublisherRule(
        kind=pb.PUBLISHER_RULE_KIND_CERTIFICATE, value=leaf.thumbprint.upper(), display_name="Contoso")),
        metadata=app)
    assert rule.value == leaf.thumbprint and not rule.blocked
    trusted = await analyze(stub, app, sha(f"tool {uuid.uuid4()}"), file_name="tool.exe",
                            file_path=r"C:\Tools\tool.exe", publisher_name="Contoso Tools Ltd", publisher_cert=chain)
    assert trusted.app_reputation == pb.APP_REPUTATION_UNKNOWN
    assert trusted.publisher.trust == pb.PUBLISHER_TRUST_TRUSTED
    assert trusted.publisher.subject == "Contoso Tools Ltd" and trusted.publisher.thumbprint == leaf.thumbprint
    assert trusted.risk_score < unsigned.risk_score
    assert trusted.verdict == pb.VERDICT_CLEAN and trusted.recommendation == pb.RECOMMENDATION_APPROVE


async def test_a_signed_file_from_an_unknown_publisher_sits_between(stub, caller):
    chain, _ = certificate_chain("Fabrikam Software")
    file_hash = sha(f"fabrikam {uuid.uuid4()}")
    signed = await analyze(stub, caller, file_hash, publisher_cert=chain)
    unsigned = await analyze(stub, caller, file_hash)
    assert signed.publisher.trust == pb.PUBLISHER_TRUST_KNOWN and signed.publisher.issuer == "Fabrikam Software CA"
    assert signed.risk_score < unsigned.risk_score


async def test_a_blocked_publisher_name_is_malicious_and_rules_stay_in_their_tenant(stub, app, token):
    created = await stub.CreatePublisherRule(pb.CreatePublisherRuleRequest(rule=pb.PublisherRule(
        kind=pb.PUBLISHER_RULE_KIND_PUBLISHER_NAME, value="  Shady   Tools LLC ", blocked=True)), metadata=app)
    assert created.value == "shady tools llc"
    again = await stub.CreatePublisherRule(pb.CreatePublisherRuleRequest(rule=pb.PublisherRule(
        kind=pb.PUBLISHER_RULE_KIND_PUBLISHER_NAME, value="shady tools llc", blocked=True)), metadata=app)
    assert again.id == created.id  # the same rule, not a second one
    blocked = await analyze(stub, app, sha("shady"), publisher_name="SHADY TOOLS LLC")
    assert blocked.publisher.trust == pb.PUBLISHER_TRUST_BLOCKED
    assert blocked.verdict == pb.VERDICT_MALICIOUS and blocked.risk_score == 100
    elsewhere = md(token(tenant=str(uuid.uuid4()), scopes=(), roles=(CONFIG_WRITE,)))  # may write in its tenant
    assert (await analyze(stub, elsewhere, sha("shady"), publisher_name="Shady Tools LLC")).publisher.trust == \
        pb.PUBLISHER_TRUST_KNOWN
    listed = await stub.ListPublisherRules(pb.ListPublisherRulesRequest(), metadata=app)
    assert [r.id for r in listed.rules] == [created.id]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.DeletePublisherRule(pb.DeletePublisherRuleRequest(id=created.id), metadata=elsewhere)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    await stub.DeletePublisherRule(pb.DeletePublisherRuleRequest(id=created.id), metadata=app)
    assert (await analyze(stub, app, sha("shady"), publisher_name="Shady Tools LLC")).publisher.trust == \
        pb.PUBLISHER_TRUST_KNOWN


async def test_bad_publisher_rules_and_certificates_are_refused_clearly(stub, app):
    for rule, words in ((pb.PublisherRule(kind=pb.PUBLISHER_RULE_KIND_CERTIFICATE, value="abc"), "thumbprint"),
                        (pb.PublisherRule(kind=pb.PUBLISHER_RULE_KIND_PUBLISHER_NAME, value="  "), "publisher name"),
                        (pb.PublisherRule(value="x"), "kind")):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CreatePublisherRule(pb.CreatePublisherRuleRequest(rule=rule), metadata=app)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in err.value.details()
    garbage = await analyze(stub, app, sha("garbage cert"), publisher_cert="bm90IGEgY2VydGlmaWNhdGU=")
    assert garbage.publisher.trust == pb.PUBLISHER_TRUST_UNTRUSTED
    assert "not a base64 X.509 certificate" in garbage.publisher.reasons[0]


# --- history ------------------------------------------------------------------------------------------------

async def test_risk_scores_move_with_the_users_and_the_devices_history(stub, app, requests_channel):
    """(An application token: a user would need the view right to read someone else's history.)"""
    requests = requests_grpc.ElevationRequestServiceStub(requests_channel)
    user, device, file_hash = str(uuid.uuid4()), f"device-{uuid.uuid4()}", sha(f"installer {uuid.uuid4()}")
    before = await analyze(stub, app, file_hash, user_id=user, device_id=device)
    assert list(before.unavailable) == []
    assert before.user_risk.level == pb.RISK_LEVEL_NONE and before.device_risk.level == pb.RISK_LEVEL_NONE

    for i in range(3):
        created = await requests.CreateElevationRequest(requests_pb.CreateElevationRequestRequest(
            elevation_request=requests_pb.ElevationRequest(
                requested_by_user_id=user, requested_on_device_id=device, request_justification="need it",
                application_detail=requests_pb.ElevationRequestApplicationDetail(
                    file_hash=sha(f"thing {i} {uuid.uuid4()}"), file_name=f"thing{i}.exe"))), metadata=app)
        await requests.DenyElevationRequest(requests_pb.ReviewElevationRequestRequest(
            id=created.id, reviewer_justification="no"), metadata=app)
    after = await analyze(stub, app, file_hash, user_id=user, device_id=device)
    assert after.user_risk.score >= before.user_risk.score + 45
    assert after.user_risk.level in (pb.RISK_LEVEL_MEDIUM, pb.RISK_LEVEL_HIGH)
    assert any("3 denied" in f for f in after.user_risk.factors)
    assert after.device_risk.score > before.device_risk.score
    assert after.risk_score > before.risk_score
    assert {"user.risk", "device.risk"} <= set(signals(after))
    # another user on another device is not affected
    fresh = await analyze(stub, app, file_hash, user_id=str(uuid.uuid4()), device_id="other-device")
    assert fresh.user_risk.score == before.user_risk.score


async def test_prevalence_comes_from_the_tenants_elevation_events(stub, caller, app, events_channel):
    events = events_grpc.ElevationEventServiceStub(events_channel)
    file_hash, long_ago = sha(f"common tool {uuid.uuid4()}"), datetime.now(timezone.utc) - timedelta(days=20)
    new = await analyze(stub, caller, file_hash)
    assert new.prevalence.devices == 0 and not new.prevalence.HasField("first_seen_date_time")
    assert "prevalence.new" in signals(new)
    batch = []
    for device in range(12):
        event = events_pb.ElevationEvent(device_id=f"pc-{device}", hash=file_hash, upn=f"u{device % 3}@contoso",
                                         elevation_type=events_pb.ELEVATION_TYPE_USER_CONFIRMED_ELEVATION)
        event.event_date_time.FromDatetime(long_ago + timedelta(days=device))
        batch.append(event)
    await events.IngestElevationEvents(iter([events_pb.IngestElevationEventsRequest(events=batch)]), metadata=app)
    common = await analyze(stub, caller, file_hash)
    assert (common.prevalence.devices, common.prevalence.users, common.prevalence.elevations) == (12, 3, 12)
    first_seen = common.prevalence.first_seen_date_time.ToDatetime(tzinfo=timezone.utc)
    assert abs(first_seen - long_ago) < timedelta(milliseconds=1)
    assert "prevalence.common" in signals(common) and "prevalence.new" not in signals(common)
    assert common.risk_score < new.risk_score


# --- batch lookup -------------------------------------------------------------------------------------------

async def test_lookup_hashes_answers_thousands_in_order(stub, caller):
    samples = feed_data.driver_samples()
    malicious = [s["SHA256"].lower() for s in samples["malicious"]]
    vulnerable = [s["SHA256"].lower() for s in samples["vulnerable driver"]]
    unknown = [sha(f"unknown {i}") for i in range(3000)]
    mixed = zip(unknown[:1500], malicious * 30, vulnerable, strict=False)
    hashes = [h for trio in mixed for h in trio] + unknown[1500:]
    assert len(hashes) > 4000
    answer = await stub.LookupHashes(pb.LookupHashesRequest(hashes=hashes), metadata=caller)
    assert [r.hash for r in answer.results] == hashes
    expected = {**{h: pb.APP_REPUTATION_UNKNOWN for h in unknown}}
    for h in vulnerable:
        expected[h] = pb.APP_REPUTATION_VULNERABLE_DRIVER
    for h in malicious:  # a hash in both lists counts as malicious
        expected[h] = pb.APP_REPUTATION_KNOWN_MALICIOUS
    assert [r.app_reputation for r in answer.results] == [expected[h] for h in hashes]
    assert all(r.sources for r in answer.results if r.app_reputation != pb.APP_REPUTATION_UNKNOWN)
    by_sha1 = await stub.LookupHashes(pb.LookupHashesRequest(hashes=[samples["malicious"][0]["SHA1"].upper()]),
                                      metadata=caller)
    assert by_sha1.results[0].app_reputation == pb.APP_REPUTATION_KNOWN_MALICIOUS


async def test_lookup_hashes_refuses_bad_input_by_position(stub, caller):
    spaced = sha("b")[:62] + " b"  # bytes.fromhex would skip the space
    for hashes, words in (([sha("a"), "xyz"], "hashes[1]"), ([sha("a"), sha("b"), spaced], "hashes[2]"),
                          ([sha("a")[:-2] + "\tb", sha("a")], "hashes[0]"), ([sha("a")[:40] + "ab"], "hashes[0]"),
                          ([sha("a")] * 10_001, "At most 10000")):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.LookupHashes(pb.LookupHashesRequest(hashes=hashes), metadata=caller)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in err.value.details()
    assert (await stub.LookupHashes(pb.LookupHashesRequest(), metadata=caller)).results == []


# --- authorisation ------------------------------------------------------------------------------------------

async def test_calls_need_a_token_and_the_right_permission(stub, token, reputation_address):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await analyze(stub, (), sha("x"))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    reader = md(token(scopes=[CONFIG_READ]))
    assert (await analyze(stub, reader, sha("x"))).app_reputation == pb.APP_REPUTATION_UNKNOWN
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreatePublisherRule(pb.CreatePublisherRuleRequest(rule=pb.PublisherRule(
            kind=pb.PUBLISHER_RULE_KIND_PUBLISHER_NAME, value="x")), metadata=reader)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    error = await feed_data.refused(reputation_address, reader, feed_data.requests_for(
        pb.FEED_FORMAT_LOLBAS, feed_data.lolbas() / "OSBinaries" / "Mshta.yml"))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_only_the_operator_tenant_imports_shared_feeds(stub, app, reputation_address):
    error = await feed_data.refused(reputation_address, app, feed_data.requests_for(
        pb.FEED_FORMAT_LOLBAS, feed_data.lolbas() / "OSBinaries" / "Mshta.yml", shared=True))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED and "operator" in error.details()


async def test_a_bad_analysis_request_is_refused(stub, caller):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await analyze(stub, caller, "not-a-hash")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "SHA-256" in err.value.details()


async def test_a_users_own_history_needs_no_role_but_someone_elses_does(requests_channel, token):
    requests = requests_grpc.ElevationRequestServiceStub(requests_channel)
    me, device = str(uuid.uuid4()), f"pc-{uuid.uuid4()}"
    mine = md(token(oid=me, upn="me@contoso.example"))
    await requests.CreateElevationRequest(requests_pb.CreateElevationRequestRequest(
        elevation_request=requests_pb.ElevationRequest(
            requested_on_device_id=device, application_detail=requests_pb.ElevationRequestApplicationDetail(
                file_hash=sha(f"own {uuid.uuid4()}")))), metadata=mine)
    history = await requests.GetRequestHistory(requests_pb.GetRequestHistoryRequest(
        user_id=me.upper(), device_id=device), metadata=mine)
    assert (history.user.total, history.user.pending, history.device.total, history.device.distinct_users) == \
        (1, 1, 1, 1)
    for asked in (requests_pb.GetRequestHistoryRequest(user_id=str(uuid.uuid4())),
                  requests_pb.GetRequestHistoryRequest(user_id=me, device_id="a-device-i-never-used")):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await requests.GetRequestHistory(asked, metadata=mine)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_the_verdict_attached_to_a_request_counts_in_the_requesters_history(stub, requests_channel, token, app):
    requests = requests_grpc.ElevationRequestServiceStub(requests_channel)
    me, device = str(uuid.uuid4()), f"pc-{uuid.uuid4()}"
    mine = md(token(oid=me, upn="me@contoso.example"))
    sample = feed_data.driver_samples()["malicious"][1]
    created = await requests.CreateElevationRequest(requests_pb.CreateElevationRequestRequest(
        elevation_request=requests_pb.ElevationRequest(
            requested_on_device_id=device, request_justification="printer driver",
            application_detail=requests_pb.ElevationRequestApplicationDetail(
                file_hash=sample["SHA256"], file_name="driver.sys"))), metadata=mine)
    assert not created.HasField("reputation")  # attached in the background, never on the create path
    for _ in range(100):
        found = await requests.GetElevationRequest(requests_pb.GetElevationRequestRequest(id=created.id), metadata=app)
        if found.HasField("reputation"):
            break
        await asyncio.sleep(0.05)
    assert (found.reputation.verdict, found.reputation.recommendation, found.reputation.app_reputation) == \
        ("malicious", "deny", "knownMalicious")
    assert found.reputation.risk_score >= 95 and found.etag == created.etag  # not a change of the request
    history = await requests.GetRequestHistory(requests_pb.GetRequestHistoryRequest(user_id=me), metadata=mine)
    assert history.user.malicious == 1
    later = await analyze(stub, app, sha(f"next {uuid.uuid4()}"), user_id=me, device_id=device)
    assert any("malicious files" in f for f in later.user_risk.factors) and later.user_risk.score >= 30


async def test_oversized_fields_and_uploads_are_refused(stub, app, reputation_address, tmp_path):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await analyze(stub, app, sha("long"), file_name="a" * 40_000)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "file_name is too long" in err.value.details()

    huge = tmp_path / "huge.csv"
    with huge.open("wb") as out:
        out.truncate(300 << 20)  # sparse: 300 MiB of nothing
    error = await feed_data.refused(reputation_address, app,
                                    feed_data.requests_for(pb.FEED_FORMAT_HASH_LIST, huge, feed="huge"))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "256 MiB" in error.details()


async def test_changing_what_reviewers_rely_on_needs_the_modify_right(stub, token, requests_channel, tmp_path):
    """A user with the Graph write scope (every requester has it) cannot vouch for a publisher or allow-list a
    hash: that takes the Intune modify right, which the requests service says the user holds."""
    roles = roles_grpc.RoleAssignmentServiceStub(requests_channel)
    user = str(uuid.uuid4())
    me = md(token(oid=user))
    lists = tmp_path / "mine.csv"
    lists.write_text(f"{sha(f'my own tool {uuid.uuid4()}')},allow\n")
    rule = pb.CreatePublisherRuleRequest(rule=pb.PublisherRule(kind=pb.PUBLISHER_RULE_KIND_PUBLISHER_NAME,
                                                               value=f"me {user}"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreatePublisherRule(rule, metadata=me)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and "Modify elevation requests" in err.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await feed_data.upload(stub, me, pb.FEED_FORMAT_HASH_LIST, lists, feed="mine")
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED

    admin = md(token(**ROLE_ADMIN))
    await roles.CreateRoleAssignment(roles_pb.CreateRoleAssignmentRequest(user_id=user, role_id=MANAGER),
                                     metadata=admin)
    mine = await roles.GetMyPermissions(roles_pb.GetMyPermissionsRequest(), metadata=me)
    assert mine.delegated and "elevationRequests.modify" in mine.permissions
    assert (await stub.CreatePublisherRule(rule, metadata=me)).value == f"me {user}"
    assert (await feed_data.upload(stub, me, pb.FEED_FORMAT_HASH_LIST, lists, feed="mine"))[-1].records == 1
