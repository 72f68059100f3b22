"""File reputation -> epm.reputation.v1.FileReputationService (extensions: Graph has no such resources).

  GET|POST /beta/deviceManagement/elevationRequests/{id}/analyze   the analysis of one request ("Analyze with Copilot")
  GET      /beta/security/fileReputations/{sha256}                 the analysis of a file by hash (?fileName=&filePath=)
  POST     /beta/security/fileReputations/analyze                  the analysis of a file described in the body
  POST     /beta/security/fileReputations/lookup                   feed data for many hashes: {"hashes": [...]}
  GET|POST /beta/security/publisherRules, DELETE .../{id}          the tenant's trusted and blocked publishers
  GET      /beta/security/reputationFeeds                          imported feeds and their versions
"""

from __future__ import annotations

from aiohttp import web
from epm.reputation.v1 import file_reputation_service_pb2 as pb
from epm.reputation.v1 import file_reputation_service_pb2_grpc as pb_grpc
from epm.requests.v1 import elevation_request_service_pb2 as requests_pb
from epm.requests.v1 import elevation_request_service_pb2_grpc as requests_grpc

from . import elevation_requests, graphjson, query
from .errors import GraphError, bad_request
from .graph import call_options, entity_body, located, member, read_json, reply, service_root, stub

SECURITY = "/beta/security"
ANALYSIS_SET, RULES_SET, FEEDS_SET = ("security/fileReputations", "security/publisherRules",
                                     "security/reputationFeeds")
DETAIL_FIELDS = [f.name for f in pb.FileDetail.DESCRIPTOR.fields]
MAX_LOOKUP = 10_000
NO_OPTIONS: frozenset[str] = frozenset()


def _stub(request: web.Request) -> pb_grpc.FileReputationServiceStub:
    return stub(request, "reputation", pb_grpc.FileReputationServiceStub)


def _analysis_reply(request: web.Request, analysis: pb.FileAnalysis) -> web.Response:
    body = {"id": analysis.file_hash, **graphjson.to_json(analysis)}
    return reply({"@odata.context": f"{service_root(request)}/$metadata#{ANALYSIS_SET}/$entity", **body})


async def analyze_request(request: web.Request) -> web.Response:
    """The analysis of an elevation request: its file, its requester and its device. Needs the view right."""
    if request.method == "POST" and request.can_read_body and await read_json(request) not in (None, {}):
        raise bad_request("This action takes no parameters.")
    requests = stub(request, "requests", requests_grpc.ElevationRequestServiceStub)
    found = await requests.GetElevationRequest(
        requests_pb.GetElevationRequestRequest(id=request.match_info["id"]), **call_options(request))
    detail = found.application_detail
    analysis = await _stub(request).AnalyzeFile(pb.AnalyzeFileRequest(
        file=pb.FileDetail(**{name: getattr(detail, name) for name in DETAIL_FIELDS if hasattr(detail, name)}),
        user_id=found.requested_by_user_id, user_principal_name=found.requested_by_user_principal_name,
        device_id=found.requested_on_device_id, device_name=found.device_name, elevation_request_id=found.id),
        **call_options(request))
    return _analysis_reply(request, analysis)


async def file_reputation(request: web.Request) -> web.Response:
    """A file by hash, optionally with ?fileName= and ?filePath= (to recognise dual-use binaries)."""
    unknown = set(request.query) - {"fileName", "filePath"}
    if unknown:
        raise bad_request(f"Query option '{sorted(unknown)[0]}' is not supported on this resource.")
    analysis = await _stub(request).AnalyzeFile(pb.AnalyzeFileRequest(file=pb.FileDetail(
        file_hash=request.match_info["sha256"], file_name=request.query.get("fileName", ""),
        file_path=request.query.get("filePath", ""))), **call_options(request))
    return _analysis_reply(request, analysis)


