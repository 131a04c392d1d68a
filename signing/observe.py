"""Hooks for measuring the core's calls to outside services: iAM Smart, the TSA, OCSP responders, CRLs.

The core never imports the service; whoever wants numbers (``api.telemetry``) registers an observer here
and is told of each call as it ends. Observers must be quick and must not raise (an error is logged and
swallowed: measuring never breaks signing).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from pyhanko.sign.timestamps import HTTPTimeStamper
from pyhanko_certvalidator.fetchers import CRLFetcher, FetcherBackend, Fetchers, OCSPFetcher

from signing.tls import shared_tls_context

__all__ = [
    "Call",
    "CallObserver",
    "ObservedFetcherBackend",
    "ObservedTimeStamper",
    "add_observer",
    "observed_call",
    "remove_observer",
    "report",
    "shared_tsa_session",
]

log = logging.getLogger("signing.observe")


@dataclass(frozen=True)
class Call:
    """One finished call: ``service`` (iamsmart, tsa, ocsp, crl), ``operation`` (an endpoint path or a verb),
    ``outcome`` (ok, error, or iAM Smart's D-code) and its duration in seconds."""

    service: str
    operation: str
    outcome: str
    seconds: float


CallObserver = Callable[[Call], None]
_observers: tuple[CallObserver, ...] = ()  # replaced, never mutated: safe to iterate from any thread


def add_observer(observer: CallObserver) -> None:
    global _observers
    if observer not in _observers:
        _observers = (*_observers, observer)


def remove_observer(observer: CallObserver) -> None:
    global _observers
    _observers = tuple(o for o in _observers if o != observer)


def report(call: Call) -> None:
    for observer in _observers:
        try:
            observer(call)
        except Exception:  # an observer's bug must not break a signature
            log.exception("call observer %r failed", observer)


class _Outcome:
    value: str | None = None


@contextlib.contextmanager
def observed_call(service: str, operation: str) -> Iterator[_Outcome]:
    """Time the block and report it: the outcome it set, else ``ok`` (``error`` when it raised)."""
    outcome = _Outcome()
    start = time.perf_counter()
    try:
        yield outcome
    except BaseException:
        report(Call(service, operation, outcome.value or "error", time.perf_counter() - start))
        raise
    report(Call(service, operation, outcome.value or "ok", time.perf_counter() - start))


_TSA_SESSION: contextvars.ContextVar[aiohttp.ClientSession | None] = contextvars.ContextVar(
    "tsa_session", default=None
)


@contextlib.asynccontextmanager
async def shared_tsa_session() -> AsyncIterator[None]:
    """TSA requests made inside (by this task and the tasks it starts) share one HTTP session and so
    their connections, instead of a session and a TCP connection each: for work that stamps many
    documents in one event loop, such as a batch's chunk."""
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=shared_tls_context()))
    token = _TSA_SESSION.set(session)
    try:
        yield
    finally:
        _TSA_SESSION.reset(token)
        await session.close()


class ObservedTimeStamper(HTTPTimeStamper):
    """pyHanko's HTTP TSA client, reporting each request as ``tsa`` / ``timestamp``.

    Each request gets a session of its own (callers run on many event loops), sharing one TLS context,
    unless it runs inside :func:`shared_tsa_session`.
    """

    @contextlib.asynccontextmanager
    async def _acquire_session(self) -> AsyncIterator[aiohttp.ClientSession]:
        if self._session is not None:
            async with super()._acquire_session() as session:
                yield session
            return
        shared = _TSA_SESSION.get()
        if shared is not None:
            yield shared
            return
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=shared_tls_context()))
        try:
            yield session
        finally:
            await session.close()

    async def async_request_tsa_response(self, req: Any) -> Any:
        with observed_call("tsa", "timestamp"):
            return await super().async_request_tsa_response(req)


class _ObservedOcsp(OCSPFetcher):
    def __init__(self, inner: OCSPFetcher) -> None:
        self._inner = inner

    async def fetch(self, cert: Any, authority: Any) -> Any:
        with observed_call("ocsp", "fetch"):
            return await self._inner.fetch(cert, authority)

    def fetched_responses(self) -> Any:
        return self._inner.fetched_responses()

    def fetched_responses_for_cert(self, cert: Any) -> Any:
        return self._inner.fetched_responses_for_cert(cert)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _ObservedCrl(CRLFetcher):
    def __init__(self, inner: CRLFetcher) -> None:
        self._inner = inner

    async def fetch(self, cert: Any, *, use_deltas: Any = None) -> Any:
        with observed_call("crl", "fetch"):
            return await self._inner.fetch(cert, use_deltas=use_deltas)

    def fetched_crls(self) -> Any:
        return self._inner.fetched_crls()

    def fetched_crls_for_cert(self, cert: Any) -> Any:
        return self._inner.fetched_crls_for_cert(cert)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class ObservedFetcherBackend(FetcherBackend):
    """pyHanko's default (aiohttp) fetchers, with OCSP and CRL fetches reported."""

    def __init__(self) -> None:
        from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend

        self._inner = AIOHttpFetcherBackend()

    def get_fetchers(self) -> Fetchers:
        f = self._inner.get_fetchers()
        return Fetchers(
            ocsp_fetcher=_ObservedOcsp(f.ocsp_fetcher),
            crl_fetcher=_ObservedCrl(f.crl_fetcher),
            cert_fetcher=f.cert_fetcher,
        )

    async def close(self) -> None:
        await self._inner.close()
