"""gRPC servicer for file reputation: who may ask, validation, and proto <-> facts <-> analysis translation."""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path, PurePosixPath, PureWindowsPath

import grpc
from epm.reputation.v1 import file_reputation_service_pb2 as pb
from epm.reputation.v1 import file_reputation_service_pb2_grpc as pb_grpc

from ..common import errors
from ..common.auth import CONFIG_READ, CONFIG_WRITE, TokenVerifier, authorize
from ..common.enums import graph_names, graph_numbers
from ..common.timestamps import set_time
from . import importer, scoring
from .feeds import HASH_KINDS, formats, hex_digest
from .peers import Peers
from .publishers import leaf, normalize_name, normalize_thumbprint, parse_certificates
from .store import SHARED, FeedBusy, FeedFormatMismatch, ReputationStore

READ = (CONFIG_READ, CONFIG_WRITE)
WRITE = (CONFIG_WRITE,)
MAX_LOOKUP = 10_000
PROGRESS_BYTES = 8 << 20  # a RECEIVING progress message per this many bytes uploaded
MAX_TENANT_UPLOAD = 256 << 20  # a tenant's own list; shared feeds (the operator's) have no limit but the disk
MAX_TEXT, MAX_CERTIFICATES = 32_767, 256 * 1024  # characters per FileDetail field
SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
DIGEST = re.compile(r"[0-9a-f]{32}(?:[0-9a-f]{8}(?:[0-9a-f]{24})?)?\Z")  # MD5, SHA-1 or SHA-256, lowercase
DIGEST_LENGTHS = frozenset(HASH_KINDS)
NOUN = "publisher rule"
FORMAT_NAMES = {number: name for number, name in ((pb.FEED_FORMAT_LOLBAS, "lolbas"),
                (pb.FEED_FORMAT_LOLDRIVERS, "loldrivers"), (pb.FEED_FORMAT_MALWAREBAZAAR, "malwarebazaar"),
                (pb.FEED_FORMAT_NSRL, "nsrl"), (pb.FEED_FORMAT_NSRL_LEGACY, "nsrl-legacy"),
                (pb.FEED_FORMAT_HASH_LIST, "hashlist"))}
FORMAT_NUMBERS = {name: number for number, name in FORMAT_NAMES.items()}
ACCEPTED = {"sha256": ("sha256", "authentihash"), "sha1": ("sha1", "authentihash"), "md5": ("md5", "authentihash")}
ENUMS = {name: graph_numbers(descriptor) for name, descriptor in (
    ("reputation", pb.AppReputation.DESCRIPTOR), ("verdict", pb.Verdict.DESCRIPTOR),
    ("recommendation", pb.Recommendation.DESCRIPTOR), ("label", pb.Label.DESCRIPTOR),
    ("trust", pb.PublisherTrust.DESCRIPTOR), ("level", pb.RiskLevel.DESCRIPTOR))}
RULE_KINDS = graph_names(pb.PublisherRuleKind.DESCRIPTOR)
LABELS = ENUMS["label"]
REPUTATION_OF = {"allowed": pb.APP_REPUTATION_KNOWN_GOOD, "blocked": pb.APP_REPUTATION_KNOWN_MALICIOUS,
                 "malicious": pb.APP_REPUTATION_KNOWN_MALICIOUS,
                 "vulnerableDriver": pb.APP_REPUTATION_VULNERABLE_DRIVER, "knownGood": pb.APP_REPUTATION_KNOWN_GOOD}


