"""Everything the service needs in one process, built once from settings: the web app and every worker
use the same construction, so a job runs the same code whichever process picks it up."""

from __future__ import annotations

from functools import cached_property

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from api.flows.iamsmart_gateway import IamSmartSetup, build_iamsmart_setup
from api.settings import Settings, reveal
from api.store.db import autocommit, make_engine, migrate
from api.store.files import DocumentStore
from api.store.models import SigningRequest, utcnow
from api.store.secrets import load_or_create_secret
from signing.iamsmart.client import IamSmartClient
from signing.sandbox.pki import SandboxPki

__all__ = ["ServiceContext"]


class ServiceContext:
    """Database engine, document store, server secret, iAM Smart setup and task queue for ``settings``."""

    def __init__(self, settings: Settings, *, run_migrations: bool = True) -> None:
        self.settings = settings
        settings.require_runnable()  # ITE/production: every credential given, nothing of the sandbox
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = make_engine(
            settings.effective_database_url,
            settings.db_pool_size,
            settings.db_max_overflow,
            settings.db_synchronous_commit,
        )
        if run_migrations:
            migrate(self.engine)
        self.store = DocumentStore(settings.documents_dir)
        self.secret = load_or_create_secret(settings.data_dir, "server", reveal(settings.server_secret))
        self.clock = utcnow
        """The service's notion of now (tests move it); every flow of this process reads it."""

    @cached_property
    def sandbox_pki(self) -> SandboxPki | None:
        if not self.settings.sandbox_mounted:
            return None
        return SandboxPki.open_or_create(
            self.settings.sandbox_pki_dir, f"{self.settings.base_url}/sandbox/pki"
        )

    @cached_property
    def iamsmart(self) -> IamSmartSetup:
        return build_iamsmart_setup(self.settings, sandbox_pki=self.sandbox_pki)

    @cached_property
    def status_changes(self):
        """Wakes this process's waiting status reads when a request ends (here, or found in the database)."""
        from api.flows.status_changes import StatusChanges

        return StatusChanges(self._ended_among)

    def _ended_among(self, request_ids: list[str]) -> list[str]:
        """Which of ``request_ids`` are no longer pending (one indexed read)."""
        with Session(autocommit(self.engine)) as session:
            return list(
                session.exec(
                    select(SigningRequest.id).where(
                        col(SigningRequest.id).in_(request_ids), col(SigningRequest.status) != "pending"
                    )
                )
            )

    @cached_property
    def queue(self):
        from api.worker.tasks import TaskQueue

        return TaskQueue(self.settings, lambda: self)

    @cached_property
    def cpu(self):
        from api.flows.cpu import CpuPool

        return CpuPool(self.settings.cpu_workers)

    def apply_retention(self) -> list[str]:
        """Delete the documents older than ``retention_days`` (the sweep runs this); the ids deleted."""
        if not self.settings.retention_days:
            return []
        from api.flows.lifecycle import apply_retention

        with Session(self.engine) as session:
            return apply_retention(session, self.store, self.settings.retention_days, self.clock())

    def new_batch_flow(self, client: IamSmartClient):
        from api.flows.batch import BatchFlow

        return BatchFlow(self, client)

    def new_flow(self):
        """A signing flow with its own iAM Smart client (one per event loop; the caller closes it)."""
        from api.flows.signing import SigningFlow

        flow = SigningFlow(
            self.settings,
            self.engine,
            self.store,
            self.iamsmart,
            IamSmartClient(self.iamsmart.client_config),
            self.secret,
            clock=lambda: self.clock(),
            queue=self.queue,
            changes=self.status_changes,
        )
        flow.on_ended = self.new_envelope_flow(flow).step_ended  # an envelope's next signer starts
        return flow

    def new_envelope_flow(self, flow):
        """The envelope flow over ``flow`` (its signing requests) and the signers' enrolments."""
        from api.flows.enrolment import EnrolmentFlow
        from api.flows.envelopes import EnvelopeFlow

        return EnvelopeFlow(flow, EnrolmentFlow(flow, self.iamsmart, self.store, self.secret, self.settings))
