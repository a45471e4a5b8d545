"""Redis clients for our own keys (not bullmq's): one per purpose, never shared with bullmq."""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from workflow_engine.errors import ConfigurationError

log = logging.getLogger(__name__)
KEY_PREFIX = "workflow-engine"


def connect(url: str) -> aioredis.Redis:
    """A client that reconnects with backoff across a Redis restart."""
    return aioredis.from_url(
        url,
        decode_responses=True,
        socket_timeout=15,
        socket_connect_timeout=5,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=5, base=0.1), 8),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


async def ping(url: str, *, timeout_s: float) -> None:
    """One PING on a connection of its own, no retries: for a readiness probe, which must answer
    within `timeout_s` whatever Redis does. Raises what redis-py raises when it gets no PONG."""
    client = aioredis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        await client.ping()  # type: ignore[misc]  # redis-py types ping as sync|async
    finally:
        await client.aclose()


async def check_redis(url: str) -> None:
    """Fail early with a clear message when Redis cannot be reached; warn on eviction."""
    client = connect(url)
    try:
        try:
            await client.ping()  # type: ignore[misc]  # redis-py types ping as sync|async
        except Exception as exc:
            raise ConfigurationError(f"cannot connect to Redis at {url}: {exc}") from exc
        await warn_on_eviction_policy(client)
    finally:
        await client.aclose()


async def warn_on_eviction_policy(client: aioredis.Redis) -> None:
    """Queued jobs must never be evicted: warn unless maxmemory-policy is noeviction."""
    try:
        policy = (await client.config_get("maxmemory-policy")).get("maxmemory-policy")
    except Exception:  # CONFIG may be disabled on managed Redis
        return
    if policy and policy != "noeviction":
        message = (
            f"[Workflow Engine] WARNING: Redis maxmemory-policy is {policy!r}; set it to "
            "'noeviction' or Redis may drop queued jobs under memory pressure"
        )
        log.warning(message)
        print(message, flush=True)