async def analyze_file(request: web.Request) -> web.Response:
    """{"file": {<elevationRequestApplicationDetail>, "sha1", "md5"}, "userId", "userPrincipalName", "deviceId",
    "deviceName"}: the same analysis an elevation request gets, for platforms with requests of their own."""
    given = pb.AnalyzeFileRequest()
    graphjson.from_json(await read_json(request), given, ignore=frozenset())
    return _analysis_reply(request, await _stub(request).AnalyzeFile(given, **call_options(request)))


async def lookup(request: web.Request) -> web.Response:
    body = await read_json(request)
    hashes = body.get("hashes") if isinstance(body, dict) else None
    if not isinstance(body, dict) or set(body) - {"hashes"} or not isinstance(hashes, list):
        raise bad_request('The body must be {"hashes": ["<sha256, sha1 or md5>", ...]}.')
    if not all(isinstance(h, str) for h in hashes):
        raise bad_request("Every entry of hashes must be a string.")
    if len(hashes) > MAX_LOOKUP:
        raise bad_request(f"At most {MAX_LOOKUP} hashes per call, not {len(hashes)}.")
    found = await _stub(request).LookupHashes(pb.LookupHashesRequest(hashes=hashes), **call_options(request))
    return reply({"@odata.context": f"{service_root(request)}/$metadata#Collection(microsoft.graph.hashReputation)",
                  "value": [graphjson.to_json(r) for r in found.results]})


async def list_rules(request: web.Request) -> web.Response:
    query.parse(request.query, NO_OPTIONS, frozenset())  # a short list, whole: any OData option is a 400
    found = await _stub(request).ListPublisherRules(pb.ListPublisherRulesRequest(), **call_options(request))
    return reply({"@odata.context": f"{service_root(request)}/$metadata#{RULES_SET}",
                  "value": [graphjson.to_json(r) for r in found.rules]})


async def create_rule(request: web.Request) -> web.Response:
    given = pb.PublisherRule()
    graphjson.from_json(await read_json(request), given)
    created = await _stub(request).CreatePublisherRule(pb.CreatePublisherRuleRequest(rule=given),
                                                       **call_options(request))
    body = entity_body(request, RULES_SET, graphjson.to_json(created))
    return located(request, reply(body, status=201), RULES_SET, created.id)


async def get_rule(request: web.Request) -> web.Response:
    found = await _stub(request).ListPublisherRules(pb.ListPublisherRulesRequest(), **call_options(request))
    rule = next((r for r in found.rules if r.id == request.match_info["id"].lower()), None)
    if rule is None:
        raise GraphError(404, f"No publisher rule with id '{request.match_info['id']}'.")
    return reply(entity_body(request, RULES_SET, graphjson.to_json(rule)))


async def delete_rule(request: web.Request) -> web.Response:
    await _stub(request).DeletePublisherRule(pb.DeletePublisherRuleRequest(id=request.match_info["id"]),
                                             **call_options(request))
    return web.Response(status=204)


async def list_feeds(request: web.Request) -> web.Response:
    query.parse(request.query, NO_OPTIONS, frozenset())
    found = await _stub(request).ListFeeds(pb.ListFeedsRequest(), **call_options(request))
    return reply({"@odata.context": f"{service_root(request)}/$metadata#{FEEDS_SET}",
                  "value": [{"id": f"{'shared' if f.shared else 'tenant'}.{f.name}", **graphjson.to_json(f)}
                            for f in found.feeds]})


def add_routes(app: web.Application) -> None:
    for item in member(elevation_requests.PATH):
        app.router.add_get(item + "/analyze", analyze_request)
        app.router.add_post(item + "/analyze", analyze_request)
    app.router.add_post(SECURITY + "/fileReputations/analyze", analyze_file)
    app.router.add_post(SECURITY + "/fileReputations/lookup", lookup)
    app.router.add_get(SECURITY + "/fileReputations/{sha256}", file_reputation)
    app.router.add_get(SECURITY + "/publisherRules", list_rules)
    app.router.add_post(SECURITY + "/publisherRules", create_rule)
    app.router.add_get(SECURITY + "/publisherRules/{id}", get_rule)
    app.router.add_delete(SECURITY + "/publisherRules/{id}", delete_rule)
    app.router.add_get(SECURITY + "/reputationFeeds", list_feeds)