class FileReputationServicer(pb_grpc.FileReputationServiceServicer):
    def __init__(self, store: ReputationStore, verifier: TokenVerifier, peers: Peers,
                 clock: Callable[[], datetime], operator_tenant: str = ""):
        self.store, self.verifier, self.peers, self.clock = store, verifier, peers, clock
        self.operator_tenant = operator_tenant.lower()

    async def _caller(self, context, scopes):
        return await authorize(self.verifier, context.invocation_metadata(), scopes)

    async def _writer(self, context):
        """A caller who may change what reviewers rely on (publisher rules, the tenant's own lists): the Graph
        write permission and, for a user, the Intune modify right. Otherwise anyone who may ask for an elevation
        could vouch for their own file."""
        caller = await self._caller(context, WRITE)
        if caller.delegated:
            await self.peers.require_modify(context.invocation_metadata())
        return caller

    # --- analysis -------------------------------------------------------------------------------------------

    async def AnalyzeFile(self, request, context):
        caller = await self._caller(context, READ)
        detail = request.file
        if not SHA256.match(detail.file_hash):
            raise errors.invalid("file.file_hash must be a SHA-256 digest: 64 hexadecimal characters.")
        if too_long := next((f.name for f, value in detail.ListFields() if isinstance(value, str)
                             and len(value) > (MAX_CERTIFICATES if f.name == "publisher_cert" else MAX_TEXT)), None):
            raise errors.invalid(f"file.{too_long} is too long.")
        file_hash = detail.file_hash.lower()
        certificates, problem = parse_certificates(detail.publisher_cert)
        cert = leaf(certificates)
        wanted = {("sha256", file_hash)}
        wanted |= {(kind, d) for kind in ("sha1", "md5") if (d := hex_digest(getattr(detail, kind), kind))}
        if name := _file_name(detail.file_name, detail.file_path):
            wanted.add(("fileName", name))
        wanted |= {("certificate", c.tbs_sha256) for c in certificates}
        rule_values = [cert.thumbprint, cert.thumbprint_sha256, normalize_name(cert.subject)] if cert else \
            [normalize_name(detail.publisher_name)] if detail.publisher_name.strip() else []
        keys = sorted({key for _, key in wanted})
        lookup = self.store.lookup_with_rules(caller.tenant_id, keys, rule_values) if rule_values else \
            self.store.lookup(caller.tenant_id, keys)
        rows, (activity, user, device, unavailable) = await asyncio.gather(
            lookup,
            self.peers.gather(file_hash, request.user_id, request.device_id, request.elevation_request_id,
                                context.invocation_metadata()))
        matches = tuple(_match(r) for r in rows if r["source"] is None or _expected(r, wanted))
        now = self.clock()
        facts = scoring.Facts(
            file_hash=file_hash, now=now, file_name=detail.file_name, file_path=detail.file_path,
            publisher_name=detail.publisher_name, certificate=cert, certificate_problem=problem, matches=matches,
            activity=activity, user=user if request.user_id else None, device=device if request.device_id else None)
        return _analysis(scoring.analyze(facts), facts, file_hash, unavailable)

    async def LookupHashes(self, request, context):
        """The hot path of other platforms: one query, and the response built in place from the rows."""
        caller = await self._caller(context, READ)
        if len(request.hashes) > MAX_LOOKUP:
            raise errors.invalid(f"At most {MAX_LOOKUP} hashes per call, not {len(request.hashes)}.")
        hashes = [h.lower() for h in request.hashes]
        if not _all_digests(hashes):
            bad = next(i for i, h in enumerate(hashes) if not DIGEST.match(h))
            raise errors.invalid(f"hashes[{bad}] is not a SHA-256, SHA-1 or MD5 digest: {hashes[bad][:80]!r}",
                                 index=str(bad))
        found: dict[str, list] = {}
        for row in await self.store.lookup(caller.tenant_id, list(dict.fromkeys(hashes))):
            if row["kind"] in scoring.HASH_KINDS:
                found.setdefault(row["key"], []).append(row)
        response = pb.LookupHashesResponse()
        add = response.results.add
        for value in hashes:
            rows = found.get(value)
            if rows is None:
                add(hash=value, app_reputation=pb.APP_REPUTATION_UNKNOWN)
                continue
            result = add(hash=value, app_reputation=_reputation(rows))
            for row in rows:
                result.sources.add().MergeFromString(row["source"])  # stored as the very message
        return response

    # --- feeds ----------------------------------------------------------------------------------------------

    async def ImportFeed(self, request_iterator, context):
        caller = await self._writer(context)
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("header"):
            raise errors.invalid("The first message must be the header.")
        header = first.header
        if header.format not in FORMAT_NAMES:
            raise errors.invalid(f"Unknown feed format {header.format}; one of {', '.join(FORMAT_NUMBERS)}.")
        fmt = formats()[FORMAT_NAMES[header.format]]
        feed = header.feed or fmt.name
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", feed):
            raise errors.invalid("feed must be 1-64 letters, digits, '.', '_' or '-'.")
        if header.shared and caller.tenant_id != self.operator_tenant:
            raise errors.RpcError(grpc.StatusCode.PERMISSION_DENIED, "NOT_OPERATOR",
                                  "Only the operator tenant may import feeds shared by every tenant.")
        tenant = SHARED if header.shared else caller.tenant_id
        with tempfile.TemporaryDirectory(prefix="epm-feed-") as directory:
            received, sent, paths = 0, 0, set()
            async for message in request_iterator:
                if not message.HasField("content"):
                    raise errors.invalid("Only the first message may be a header.")
                target = _upload_path(Path(directory), message.content.path or "upload")
                paths.add(target)
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("ab") as out:
                    out.write(message.content.data)
                received += len(message.content.data)
                if received > MAX_TENANT_UPLOAD and not header.shared:
                    raise errors.RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "UPLOAD_TOO_LARGE",
                                          f"A tenant's own feed is at most {MAX_TENANT_UPLOAD >> 20} MiB.")
                if received - sent >= PROGRESS_BYTES:
                    sent = received
                    yield pb.ImportFeedProgress(phase=pb.ImportFeedProgress.PHASE_RECEIVING, bytes_received=received)
            if not paths:
                raise errors.invalid("The upload holds no content.")
            source = next(iter(paths)) if len(paths) == 1 else Path(directory)
            try:
                async for progress in importer.run(self.store, tenant, feed, fmt, source, header.source_version):
                    message = _progress(progress, received)
                    if progress.done:
                        message.feed.CopyFrom(feed_to_proto(await self.store.feed(tenant, feed)))
                    yield message
            except FeedBusy:
                raise errors.RpcError(grpc.StatusCode.FAILED_PRECONDITION, "IMPORT_RUNNING",
                                      f"An import of feed '{feed}' is already running.") from None
            except FeedFormatMismatch as exc:
                raise errors.RpcError(grpc.StatusCode.FAILED_PRECONDITION, "FEED_FORMAT", str(exc)) from None
            except (ValueError, FileNotFoundError) as exc:
                raise errors.invalid(f"The upload is not {fmt.description}: {exc}") from None

    async def ListFeeds(self, request, context):
        caller = await self._caller(context, READ)
        return pb.ListFeedsResponse(feeds=[feed_to_proto(r) for r in await self.store.feeds(caller.tenant_id)])

    # --- publisher rules ------------------------------------------------------------------------------------

    async def CreatePublisherRule(self, request, context):
        caller = await self._writer(context)
        rule = request.rule
        if rule.kind == pb.PUBLISHER_RULE_KIND_CERTIFICATE:
            kind, value = "certificate", normalize_thumbprint(rule.value)
            if value is None:
                raise errors.invalid("value must be a certificate thumbprint: 40 (SHA-1) or 64 (SHA-256) hex digits.")
        elif rule.kind == pb.PUBLISHER_RULE_KIND_PUBLISHER_NAME:
            kind, value = "publisherName", normalize_name(rule.value)
            if not value or len(value) > 1024:
                raise errors.invalid("value must be a publisher name of 1 to 1024 characters.")
        else:
            raise errors.invalid(f"kind must be one of {', '.join(RULE_KINDS.values())}.")
        if len(rule.display_name) > 256 or len(rule.note) > 1024:
            raise errors.invalid("displayName is at most 256 characters and note at most 1024.")
        row, created = await self.store.create_rule(caller.tenant_id, kind, value, rule.blocked, rule.display_name,
                                                    rule.note)
        if not created and row["blocked"] != rule.blocked:
            raise errors.RpcError(grpc.StatusCode.ALREADY_EXISTS, "RULE_EXISTS",
                                  f"A rule already {'blocks' if row['blocked'] else 'trusts'} this {kind}; delete it "
                                  "first to change it.", id=str(row["id"]))
        return rule_to_proto(row)

    async def ListPublisherRules(self, request, context):
        caller = await self._caller(context, READ)
        return pb.ListPublisherRulesResponse(rules=[rule_to_proto(r) for r in await self.store.rules(caller.tenant_id)])

    async def DeletePublisherRule(self, request, context):
        caller = await self._writer(context)
        if not await self.store.delete_rule(caller.tenant_id, errors.uuid_id(request.id, NOUN)):
            raise errors.no_such(NOUN, request.id)
        return pb.DeletePublisherRuleResponse()


