"""One leader at a time among all processes (for the reconciler): a Redis key with expiry."""

from __future__ import annotations

import logging
import uuid

from workflow_engine.redis_support.client import KEY_PREFIX, connect

log = logging.getLogger(__name__)
KEY = f"{KEY_PREFIX}:reconciler-leader"

# Renew only if we still hold it; compare-and-extend must be atomic.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class RedisLeaderLock:
    def __init__(self, url: str, *, ttl_ms: int) -> None:
        self._client = connect(url)
        self._id = uuid.uuid4().hex
        self._ttl_ms = ttl_ms
        self._renew = self._client.register_script(_RENEW)

    async def acquire_or_renew(self) -> bool:
        """True while this process is the leader. Call more often than the TTL."""
        try:
            if await self._renew(keys=[KEY], args=[self._id, self._ttl_ms]):
                return True
            return bool(await self._client.set(KEY, self._id, nx=True, px=self._ttl_ms))
        except Exception as exc:
            log.warning("leader lock unavailable (%s)", exc)
            return False

    async def release(self) -> None:
        try:
            if await self._client.get(KEY) == self._id:
                await self._client.delete(KEY)
        finally:
            await self._client.aclose()
