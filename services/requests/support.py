"""Microsoft Managed Desktop (MMD) support elevation requests: a partner's support agent asks for an elevation on a
managed device for one of its tickets and closes the request when done. Each is an elevation request of the shared
lifecycle (source 'mmd', no file) that Graph reviewers see, approve and deny; its requester is the agent."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from datetime import datetime

import grpc
from epm.requests.v1 import support_elevation_service_pb2 as pb
from epm.requests.v1 import support_elevation_service_pb2_grpc as pb_grpc

from ..common import errors, listing, paging
from ..common.auth import MMD_DEVICE_READ, MMD_SUPPORT, TokenVerifier
from ..common.odata import Field, ODataError
from ..common.timestamps import set_time
from . import roles
from .devices import DeviceStore
from .lifecycle import MAX_JUSTIFICATION, State, TransitionError, closure_time, effective, is_successful
from .servicer import STATES, caller, domain_errors
from .store import EFFECTIVE_STATUS, SCOPED, NotFound, RequestStore

READ = (MMD_SUPPORT, MMD_DEVICE_READ)  # list, get and close
WRITE = (MMD_SUPPORT,)
SOURCE = "mmd"
NO_DEVICE = "This device does not exist."
NO_REQUEST = "This elevation request does not exist."
ALREADY_CLOSED = "This elevation request was already closed."
# The ticket's fields (proto names = columns) and their length limits; the required ones.
LIMITS = {"partner_ticket_id": 128, "device_name": 256, "title": 256, "category": 128, "subcategory": 128,
          "plan_of_action": 4000}
REQUIRED = ("partner_ticket_id", "device_name", "title", "plan_of_action")
TICKET = ("partner_ticket_id", "title", "category", "subcategory", "plan_of_action")
MAX_ACTIONS_TAKEN = 4000
MMD_SCOPED = SCOPED + f" AND source = '{SOURCE}'"  # $1 tenant, $2 now
_JSON = {f.name: f.json_name for f in pb.SupportElevationRequest.DESCRIPTOR.fields}
FIELDS: dict[str, Field] = {
    "id": Field("id::text", "string", casefold=True),
    "partnerId": Field("requested_by_user_id", "string"),
    "requestingAgentUpn": Field("requested_by_upn", "string", casefold=True),
    "deviceName": Field("device_name", "string", casefold=True),
    **{_JSON[c]: Field(c, "string") for c in (*TICKET, "actions_taken")},
    "closingAgentUpn": Field("closing_agent_upn", "string", casefold=True),
    "requestCreationTime": Field("created_at", "datetime"),
    "isSuccessfulRequest": Field(f"({EFFECTIVE_STATUS} IN ('approved', 'completed'))", "bool"),
}


def create_problem(request: pb.CreateSupportElevationRequestRequest) -> str | None:
    """Why a new request cannot be made, naming the property as MMD does; None when it can."""
    for name in REQUIRED:
        if not getattr(request, name).strip():
            return f"{_JSON[name]} is required."
    for name, limit in LIMITS.items():
        if len(getattr(request, name)) > limit:
            return f"{_JSON[name]} must be at most {limit} characters."
    return None


def justification(title: str, plan_of_action: str) -> str:
    """What Graph reviewers read as the request's justification: the title and the plan, at most 256 characters."""
    text = f"{title.strip()}: {plan_of_action.strip()}"
    return text if len(text) <= MAX_JUSTIFICATION else text[:MAX_JUSTIFICATION - 1] + "…"


def to_proto(row, now: datetime) -> pb.SupportElevationRequest:
    state = effective(State(row["status"]), row["valid_until"], now)
    message = pb.SupportElevationRequest(
        id=str(row["id"]), tenant_id=row["tenant_id"], partner_id=row["requested_by_user_id"],
        requesting_agent_upn=row["requested_by_upn"], device_name=row["device_name"],
        is_successful_request=is_successful(state), etag=str(row["version"]), status=STATES[state.value],
        device_id=row["device_id"], **{c: row[c] for c in (*TICKET, "actions_taken", "closing_agent_upn")})
    set_time(message.request_creation_time, row["created_at"])
    if (closed := closure_time(State(row["status"]), row["valid_until"], row["modified_at"], now)) is not None:
        set_time(message.request_closure_time, closed)
    return message


