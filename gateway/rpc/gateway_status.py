"""GatewayService: the operator's GetStatus."""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal

from alp.v3 import gateway_service_pb2 as pb
from alp.v3 import gateway_service_pb2_grpc

from gateway.rpc.convert import timestamp
from gateway.rpc.servicer_base import Context
from gateway.status import GatewayState


class GatewayStatusServicer(gateway_service_pb2_grpc.GatewayServiceServicer):
    def __init__(self, state: Callable[[], GatewayState]) -> None:
        self._state = state

    async def GetStatus(
        self, request: pb.GetStatusRequest, context: Context
    ) -> pb.GetStatusResponse:
        state = self._state()
        reply = pb.GetStatusResponse(
            serving=state.serving,
            streams=state.streams,
            subscribers=state.subscribers,
            cache_hits=state.cache_hits,
            cache_misses=state.cache_misses,
            upstream_calls=state.upstream_calls,
            upstream_retries=state.upstream_retries,
            ws_frames_rejected=state.ws_frames_rejected,
        )
        for conn in state.connections:
            reply.connections.add(
                name=conn.name,
                connected=conn.connected,
                topics=conn.topics,
                connects=conn.connects,
                disconnects=conn.disconnects,
            )
        for account in state.accounts:
            entry = reply.accounts.add(
                name=account.name,
                token_refreshes=account.token_refreshes,
                private_stream_open=account.private_stream_open,
                refused=account.refused,
            )
            if account.token_expires_at is not None:
                stamp = timestamp(Decimal(int(account.token_expires_at)))
                assert stamp is not None
                entry.token_expires_at.CopyFrom(stamp)
        for bucket, room in state.rate_limit_headroom.items():
            reply.rate_limit_headroom[bucket] = "unlimited" if math.isinf(room) else f"{room:.3f}"
        for loop in state.loops:
            reply.loops.add(
                name=loop.name,
                state=loop.state,
                restarts=loop.restarts,
                last_error=loop.last_error,
            )
        fleet = state.fleet
        reply.fleet.enabled = fleet.enabled
        reply.fleet.member_id = fleet.member_id
        reply.fleet.members = fleet.members
        reply.fleet.degraded = fleet.degraded
        reply.fleet.topics_held.extend(fleet.topics_held)
        reply.fleet.topics_followed = fleet.topics_followed
        reply.fleet.topic_leader = fleet.topic_leader
        return reply
