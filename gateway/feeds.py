"""Feeds: the upstream WebSocket side of one gateway process, built and closed in one place.

One PublicFeed (topics packed onto few sockets), one PrivateFeed per account (opened by its first
private stream), and with a fleet a SharedFeed in front of both, so that the fleet keeps one
upstream subscription per topic and one private socket per account.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp

from gateway.exchange.token_manager import TokenManager
from gateway.exchange.ws_connection import WsConnection, WsSettings
from gateway.exchange.ws_private import AccountFeed, PrivateFeed
from gateway.exchange.ws_public import PublicFeed, TopicFeed
from gateway.status import ConnectionState
from gateway.supervisor import Supervisor

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway.cluster.fleet import Fleet
    from gateway.cluster.topic_share import SharedFeed


class Feeds:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: WsSettings,
        tokens_of: Callable[[str], TokenManager],
        *,
        supervisor: Supervisor,
        max_topics_per_connection: int,
        linger_s: float,
        auth_grace_s: float,
        fleet: Fleet | None = None,
        accounts: tuple[str, ...] = (),
        topic_lease_s: float = 3.0,
    ) -> None:
        self._session = session
        self._settings = settings
        self._tokens_of = tokens_of
        self._supervisor = supervisor
        self._linger_s = linger_s
        self._auth_grace_s = auth_grace_s
        self.public = PublicFeed(
            session,
            settings,
            max_topics_per_connection=max_topics_per_connection,
            linger_s=linger_s,
            supervisor=supervisor,
        )
        self.private: dict[str, PrivateFeed] = {}
        self.shared: SharedFeed | None = None
        if fleet is not None:
            self.shared = fleet.shared_feed(
                self.public,
                self.private_feed,
                accounts=accounts,
                supervisor=supervisor,
                lease_s=topic_lease_s,
                linger_s=linger_s,
            )

    @property
    def topics(self) -> TopicFeed:
        """Public topics as streams see them: this process's, or the fleet's."""
        return self.shared if self.shared is not None else self.public

    def account(self, name: str) -> AccountFeed:
        """An account's private events as streams see them."""
        if self.shared is not None:
            from gateway.cluster.topic_share import SharedAccount

            return SharedAccount(self.shared, name)
        return self.private_feed(name)

    def private_feed(self, account: str) -> PrivateFeed:
        """The account's own socket in this process, created on first use (raises UnknownAccount
        through `tokens_of` for an account that is not configured)."""
        feed = self.private.get(account)
        if feed is None:
            feed = PrivateFeed(
                account,
                self._session,
                self._settings,
                self._tokens_of(account),
                linger_s=self._linger_s,
                auth_grace_s=self._auth_grace_s,
                supervisor=self._supervisor,
            )
            self.private[account] = feed
        return feed

    async def close(self) -> None:
        for feed in self.private.values():
            await feed.close()
        if self.shared is not None:
            await self.shared.close()  # frees its leases, then closes the public feed
        else:
            await self.public.close()

    # -- status ---------------------------------------------------------------------------------
    def connection_states(self) -> list[ConnectionState]:
        public = self.public.connections()
        states = [
            _state(conn, public.get(name, ()))
            for name, conn in self.public.connection_objects().items()
        ]
        states += [_state(f.connection, ()) for f in self.private.values() if f.connection]
        return states

    def frames_rejected(self) -> int:
        stats = [self.public.codec_stats, *(f.codec_stats for f in self.private.values())]
        return sum(s.unknown + s.malformed for s in stats)


def _state(conn: WsConnection, topics: tuple[str, ...]) -> ConnectionState:
    return ConnectionState(
        conn.name, conn.connected.is_set(), topics, conn.stats.connects, conn.stats.disconnects
    )
