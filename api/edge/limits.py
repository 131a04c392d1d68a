"""Rate limits, one limiter for the whole service: in Redis when ``IAMSIGN_RATE_LIMIT_URL`` is set (every
replica counts together), else in this process's memory.

A :class:`Rule` names what is limited (``verification``: uploads to ``POST /v1/verifications``;
``failed_auth``: requests with an unknown API key), how many per window, per client address. The address
is the TCP peer, or the ``X-Forwarded-For`` entry left by a proxy of ``IAMSIGN_TRUSTED_PROXIES``
(:func:`client_address`); the header from anyone else is ignored.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.requests import Request

from api.errors import ApiError

__all__ = [
    "Limits",
    "MemoryLimiter",
    "RateLimiter",
    "RedisLimiter",
    "Rule",
    "TrustedProxies",
    "client_address",
    "limiter_for",
    "rate_key",
]

log = logging.getLogger("iamsign.limits")

_RETRY_DOWN_S = 10.0
"""After the limiter's store failed, how long requests go unlimited before it is tried again."""


@dataclass(frozen=True)
class Rule:
    name: str
    limit: int
    window_s: float = 60.0


class RateLimiter(Protocol):
    def hit(self, rule: Rule, client: str) -> float | None:
        """Count one event of ``client``; None if within ``rule``, else the seconds until it is."""

    def blocked(self, rule: Rule, client: str) -> float | None:
        """Without counting: None if ``client`` may go on, else the seconds to wait."""


class MemoryLimiter:
    """A sliding window per (rule, client) in this process."""

    def __init__(self) -> None:
        self._hits: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _window(self, rule: Rule, client: str, now: float) -> deque[float]:
        hits = self._hits.setdefault((rule.name, client), deque())
        while hits and hits[0] <= now - rule.window_s:
            hits.popleft()
        return hits

    def hit(self, rule: Rule, client: str) -> float | None:
        now = time.monotonic()
        with self._lock:
            hits = self._window(rule, client, now)
            if len(hits) >= rule.limit:
                return max(hits[0] + rule.window_s - now, 0.1)
            hits.append(now)
            if len(self._hits) > 10_000:  # forget idle clients
                for key in [k for k, v in self._hits.items() if not v]:
                    del self._hits[key]
            return None

    def blocked(self, rule: Rule, client: str) -> float | None:
        now = time.monotonic()
        with self._lock:
            hits = self._window(rule, client, now)
            return max(hits[0] + rule.window_s - now, 0.1) if len(hits) >= rule.limit else None


class RedisLimiter:
    """A fixed window per (rule, client) in Redis, shared by every replica (INCR + EXPIRE)."""

    def __init__(self, url: str, prefix: str = "iamsign:ratelimit") -> None:
        import redis

        self.redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.prefix = prefix

    def _key(self, rule: Rule, client: str, now: float) -> tuple[str, float]:
        window = int(now // rule.window_s)
        return f"{self.prefix}:{rule.name}:{client}:{window}", (window + 1) * rule.window_s - now

    def hit(self, rule: Rule, client: str) -> float | None:
        key, left = self._key(rule, client, time.time())
        pipe = self.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, int(rule.window_s) + 1)
        count = pipe.execute()[0]
        return max(left, 0.1) if count > rule.limit else None

    def blocked(self, rule: Rule, client: str) -> float | None:
        key, left = self._key(rule, client, time.time())
        value: Any = self.redis.get(key)  # bytes or None (redis-py's types cover its async client too)
        count = int(value or 0)
        return max(left, 0.1) if count >= rule.limit else None


def limiter_for(url: str | None, prefix: str) -> RateLimiter:
    """Redis at ``url`` when given, else memory."""
    return RedisLimiter(url, prefix) if url else MemoryLimiter()


class TrustedProxies:
    """The proxies (addresses or networks) whose ``X-Forwarded-For`` is believed."""

    def __init__(self, entries: list[str]) -> None:
        self.networks = [ipaddress.ip_network(e.strip(), strict=False) for e in entries if e.strip()]

    def __contains__(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)


def client_address(request: Request, trusted: TrustedProxies) -> str:
    """The client's address: the peer, or from a trusted proxy the nearest untrusted X-Forwarded-For hop."""
    peer = request.client.host if request.client else "unknown"
    if peer not in trusted:
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getlist("x-forwarded-for")).split(",") if h.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop
    return hops[0] if hops else peer


def rate_key(address: str) -> str:
    """``address`` as a rate-limit bucket: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by its /64 prefix.

    A single subscriber usually gets a /64 or more, so counting each IPv6 address apart let one client
    make up fresh addresses at will."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


class Limits:
    """The service's rules, its one limiter and whom to believe about client addresses."""

    def __init__(
        self,
        limiter: RateLimiter,
        trusted: TrustedProxies,
        *,
        verification_per_minute: int = 30,
        failed_auth_per_minute: int = 20,
    ) -> None:
        self.limiter, self.trusted = limiter, trusted
        self._down_until = 0.0
        self.verification = Rule("verification", verification_per_minute)
        self.failed_auth = Rule("failed_auth", failed_auth_per_minute)

    @classmethod
    def from_settings(cls, settings) -> Limits:
        return cls(
            limiter_for(settings.rate_limit_url, settings.rate_limit_prefix),
            TrustedProxies(settings.trusted_proxies),
            verification_per_minute=settings.verification_rate_limit,
            failed_auth_per_minute=settings.failed_auth_rate_limit,
        )

    def client(self, request: Request) -> str:
        """Whom a rule counts: the client address, an IPv6 one by its /64 (one host holds a whole /64)."""
        return rate_key(client_address(request, self.trusted))

    def _ask(self, how, rule: Rule, request: Request) -> float | None:
        if time.monotonic() < self._down_until:
            return None
        try:
            return how(rule, self.client(request))
        except Exception as exc:  # noqa: BLE001 - a limiter that cannot be reached lets the request through
            self._down_until = time.monotonic() + _RETRY_DOWN_S  # do not wait on it for every request
            log.warning(
                "rate limiter unavailable (%s): requests not limited for %g s",
                type(exc).__name__,
                _RETRY_DOWN_S,
            )
            return None

    def enforce(self, rule: Rule, request: Request) -> None:
        """Count this request under ``rule``; 429 with Retry-After once the client is over it."""
        self._raise_if(self._ask(self.limiter.hit, rule, request), rule)

    def refuse_if_blocked(self, rule: Rule, request: Request) -> None:
        """429 if the client is already over ``rule`` (nothing counted)."""
        self._raise_if(self._ask(self.limiter.blocked, rule, request), rule)

    @staticmethod
    def _raise_if(wait: float | None, rule: Rule) -> None:
        if wait is not None:
            raise ApiError(
                429,
                "rate_limited",
                f"too many requests ({rule.name}); try again later",
                headers={"Retry-After": str(int(wait) + 1)},
            )
