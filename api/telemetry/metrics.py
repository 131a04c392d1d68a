"""The Prometheus series: what this process counted (HTTP, iAM Smart, TSA/OCSP, webhooks) and what the
database and the queue hold at scrape time (signing requests and batches by status, queue depth).

The process-wide metrics are created once and registered, with the state collector of one service, in a
registry per app (``build_registry``), so several apps in one process (tests) never clash.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine
from sqlmodel import col

from api.store.models import Batch, SigningRequest
from signing import observe

__all__ = [
    "HTTP_DURATION",
    "HTTP_REQUESTS",
    "SWEEP_DURATION",
    "WEBHOOK_DELIVERIES",
    "StateCollector",
    "build_registry",
    "observe_signing_calls",
]

log = logging.getLogger("iamsign.metrics")

HTTP_REQUESTS = Counter(
    "iamsign_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=None
)
HTTP_DURATION = Histogram(
    "iamsign_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route", "status"],
    registry=None,
)
IAMSMART_CALLS = Counter(
    "iamsign_iamsmart_calls",
    "Calls to iAM Smart by endpoint and answer (D-code; transport_error when none came back)",
    ["endpoint", "code"],
    registry=None,
)
IAMSMART_DURATION = Histogram(
    "iamsign_iamsmart_call_duration_seconds", "Time of a call to iAM Smart", ["endpoint"], registry=None
)
OUTBOUND_DURATION = Histogram(
    "iamsign_outbound_call_duration_seconds",
    "Time of a call the signing core makes to a TSA, an OCSP responder or a CRL server",
    ["service", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=None,
)
SWEEP_DURATION = Histogram(
    "iamsign_sweep_duration_seconds",
    "Time of one sweep pass by part: signing requests, batches, envelopes, retention",
    ["part"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=None,
)
WEBHOOK_DELIVERIES = Counter(
    "iamsign_webhook_deliveries",
    "Webhook delivery attempts by outcome: delivered, retry (will be tried again), gave_up",
    ["outcome"],
    registry=None,
)
for _outcome in ("delivered", "retry", "gave_up"):
    WEBHOOK_DELIVERIES.labels(_outcome)

_PROCESS_METRICS = (
    HTTP_REQUESTS,
    HTTP_DURATION,
    IAMSMART_CALLS,
    IAMSMART_DURATION,
    OUTBOUND_DURATION,
    SWEEP_DURATION,
    WEBHOOK_DELIVERIES,
)

SIGNING_REQUEST_STATUSES = ("pending", "completed", "rejected", "cancelled", "expired", "failed")
BATCH_STATUSES = (
    "pending",
    "signing",
    "completed",
    "partially_completed",
    "rejected",
    "cancelled",
    "expired",
    "failed",
)


def _on_call(call: observe.Call) -> None:
    if call.service == "iamsmart":
        IAMSMART_CALLS.labels(call.operation, call.outcome).inc()
        IAMSMART_DURATION.labels(call.operation).observe(call.seconds)
    else:
        OUTBOUND_DURATION.labels(call.service, call.outcome).observe(call.seconds)


def observe_signing_calls() -> None:
    """Count the signing core's outside calls in this process (idempotent)."""
    observe.add_observer(_on_call)


class StateCollector:
    """At scrape time: signing requests and batches by status (the whole database, so every replica reports
    the same numbers: aggregate with max), and the jobs waiting in the task queue."""

    def __init__(self, engine: Engine, queue_depth: Callable[[], int] | None = None) -> None:
        self.engine, self.queue_depth = engine, queue_depth

    def describe(self) -> Iterable[Metric]:
        return []  # unchecked: registering must not query the database

    def collect(self) -> Iterable[Metric]:
        try:
            with self.engine.connect() as conn:
                requests, batches = _by_status_count(conn, SigningRequest), _by_status_count(conn, Batch)
        except Exception:  # a database outage must not hide the other series
            log.exception("metrics: cannot count signing requests and batches")
        else:
            yield _by_status(
                "iamsign_signing_requests", "Signing requests by status", SIGNING_REQUEST_STATUSES, requests
            )
            yield _by_status("iamsign_batches", "Batches by status", BATCH_STATUSES, batches)
        if self.queue_depth is not None:
            try:
                depth = self.queue_depth()
            except Exception:
                log.exception("metrics: cannot read the queue depth")
            else:
                yield GaugeMetricFamily("iamsign_queue_depth", "Jobs waiting in the task queue", value=depth)


def _by_status_count(conn: Connection, model: type[SigningRequest | Batch]) -> dict[str, int]:
    status = col(model.status)
    return {str(s): int(n) for s, n in conn.execute(select(status, func.count()).group_by(status)).all()}


def _by_status(name: str, doc: str, known: tuple[str, ...], counts: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=["status"])
    for status in dict.fromkeys((*known, *counts)):
        family.add_metric([str(status)], counts.get(status, 0))
    return family


def build_registry(state: StateCollector | None = None) -> CollectorRegistry:
    """This process's metrics, plus the service's state when given, in a registry of their own."""
    registry = CollectorRegistry(auto_describe=False)
    for metric in _PROCESS_METRICS:
        registry.register(metric)
    ProcessCollector(registry=registry)
    if state is not None:
        registry.register(state)
    observe_signing_calls()
    return registry
