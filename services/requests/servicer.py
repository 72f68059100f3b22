"""gRPC servicer for elevation requests: who may do what, and proto <-> store translation."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import grpc
from epm.requests.v1 import elevation_request_service_pb2 as pb
from epm.requests.v1 import elevation_request_service_pb2_grpc as pb_grpc

from ..common import errors, paging
from ..common.auth import CONFIG_READ, CONFIG_WRITE, DEVICES_READ, DEVICES_WRITE, Principal, TokenVerifier, authorize
from ..common.enums import graph_numbers
from ..common.logs import request_id
from ..common.odata import ODataError
from ..common.timestamps import set_time
from . import roles
from .decisions import DecisionHub
from .lifecycle import Action, State, TransitionError, effective, justification_problem
from .store import DETAIL, Actor, ETagMismatch, NotFound, NotPending, RequestStore, SelfReview, TooManyOpen
from .verdicts import VerdictAttacher

READ = (CONFIG_READ, CONFIG_WRITE)
AUDIT_READ = (*READ, "DeviceManagementApps.Read.All", "DeviceManagementApps.ReadWrite.All")  # as Graph documents
WRITE = (CONFIG_WRITE,)
DEVICE_READ = (CONFIG_READ, CONFIG_WRITE, DEVICES_READ, DEVICES_WRITE)
DEVICE_WRITE = (CONFIG_WRITE, DEVICES_WRITE)
VIEW, MODIFY = "elevationRequests.view", "elevationRequests.modify"
RIGHTS = {VIEW: "View elevation requests", MODIFY: "Modify elevation requests"}
SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
STATES = graph_numbers(pb.State.DESCRIPTOR)
WATCH_POLL = 30.0  # seconds a caught-up watcher waits for a notification before re-reading anyway
DECISIONS_PAGE = 500
NOUN = "elevation request"
HISTORY_LOOKBACK_DAYS = 90


@contextlib.contextmanager
def domain_errors(request_id_: str = ""):
    """Store and state-machine outcomes as gRPC statuses."""
    try:
        yield
    except NotFound:
        raise errors.no_such(NOUN, request_id_) from None
    except ETagMismatch:
        raise errors.RpcError(grpc.StatusCode.ABORTED, "ETAG_MISMATCH",
                              "The elevation request was changed since that ETag was read.") from None
    except TransitionError as exc:
        raise errors.RpcError(grpc.StatusCode.FAILED_PRECONDITION, "INVALID_TRANSITION", str(exc),
                              state=exc.current.value) from None
    except NotPending as exc:  # a state conflict, like an invalid transition (Graph: 409)
        raise errors.RpcError(grpc.StatusCode.FAILED_PRECONDITION, "NOT_PENDING", str(exc),
                              state=exc.current.value) from None
    except SelfReview:
        raise errors.RpcError(grpc.StatusCode.PERMISSION_DENIED, "SELF_REVIEW",
                              "A reviewer cannot approve or deny their own elevation request.") from None
    except TooManyOpen:
        raise errors.RpcError(grpc.StatusCode.PERMISSION_DENIED, "TOO_MANY_OPEN_REQUESTS",
                              "This device has too many open elevation requests.") from None
    except ODataError as exc:
        raise errors.invalid(str(exc)) from None



def to_proto(row, now: datetime) -> pb.ElevationRequest:
    message = pb.ElevationRequest(
        id=str(row["id"]), requested_by_user_id=row["requested_by_user_id"],
        requested_by_user_principal_name=row["requested_by_upn"], requested_on_device_id=row["device_id"],
        device_name=row["device_name"], request_justification=row["request_justification"],
        status=STATES[effective(State(row["status"]), row["valid_until"], now).value],
        review_completed_by_user_id=row["reviewed_by_user_id"],
        review_completed_by_user_principal_name=row["reviewed_by_upn"],
        reviewer_justification=row["reviewer_justification"], etag=str(row["version"]),
        application_detail=pb.ElevationRequestApplicationDetail(**{k: row[k] for k in DETAIL}),
    )
    set_time(message.request_created_date_time, row["created_at"])
    set_time(message.request_last_modified_date_time, row["modified_at"])
    set_time(message.request_expiry_date_time, row["valid_until"])
    if row["reviewed_at"] is not None:
        set_time(message.review_completed_date_time, row["reviewed_at"])
    if row["analyzed_at"] is not None:
        message.reputation.CopyFrom(pb.ReputationSummary(
            verdict=row["verdict"], risk_score=row["risk_score"], recommendation=row["recommendation"],
            app_reputation=row["app_reputation"]))
        set_time(message.reputation.analyzed_date_time, row["analyzed_at"])
    return message


def category(resource_type: str) -> str:
    return "Role" if resource_type == "privilegedRoleAssignment" else "ElevationRequests"


def audit_to_proto(row) -> pb.AuditEvent:
    event = pb.AuditEvent(
        id=str(row["id"]), display_name=row["activity"], component_name="EndpointPrivilegeManagement",
        activity=row["activity"], activity_type=row["activity"], activity_operation_type=row["operation"],
        activity_result=row["result"], correlation_id=row["correlation_id"], category=category(row["resource_type"]),
        actor=pb.AuditActor(type=row["actor_type"], user_id=row["actor_id"], user_principal_name=row["actor_upn"]),
    )
    set_time(event.activity_date_time, row["at"])
    resource = event.resources.add(display_name=row["resource_name"], type=row["resource_type"],
                                   resource_id=row["resource_id"])
    if row["old_state"] or row["new_state"]:
        resource.modified_properties.add(display_name="status", old_value=row["old_state"],
                                         new_value=row["new_state"])
    if row["reason"]:
        resource.modified_properties.add(display_name="justification", new_value=row["reason"])
    return event


async def caller(verifier: TokenVerifier, pool, now: datetime, context, scopes,
                 right: str | None = None) -> tuple[Principal, Actor]:
    """The caller, checked for a Graph permission and, for users, the Intune right from a role assignment
    (application tokens carry no Intune roles: their Graph permission is the grant)."""
    principal = await authorize(verifier, context.invocation_metadata(), scopes)
    if right and principal.delegated:
        held = await roles.permissions(pool, principal.tenant_id, principal.object_id, now)
        if right not in held:
            raise errors.RpcError(
                grpc.StatusCode.PERMISSION_DENIED, "MISSING_ROLE",
                f"The Intune permission 'Endpoint Privilege Management Elevation Requests: {RIGHTS[right]}' "
                "is required; it comes with a role assignment such as Endpoint Privilege Manager.",
                right=right)
    actor = Actor("ItPro" if principal.delegated else "Application", principal.object_id, principal.upn,
                  request_id.get())
    return principal, actor


class ElevationRequestServicer(pb_grpc.ElevationRequestServiceServicer):
    def __init__(self, store: RequestStore, verifier: TokenVerifier, hub: DecisionHub,
                 clock: Callable[[], datetime], verdicts: VerdictAttacher | None = None):
        self.store, self.verifier, self.hub, self.clock, self.verdicts = store, verifier, hub, clock, verdicts

    async def _caller(self, context, scopes, right: str | None = None) -> tuple[Principal, Actor]:
        return await caller(self.verifier, self.store.pool, self.clock(), context, scopes, right)

    async def CreateElevationRequest(self, request, context):
        principal, actor = await self._caller(context, WRITE)
        fields = self._new_request(request.elevation_request, principal)
        now = self.clock()
        with domain_errors():
            row, created = await self.store.create(principal.tenant_id, fields, actor, now)
        if created and self.verdicts:
            self.verdicts.attach(principal.tenant_id, row, context)
        return to_proto(row, now)

    @staticmethod
    def _new_request(given: pb.ElevationRequest, principal: Principal) -> dict:
        detail = given.application_detail
        if principal.delegated:  # users ask for themselves
            user_id, upn = principal.object_id, principal.upn
        else:  # a device agent asks on behalf of its user
            user_id, upn = given.requested_by_user_id, given.requested_by_user_principal_name
        user_id = roles._canonical(user_id)  # an object id (GUID) in any case is the same user
        problems = [
            not given.requested_on_device_id.strip() and "requestedOnDeviceId is required.",
            not user_id and "requestedByUserId is required for application callers.",
            not SHA256.match(detail.file_hash) and "applicationDetail/fileHash must be a SHA-256 digest: "
                                                   "64 hexadecimal characters.",
            justification_problem(given.request_justification, "requestJustification"),
            *(len(getattr(detail, k)) > 32_767 and f"applicationDetail/{k} is too long." for k in DETAIL),
        ]
        if problem := next((p for p in problems if p), None):
            raise errors.invalid(problem)
        return {
            "requested_by_user_id": user_id, "requested_by_upn": upn,
            "device_id": given.requested_on_device_id, "device_name": given.device_name,
            "request_justification": given.request_justification,
            **{k: getattr(detail, k) for k in DETAIL}, "file_hash": detail.file_hash.lower(),
        }

    async def GetElevationRequest(self, request, context):
        principal, _ = await self._caller(context, READ, VIEW)
        row = await self.store.get(principal.tenant_id, errors.uuid_id(request.id, NOUN))
        if row is None:
            raise errors.no_such(NOUN, request.id)
        return to_proto(row, self.clock())

    async def ListElevationRequests(self, request, context):
        principal, _ = await self._caller(context, READ, VIEW)
        now = self.clock()
        with domain_errors():
            rows, token = await self.store.list(
                principal.tenant_id, now, filter=request.filter, order_by=request.order_by,
                size=paging.page_size(request.page_size), token=request.page_token, skip=max(request.skip, 0))
            total = await self.store.count(principal.tenant_id, now, request.filter) \
                if request.include_total_size else 0
        return pb.ListElevationRequestsResponse(
            elevation_requests=[to_proto(r, now) for r in rows], next_page_token=token, total_size=total)

    async def CountElevationRequests(self, request, context):
        principal, _ = await self._caller(context, READ, VIEW)
        with domain_errors():
            count = await self.store.count(principal.tenant_id, self.clock(), request.filter)
        return pb.CountElevationRequestsResponse(count=count)

    async def UpdateElevationRequest(self, request, context):
        principal, actor = await self._caller(context, WRITE, MODIFY)
        if problem := justification_problem(request.request_justification, "requestJustification"):
            raise errors.invalid(problem)
        now = self.clock()
        with domain_errors(request.id):
            row = await self.store.update_justification(principal.tenant_id, errors.uuid_id(request.id, NOUN),
                                                        request.request_justification, actor, now, request.etag)
        return to_proto(row, now)

    async def DeleteElevationRequest(self, request, context):
        principal, actor = await self._caller(context, WRITE, MODIFY)
        with domain_errors(request.id):
            await self.store.delete(principal.tenant_id, errors.uuid_id(request.id, NOUN), actor, self.clock(),
                                    request.etag)
        return pb.DeleteElevationRequestResponse()

    async def _review(self, request, context, action: Action):
        principal, actor = await self._caller(context, WRITE, MODIFY)
        if problem := justification_problem(request.reviewer_justification, "reviewerJustification"):
            raise errors.invalid(problem)
        now = self.clock()
        with domain_errors(request.id):
            row = await self.store.act(
                principal.tenant_id, errors.uuid_id(request.id, NOUN), action, actor, now,
                justification=request.reviewer_justification, etag=request.etag,
                forbid_self=action in (Action.APPROVE, Action.DENY))  # users and applications alike
        return to_proto(row, now)

    async def ApproveElevationRequest(self, request, context):
        return await self._review(request, context, Action.APPROVE)

    async def DenyElevationRequest(self, request, context):
        return await self._review(request, context, Action.DENY)

    async def RevokeElevationRequest(self, request, context):
        return await self._review(request, context, Action.REVOKE)

    async def RecordElevationUsage(self, request, context):
        principal, actor = await self._caller(context, DEVICE_WRITE)
        if not request.device_id or not SHA256.match(request.file_hash) or not request.HasField("used_date_time"):
            raise errors.invalid("device_id, a SHA-256 file_hash and used_date_time are required.")
        used_at = request.used_date_time.ToDatetime(tzinfo=self.clock().tzinfo)
        completed = await self.store.complete(principal.tenant_id, request.device_id, request.file_hash, used_at,
                                              actor, self.clock())
        return pb.RecordElevationUsageResponse(completed_ids=completed)

    async def WatchDecisions(self, request, context):
        principal, _ = await self._caller(context, DEVICE_READ, VIEW)
        if not request.device_id:
            raise errors.invalid("device_id is required.")
        cursor = max(request.after, 0)
        with self.hub.watch(principal.tenant_id, request.device_id) as wake:
            while True:
                wake.clear()  # before reading: a decision committed from here on wakes us again
                rows = await self.store.decisions(principal.tenant_id, request.device_id, cursor, DECISIONS_PAGE)
                for row in rows:
                    yield self._decision(row)
                    cursor = row["sequence"]
                if len(rows) < DECISIONS_PAGE:  # caught up: wait for news (or re-read now and then, to be safe)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(wake.wait(), WATCH_POLL)

    @staticmethod
    def _decision(row) -> pb.Decision:
        decision = pb.Decision(sequence=row["sequence"], elevation_request_id=str(row["request_id"]),
                               device_id=row["device_id"], file_hash=row["file_hash"], status=STATES[row["status"]])
        set_time(decision.decided_date_time, row["decided_at"])
        if row["valid_until"] is not None:
            set_time(decision.valid_until_date_time, row["valid_until"])
        return decision

    async def GetRequestHistory(self, request, context):
        """Counts for risk scoring. Another user's history needs the view right; without it a user may read their
        own, and that of a device they asked on (the reputation service asks with the requester's token when it
        judges a new request)."""
        principal = await authorize(self.verifier, context.invocation_metadata(), READ)
        user_id, device_id, now = roles._canonical(request.user_id), request.device_id, self.clock()
        if principal.delegated:
            own = roles._canonical(principal.object_id)
            if user_id not in ("", own) or (device_id and not await self.store.has_asked_on(
                    principal.tenant_id, own, device_id)):
                await self._caller(context, READ, VIEW)
        days = request.lookback_days or HISTORY_LOOKBACK_DAYS
        if not 0 < days <= 3660:
            raise errors.invalid("lookback_days must be between 1 and 3660.")
        exclude = None
        if request.exclude_request_id:
            with contextlib.suppress(ValueError):
                exclude = uuid.UUID(request.exclude_request_id)
        counts = await self.store.history(principal.tenant_id, now, now - timedelta(days=days), user_id, device_id,
                                          exclude)
        return pb.RequestHistory(user=pb.HistoryCounts(**counts["user"]) if user_id else None,
                                 device=pb.HistoryCounts(**counts["device"]) if device_id else None)

    async def ListAuditEvents(self, request, context):
        principal, _ = await self._caller(context, AUDIT_READ, VIEW)
        with domain_errors():
            rows, token = await self.store.audit_events(
                principal.tenant_id, filter=request.filter, order_by=request.order_by,
                size=paging.page_size(request.page_size), token=request.page_token, skip=max(request.skip, 0))
            total = await self.store.count_audit_events(principal.tenant_id, request.filter) \
                if request.include_total_size else 0
        return pb.ListAuditEventsResponse(audit_events=[audit_to_proto(r) for r in rows], next_page_token=token,
                                          total_size=total)
