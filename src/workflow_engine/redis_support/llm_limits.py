"""LLM_LIMITS across every worker: each model's window is a sorted set in Redis, one member per
request (`<id>|<tokens>`, scored by the time it started, then by the time it was answered), and
the rule of domain/llm_limits.py runs in a Lua script, so that two workers cannot both take the
last room. Times are Redis's own clock (TIME), the same for every worker."""

from __future__ import annotations

from datetime import UTC, datetime

from workflow_engine.domain.llm_limits import ModelLimit
from workflow_engine.redis_support.client import KEY_PREFIX, connect

__all__ = ["RedisLimiter"]

# ARGV: member id, tokens, tokens per window (0: none), requests per window (0: none), window ms.
# Returns 0 (reserved) or the ms to wait. Mirrors domain.llm_limits.wait_ms.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tokens, tpm, rpm, window =
  tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local used, count = 0, 0
for i = 1, #entries, 2 do
  used = used + tonumber(string.match(entries[i], '|(%d+)$'))
  count = count + 1
end
local function fits(u, c)
  if rpm > 0 and c + 1 > rpm then return false end
  if tpm > 0 and c > 0 and u + tokens > tpm then return false end
  return true
end
if fits(used, count) then
  redis.call('ZADD', KEYS[1], now, ARGV[1] .. '|' .. ARGV[2])
  redis.call('PEXPIRE', KEYS[1], window * 2)
  return 0
end
for i = 1, #entries, 2 do
  used = used - tonumber(string.match(entries[i], '|(%d+)$'))
  count = count - 1
  if fits(used, count) then
    return math.max(tonumber(entries[i + 1]) + window - now, 1)
  end
end
return window
"""

# ARGV: member id, tokens, window ms. The request's entry now counts `tokens` from now (its
# answer); returns now in ms.
_SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local entries = redis.call('ZRANGE', KEYS[1], 0, -1)
local prefix = ARGV[1] .. '|'
for _, member in ipairs(entries) do
  if string.sub(member, 1, #prefix) == prefix then redis.call('ZREM', KEYS[1], member) end
end
redis.call('ZADD', KEYS[1], now, prefix .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
return now
"""


class RedisLimiter:
    def __init__(self, url: str) -> None:
        self._client = connect(url)
        self._take = self._client.register_script(_TAKE)
        self._settle = self._client.register_script(_SETTLE)

    @staticmethod
    def _key(model: str) -> str:
        return f"{KEY_PREFIX}:llm-limit:{model}"

    async def take(
        self, model: str, member: str, tokens: int, limit: ModelLimit, window_ms: int
    ) -> int:
        args: list[str | int] = [
            member,
            tokens,
            limit.tokensPerMinute or 0,
            limit.requestsPerMinute or 0,
            window_ms,
        ]
        return int(await self._take(keys=[self._key(model)], args=args))

    async def settle(self, model: str, member: str, tokens: int, window_ms: int) -> datetime:
        now_ms = int(await self._settle(keys=[self._key(model)], args=[member, tokens, window_ms]))
        return datetime.fromtimestamp(now_ms / 1000, UTC)

    async def close(self) -> None:
        await self._client.aclose()
