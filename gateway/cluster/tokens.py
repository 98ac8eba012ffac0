"""SharedTokens: one ALP bearer token per account for a whole gateway fleet, sealed in Redis.

The token, its `exp` and when it was obtained are stored as AES-GCM ciphertext under a key
derived from the account's API secret (HKDF-SHA256), bound to the Redis key name as associated
data; next to it a keyed fingerprint (HMAC-SHA256, another derived key) lets a Lua script drop
exactly the token ALP refused. Redis alone holds nothing a reader could use.

A member that needs a token takes the stored one if its policy calls it fresh. Otherwise it tries
to take the refresh lease (`SET NX PX`): the winner authenticates and stores the result, the others
poll the store with a short backoff. A member that never sees Redis answer authenticates alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from redis.asyncio import Redis

from gateway.cluster.redis_conn import REDIS_ERRORS
from gateway.core.token_policy import Secret
from gateway.errors import UpstreamTimeout
from gateway.exchange.token_manager import HeldToken

log = logging.getLogger(__name__)

T = TypeVar("T")

_SALT = b"alp-grpc-gateway/cluster/tokens/v1"

# KEYS[1] stored token; ARGV[1] fingerprint of the refused token. Deletes only that token.
_DROP_IF = """
if redis.call('HGET', KEYS[1], 'fp') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS[1] lease; ARGV[1] the holder's lease id. Releases only one's own lease.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class _StoreDown(Exception):
    """Redis did not answer; carries only the class name of what failed."""


def derive_key(secret: Secret, account: str, purpose: str) -> bytes:
    """32 bytes for `purpose` ("seal" or "fingerprint") of `account`, from its API secret."""
    info = f"alp-grpc-gateway: {purpose} key of the ALP token of account {account}".encode()
    kdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=info)
    return kdf.derive(secret.reveal().encode())