def _request_id(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise errors.not_found(NO_REQUEST, id=text[:100]) from None


@contextlib.contextmanager
def support_errors():
    """The lifecycle's outcomes in MMD's words; the rest as for every elevation request."""
    with domain_errors():
        try:
            yield
        except NotFound:
            raise errors.not_found(NO_REQUEST) from None
        except TransitionError as exc:
            raise errors.RpcError(grpc.StatusCode.FAILED_PRECONDITION, "ALREADY_CLOSED", ALREADY_CLOSED,
                                  state=exc.current.value) from None


class SupportElevationServicer(pb_grpc.SupportElevationServiceServicer):
    def __init__(self, store: RequestStore, devices: DeviceStore, verifier: TokenVerifier,
                 clock: Callable[[], datetime]):
        self.store, self.devices, self.verifier, self.clock = store, devices, verifier, clock

    async def _caller(self, context, scopes):  # MMD's permissions are the grant: no Intune right to check
        return await caller(self.verifier, self.store.pool, self.clock(), context, scopes)

    async def CreateSupportElevationRequest(self, request, context):
        principal, actor = await self._caller(context, WRITE)
        if problem := create_problem(request):
            raise errors.invalid(problem)
        device = await self.devices.named(principal.tenant_id, request.device_name.strip())
        if device is None:
            raise errors.not_found(NO_DEVICE, deviceName=request.device_name)
        fields = {
            "source": SOURCE, "requested_by_user_id": roles._canonical(principal.object_id),
            "requested_by_upn": principal.upn, "device_id": str(device["id"]), "device_name": device["device_name"],
            "request_justification": justification(request.title, request.plan_of_action), "file_hash": "",
            **{c: getattr(request, c).strip() for c in TICKET},
        }
        now = self.clock()
        with support_errors():
            row, _ = await self.store.create(principal.tenant_id, fields, actor, now)
        return to_proto(row, now)

    async def GetSupportElevationRequest(self, request, context):
        principal, _ = await self._caller(context, READ)
        row = await self.store.get(principal.tenant_id, _request_id(request.id))
        if row is None or row["source"] != SOURCE:
            raise errors.not_found(NO_REQUEST, id=request.id)
        return to_proto(row, self.clock())

    async def ListSupportElevationRequests(self, request, context):
        principal, _ = await self._caller(context, READ)
        now = self.clock()
        try:
            rows, token = await listing.fetch_page(
                self.store.pool, MMD_SCOPED, FIELDS, [principal.tenant_id, now], filter=request.filter,
                order_by=request.order_by or "requestCreationTime desc", size=paging.page_size(request.page_size),
                token=request.page_token, skip=max(request.skip, 0))
        except ODataError as exc:
            raise errors.invalid(str(exc)) from None
        return pb.ListSupportElevationRequestsResponse(elevation_requests=[to_proto(r, now) for r in rows],
                                                       next_page_token=token)

    async def CloseSupportElevationRequest(self, request, context):
        principal, actor = await self._caller(context, READ)
        if not principal.delegated:  # an application closes any request: that takes the write permission
            principal, actor = await self._caller(context, WRITE)
        if not request.actions_taken.strip():
            raise errors.invalid("actionsTaken is required: what was done on the device.")
        if len(request.actions_taken) > MAX_ACTIONS_TAKEN:
            raise errors.invalid(f"actionsTaken must be at most {MAX_ACTIONS_TAKEN} characters.")
        now = self.clock()
        with support_errors():  # an agent signed in (MWaaSDevice.Read) closes its own requests only
            row = await self.store.close(principal.tenant_id, _request_id(request.id), SOURCE,
                                         request.actions_taken.strip(), actor, now,
                                         only_by=principal.object_id if principal.delegated else "")
        return to_proto(row, now)
