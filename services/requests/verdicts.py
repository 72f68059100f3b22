"""Attaches the reputation service's verdict to each new request. Best effort and off the create path: a slow
or absent reputation service never slows or fails creation (the request then simply has no verdict)."""

from __future__ import annotations

import logging

import grpc
from epm.reputation.v1 import file_reputation_service_pb2 as reputation_pb
from epm.reputation.v1 import file_reputation_service_pb2_grpc as reputation_grpc

from ..common.background import Background, forwarded
from ..common.channels import connect
from ..common.enums import graph_names
from .store import DETAIL

log = logging.getLogger("epm.requests.verdicts")
TIMEOUT = 10.0
NAMES = {field: graph_names(enum) for field, enum in (
    ("verdict", reputation_pb.Verdict.DESCRIPTOR), ("recommendation", reputation_pb.Recommendation.DESCRIPTOR),
    ("app_reputation", reputation_pb.AppReputation.DESCRIPTOR))}


class VerdictAttacher:
    def __init__(self, address: str, store):
        self._channel = connect(address)
        self._stub = reputation_grpc.FileReputationServiceStub(self._channel)
        self._store = store
        self._background = Background()

    def attach(self, tenant: str, row, context) -> None:
        """Analyses the new request `row` in the background, with the creator's credentials."""
        self._background.start(self._attach(tenant, row, forwarded(context.invocation_metadata())))

    async def _attach(self, tenant: str, row, metadata) -> None:
        request = reputation_pb.AnalyzeFileRequest(
            file=reputation_pb.FileDetail(**{k: row[k] for k in DETAIL}), user_id=row["requested_by_user_id"],
            user_principal_name=row["requested_by_upn"], device_id=row["device_id"], device_name=row["device_name"],
            elevation_request_id=str(row["id"]))
        try:
            analysis = await self._stub.AnalyzeFile(request, metadata=metadata, timeout=TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            log.warning("no verdict for request %s: %s %s", row["id"], exc.code().name, exc.details())
            return
        await self._store.set_reputation(
            tenant, row["id"], verdict=NAMES["verdict"].get(analysis.verdict, ""), risk_score=analysis.risk_score,
            recommendation=NAMES["recommendation"].get(analysis.recommendation, ""),
            app_reputation=NAMES["app_reputation"].get(analysis.app_reputation, ""),
            analyzed_at=analysis.analyzed_date_time.ToDatetime(tzinfo=row["created_at"].tzinfo))

    async def close(self) -> None:
        await self._background.close()
        await self._channel.close()