class SharedTokens:
    """The `gateway.exchange.token_manager.SharedTokenStore` of one account, kept in Redis.

    Keys: `{namespace}:token:{account}:{digest of the api key}` (a hash: `fp`, `box`) and the
    same with `:lease`. `lease_s` bounds how long a member that died mid-refresh blocks the others;
    a member waits at most `wait_s` for another's refresh before giving up (UpstreamTimeout).
    """

    def __init__(
        self,
        redis: Redis,
        account: str,
        api_key: str,
        api_secret: Secret,
        *,
        namespace: str = "alp-gateway",
        lease_s: float = 10.0,
        wait_s: float = 12.0,
        poll_base_s: float = 0.01,
        poll_cap_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.account = account
        self._redis = redis
        digest = hashlib.sha256(api_key.encode()).hexdigest()[:16]
        self.key = f"{namespace}:token:{account}:{digest}"
        self.lease_key = f"{self.key}:lease"
        self._seal = AESGCM(derive_key(api_secret, account, "seal"))
        self._fp_key = derive_key(api_secret, account, "fingerprint")
        self._lease_ms = max(1, int(lease_s * 1000))
        self._wait_s = wait_s
        self._poll_base = poll_base_s
        self._poll_cap = poll_cap_s
        self._clock = clock
        self._drop_if = redis.register_script(_DROP_IF)
        self._release = redis.register_script(_RELEASE)
        self._down = False
        self.outages = 0
        self.fleet_hits = 0  # tokens taken from the store instead of authenticating

    def __repr__(self) -> str:
        return f"SharedTokens(account={self.account!r}, degraded={self._down})"

    @property
    def degraded(self) -> bool:
        return self._down

    # -- the SharedTokenStore protocol ------------------------------------------------------------

    async def obtain(
        self, fetch: Callable[[], Awaitable[HeldToken]], fresh: Callable[[HeldToken], bool]
    ) -> HeldToken | None:
        try:
            return await self._obtain(fetch, fresh)
        except _StoreDown as down:
            self._lost(str(down))
            return None

    async def invalidate(self, rejected: str) -> None:
        try:
            await self._do(self._drop_if(keys=[self.key], args=[self.fingerprint(rejected)]))
        except _StoreDown as down:
            self._lost(str(down))
        else:
            self._answered()

    # -- internals --------------------------------------------------------------------------------

    async def _obtain(
        self, fetch: Callable[[], Awaitable[HeldToken]], fresh: Callable[[HeldToken], bool]
    ) -> HeldToken:
        deadline = self._clock() + self._wait_s
        delay = self._poll_base
        while True:
            held = await self._read()
            self._answered()
            if held is not None and fresh(held):
                self.fleet_hits += 1
                return held
            lease = secrets.token_hex(16)
            if await self._do(self._redis.set(self.lease_key, lease, nx=True, px=self._lease_ms)):
                return await self._refresh_holding(lease, fetch, fresh)
            now = self._clock()
            if now >= deadline:
                raise UpstreamTimeout(
                    f"account {self.account}: another gateway member's token refresh "
                    f"did not finish within {self._wait_s:g} s"
                )
            await asyncio.sleep(min(delay, deadline - now))
            delay = min(delay * 2, self._poll_cap)

    async def _refresh_holding(
        self,
        lease: str,
        fetch: Callable[[], Awaitable[HeldToken]],
        fresh: Callable[[HeldToken], bool],
    ) -> HeldToken:
        try:
            held = await self._read()  # stored between our last look and winning the lease?
            if held is not None and fresh(held):
                self.fleet_hits += 1
                return held
            held = await fetch()  # ALP's errors go to the caller as they are
            try:
                await self._write(held)
            except _StoreDown as down:
                self._lost(str(down))  # the token is good: use it, the others authenticate alone
            return held
        finally:
            with contextlib.suppress(_StoreDown):  # else the lease expires by itself
                await self._do(self._release(keys=[self.lease_key], args=[lease]))

    async def _do(self, operation: Awaitable[T]) -> T:
        try:
            return await operation
        except REDIS_ERRORS as exc:
            raise _StoreDown(type(exc).__name__) from None

    def fingerprint(self, token: str) -> str:
        return hmac.new(self._fp_key, token.encode(), hashlib.sha256).hexdigest()

    async def _read(self) -> HeldToken | None:
        fp, box = await self._do(self._redis.hmget(self.key, ["fp", "box"]))
        if not isinstance(box, bytes) or len(box) < 13:
            return None
        try:
            plain = self._seal.decrypt(box[:12], box[12:], self.key.encode())
            fields = json.loads(plain)
            held = HeldToken(str(fields["t"]), float(fields["e"]), float(fields["o"]))
        except (InvalidTag, ValueError, KeyError, TypeError):
            # sealed with another secret (rotated key) or not ours: treat as absent, replace it
            log.warning(
                "stored ALP token of account %s cannot be opened; ignoring it", self.account
            )
            return None
        if not isinstance(fp, bytes) or not hmac.compare_digest(
            fp, self.fingerprint(held.token).encode()
        ):
            return None
        return held

    async def _write(self, held: HeldToken) -> None:
        plain = json.dumps({"t": held.token, "e": held.expires_at, "o": held.obtained_at})
        nonce = os.urandom(12)
        box = nonce + self._seal.encrypt(nonce, plain.encode(), self.key.encode())
        # the token's lifetime from just before /auth: no member's wall clock is involved
        ttl_ms = max(1000, int((held.expires_at - held.obtained_at) * 1000))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key, mapping={"fp": self.fingerprint(held.token), "box": box})
            pipe.pexpire(self.key, ttl_ms)
            await self._do(pipe.execute())

    def _lost(self, failure: str) -> None:
        if not self._down:
            self._down = True
            self.outages += 1
            log.warning(
                "fleet token store for account %s unreachable (%s); this member authenticates "
                "on its own until Redis answers",
                self.account,
                failure,
            )

    def _answered(self) -> None:
        if self._down:
            self._down = False
            log.info("fleet token store for account %s answers again", self.account)