# --- translation --------------------------------------------------------------------------------------------

def _file_name(name: str, path: str) -> str:
    """The file name to look dual-use binaries up by: the given name, else the last part of the path."""
    text = name.strip() or PureWindowsPath(path.strip()).name
    return text.lower()


def _expected(row, wanted: set[tuple[str, str]]) -> bool:
    """Whether a row found by key is about what that key was asked as (a file hash, a name, a certificate)."""
    key, kind = row["key"], row["kind"]
    if kind in ("fileName", "certificate"):
        return (kind, key) in wanted
    return any((asked, key) in wanted for asked, kinds in ACCEPTED.items() if kind in kinds)


def _match(row) -> scoring.Match:
    """A feed entry (its stored SourceMatch) or a tenant publisher rule (no source) as scoring sees it."""
    if row["source"] is None:
        return scoring.Match(feed=scoring.RULES, feed_version="", own=True, label=row["label"], kind=row["kind"],
                             name=row["name"], title=row["title"])
    source = pb.SourceMatch.FromString(row["source"])
    return scoring.Match(feed=source.feed, feed_version=source.feed_version, own=source.tenant_owned,
                         label=row["label"], kind=row["kind"], name=source.name, title=source.title,
                         reference=source.reference, tags=tuple(source.tags))


def _all_digests(hashes: list[str]) -> bool:
    """Every one a lowercase MD5, SHA-1 or SHA-256 hex digest: C-speed passes over them all. bytes.fromhex skips
    whitespace, which then shows as a shorter result (str.isalnum would say so too, 20 times slower)."""
    joined = "".join(hashes)
    try:
        digits = 2 * len(bytes.fromhex(joined))
    except ValueError:
        return False
    return digits == len(joined) and set(map(len, hashes)) <= DIGEST_LENGTHS


