"""Background work through huey: a SQLite file queue on one machine, Redis for many.

Queued jobs: embedding a received signature (with its augmentation to the requested level), and the
sweep (expiry, resuming work a dead process left behind, retention). Each consumer also runs a webhook
dispatcher (deliveries with retries, concurrent, bounded per organisation). Every job claims
its database transition with a compare-and-set, so a job that two workers both pick up, or that is
retried after a crash, completes at most once.

``iamsign serve`` runs a consumer in-process by default (``IAMSIGN_EMBEDDED_WORKER=true``);
``iamsign worker`` runs consumers on their own, for as many machines as needed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from huey import RedisHuey, SqliteHuey
from huey.consumer import Consumer
from huey.exceptions import TaskException

from api.settings import Settings
from api.telemetry.metrics import SWEEP_DURATION
from api.worker.webhooks import WebhookDispatcher

__all__ = ["EmbeddedConsumer", "TaskQueue"]

log = logging.getLogger("iamsign.tasks")


class EmbeddedConsumer(Consumer):
    """A huey consumer that runs inside another program (the web server): no signal handlers of its own."""

    def _set_signal_handlers(self) -> None:  # the host process owns its signals
        pass


class _PatientDequeue:
    """Huey's consumer logs a full traceback and retries at once when the queue is unreachable: thousands
    of lines a minute while Redis restarts. Here an unreachable queue is one warning per half minute and a
    retry each second; nothing is lost (the queue holds the jobs, the sweep re-enqueues recorded work)."""

    _quiet_until = 0.0

    storage: Any
    deserialize_task: Callable[[bytes], Any]

    def dequeue(self):
        try:
            data = self.storage.dequeue()
        except Exception as exc:  # noqa: BLE001 - any queue backend's connection error
            now = time.monotonic()
            if now >= _PatientDequeue._quiet_until:
                log.warning("queue unreachable (%s); retrying every second", exc.__class__.__name__)
                _PatientDequeue._quiet_until = now + 30
            time.sleep(1)
            return None
        return None if data is None else self.deserialize_task(data)


class _RedisQueue(_PatientDequeue, RedisHuey):
    pass


class _SqliteQueue(_PatientDequeue, SqliteHuey):
    pass


class TaskQueue:
    """The service's queue and its jobs. ``context_factory`` builds what a job needs in this process."""

    def __init__(self, settings: Settings, context_factory: Callable[[], Any]) -> None:
        self.settings = settings
        name = f"iamsign-{settings.queue_name}"
        if settings.queue_url:
            self.huey = _RedisQueue(name, url=settings.queue_url, blocking=True, read_timeout=1)
        else:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            self.huey = _SqliteQueue(name, filename=str(settings.data_dir / "queue.db"), timeout=30)
        self._context_factory = context_factory
        self._context = None
        self._context_lock = threading.Lock()
        self._embed = self.huey.task(retries=3, retry_delay=5, name="embed")(self._run_embed)
        self._sweep = self.huey.task(name="sweep")(self._run_sweep)
        self._embed_batch = self.huey.task(retries=3, retry_delay=5, name="embed_batch")(
            self._run_embed_batch
        )
        self._ticker: threading.Thread | None = None
        self._webhooks: WebhookDispatcher | None = None
        self._consumer: EmbeddedConsumer | None = None
        self._stop = threading.Event()
        self._unsent: dict[str, Callable[[str], Any]] = {}  # refused by a queue that was away
        self._unsent_lock = threading.Lock()

    # ------------------------------------------------------------------ enqueueing

    def enqueue_embed(self, request_id: str) -> bool:
        """Embed the result received for ``request_id`` (and augment it) in the background."""
        return self._enqueue(self._embed, request_id)

    def enqueue_embed_batch(self, batch_id: str) -> bool:
        """Embed the signatures received for a batch in the background (worker processes)."""
        return self._enqueue(self._embed_batch, batch_id)

    def _enqueue(self, task: Callable[[str], Any], key: str) -> bool:
        """Enqueue, or say the queue is away: the work is already recorded in the database. What could not
        be sent is sent again at the next enqueue or sweep tick once the queue is back (and the sweep hands
        on anything still left after ``IAMSIGN_STALE_AFTER_S``, for work whose process died)."""
        try:
            task(key)
        except Exception as exc:  # noqa: BLE001 - any queue backend's connection error
            log.warning("queue unavailable, %s left for a retry: %s", key, exc.__class__.__name__)
            with self._unsent_lock:
                self._unsent[key] = task
            return False
        self.send_unsent()
        return True

    def send_unsent(self) -> int:
        """Enqueue again what the queue refused earlier; returns how many are still unsent."""
        with self._unsent_lock:
            waiting = list(self._unsent.items())
        for key, task in waiting:
            try:
                task(key)
            except Exception:  # noqa: BLE001 - still away: keep it for the next try
                break
            with self._unsent_lock:
                self._unsent.pop(key, None)
        with self._unsent_lock:
            return len(self._unsent)

    # ------------------------------------------------------------------ jobs

    def context(self):
        with self._context_lock:
            if self._context is None:
                self._context = self._context_factory()
            return self._context

    def _run(self, job: Callable[[Any], Awaitable[None]]) -> None:
        """Run an async job in this worker thread's own event loop, with its own HTTP clients."""
        asyncio.run(self._with_flow(job))

    async def _with_flow(self, job) -> None:
        ctx = self.context()
        flow = ctx.new_flow()
        try:
            await job(flow)
            await flow.drain()
        finally:
            await flow.client.aclose()

    def _run_embed(self, request_id: str) -> None:
        self._run(lambda flow: flow.embed(request_id))

    def _run_embed_batch(self, batch_id: str) -> None:
        self._run(lambda flow: self.context().new_batch_flow(flow.client).embed(batch_id))

    def _run_sweep(self) -> bool:
        async def job(flow) -> None:
            ctx = self.context()
            with SWEEP_DURATION.labels("signing_requests").time():
                await flow.sweep()
            with SWEEP_DURATION.labels("batches").time():
                await ctx.new_batch_flow(flow.client).sweep()
            with SWEEP_DURATION.labels("envelopes").time():
                await ctx.new_envelope_flow(flow).sweep()
            with SWEEP_DURATION.labels("retention").time():
                await asyncio.to_thread(ctx.apply_retention)

        self._run(job)
        return True  # a stored result tells the ticker this sweep is done

    # ------------------------------------------------------------------ consuming

    def start_consumer(self, workers: int) -> None:
        """Consume in this process (threads), and tick the sweep every ``sweep_interval_s``."""
        self._consumer = EmbeddedConsumer(
            self.huey,
            workers=workers,
            worker_type="thread",
            initial_delay=0.05,
            backoff=1.2,
            max_delay=0.5,
            periodic=False,
            check_worker_health=False,
        )
        self._consumer.start()
        self._stop.clear()
        self._ticker = threading.Thread(target=self._tick, name="iamsign-sweep-ticker", daemon=True)
        self._ticker.start()
        ctx, s = self.context(), self.settings
        self._webhooks = WebhookDispatcher(
            ctx.engine,
            ctx.secret,
            allowed_networks=s.webhook_allowed_networks,
            timeout_s=s.webhook_timeout_s,
            concurrency=s.webhook_concurrency,
            per_organisation=s.webhook_per_organisation,
            interval_s=s.sweep_interval_s,
        )
        self._webhooks.start()

    def _tick(self) -> None:
        """Enqueue a sweep at each interval; replicas ticking together are harmless (claims, leases).

        Nothing the queue raises ends the ticker: while Redis restarts, asking after the last sweep fails
        like enqueueing does, and a ticker that died then left the process without expiry or resumption.
        """
        pending, waited = None, 0
        while not self._stop.wait(self.settings.sweep_interval_s):
            self.send_unsent()
            try:
                done = pending is None or pending.get(preserve=True) is not None
            except TaskException:  # the last sweep failed (logged by huey): sweep again
                done = True
            except Exception as exc:  # noqa: BLE001 - the queue is unreachable: ask again next tick
                log.warning("queue unreachable (%s); the sweep waits for it", exc.__class__.__name__)
                continue
            waited = 0 if done else waited + 1
            if done or waited > 20:  # a sweep lost with a dead worker is replaced after 20 ticks
                try:
                    pending, waited = self._sweep(), 0
                except Exception:  # the queue may be briefly unreachable; try next tick
                    log.exception("could not enqueue the sweep")

    def stop_consumer(self) -> None:
        self._stop.set()
        if self._webhooks is not None:
            self._webhooks.stop()
            self._webhooks = None
        if self._ticker is not None:
            self._ticker.join(timeout=5)
        if self._consumer is not None:
            self._consumer.stop(graceful=True)
            self._consumer = None
        if self._context is not None and "cpu" in vars(self._context):
            self._context.cpu.shutdown()