def _reputation(rows) -> int:
    """LookupHashes: the app reputation that feed labels alone give (the same precedence as scoring)."""
    if len(rows) == 1:
        return REPUTATION_OF.get(rows[0]["label"], pb.APP_REPUTATION_UNKNOWN)
    labels = {r["label"] for r in rows}
    if "allowed" in labels and "blocked" not in labels:
        return pb.APP_REPUTATION_KNOWN_GOOD
    for label, reputation in (("blocked", pb.APP_REPUTATION_KNOWN_MALICIOUS),
                              ("malicious", pb.APP_REPUTATION_KNOWN_MALICIOUS),
                              ("vulnerableDriver", pb.APP_REPUTATION_VULNERABLE_DRIVER),
                              ("knownGood", pb.APP_REPUTATION_KNOWN_GOOD)):
        if label in labels:
            return reputation
    return pb.APP_REPUTATION_UNKNOWN


def _source(match: scoring.Match) -> pb.SourceMatch:
    return pb.SourceMatch(feed=match.feed, feed_version=match.feed_version, tenant_owned=match.own,
                          label=LABELS[match.label], matched_by=match.kind, name=match.name, title=match.title,
                          reference=match.reference, tags=match.tags)


def _risk(risk: scoring.Risk | None) -> pb.RiskAssessment | None:
    if risk is None:
        return None
    return pb.RiskAssessment(score=risk.score, level=ENUMS["level"][risk.level], factors=risk.factors)


def _analysis(analysis: scoring.Analysis, facts: scoring.Facts, file_hash: str,
              unavailable: list[str]) -> pb.FileAnalysis:
    cert = facts.certificate
    publisher = pb.PublisherAssessment(trust=ENUMS["trust"][analysis.publisher_trust],
                                       publisher_name=facts.publisher_name, reasons=analysis.publisher_reasons)
    if cert:
        publisher.subject, publisher.issuer, publisher.thumbprint = cert.subject, cert.issuer, cert.thumbprint
        set_time(publisher.not_before, cert.not_before)
        set_time(publisher.not_after, cert.not_after)
    message = pb.FileAnalysis(
        file_hash=file_hash, app_reputation=ENUMS["reputation"][analysis.app_reputation],
        sources=[_source(m) for m in analysis.sources], publisher=publisher,
        user_risk=_risk(analysis.user_risk), device_risk=_risk(analysis.device_risk),
        verdict=ENUMS["verdict"][analysis.verdict], risk_score=analysis.risk_score,
        recommendation=ENUMS["recommendation"][analysis.recommendation],
        evidence=[pb.Evidence(signal=e.signal, source=e.source, observed=e.observed, contribution=e.contribution,
                              reference=e.reference) for e in analysis.evidence],
        summary=analysis.summary, unavailable=unavailable)
    if (activity := facts.activity) is not None:
        message.prevalence.SetInParent()
        message.prevalence.devices, message.prevalence.users = activity.file_devices, activity.file_users
        message.prevalence.elevations = activity.file_elevations
        if activity.file_first_seen:
            set_time(message.prevalence.first_seen_date_time, activity.file_first_seen)
            set_time(message.prevalence.last_seen_date_time, activity.file_last_seen)
    set_time(message.analyzed_date_time, facts.now)
    return message


def _progress(progress: importer.Progress, received: int) -> pb.ImportFeedProgress:
    return pb.ImportFeedProgress(
        phase=pb.ImportFeedProgress.PHASE_DONE if progress.done else pb.ImportFeedProgress.PHASE_IMPORTING,
        bytes_received=received, records=progress.records, keys=progress.keys, problem_count=progress.problem_count,
        unchanged=progress.done and not progress.changed,
        problems=[pb.FeedProblem(location=p.location, message=p.message) for p in progress.problems])


def feed_to_proto(row) -> pb.Feed:
    feed = pb.Feed(name=row["name"], format=FORMAT_NUMBERS.get(row["format"], 0), shared=not row["own"],
                   version=row["version"], source_version=row["source_version"], records=row["records"],
                   keys=row["keys"], problem_count=row["problem_count"], digest=row["digest"])
    if row["imported_at"] is not None:
        set_time(feed.imported_date_time, row["imported_at"])
    return feed


def rule_to_proto(row) -> pb.PublisherRule:
    rule = pb.PublisherRule(
        id=str(row["id"]), value=row["value"], blocked=row["blocked"], display_name=row["display_name"],
        note=row["note"], kind=pb.PUBLISHER_RULE_KIND_CERTIFICATE if row["kind"] == "certificate"
        else pb.PUBLISHER_RULE_KIND_PUBLISHER_NAME)
    set_time(rule.created_date_time, row["created_at"])
    return rule


def _upload_path(root: Path, path: str) -> Path:
    """Where an uploaded file goes: below `root`, whatever the client named it."""
    parts = [p for p in PurePosixPath(path.replace("\\", "/")).parts if p not in ("", ".", "..", "/")]
    if not parts:
        raise errors.invalid(f"content.path {path!r} names no file.")
    return root.joinpath(*parts)
