"""Database engine, sessions and migrations (alembic runs at start-up; an upgrade never loses data)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from weakref import WeakKeyDictionary

import anyio.to_thread
from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlmodel import create_engine

__all__ = ["alembic_config", "autocommit", "in_thread", "make_engine", "migrate"]

MIGRATIONS = Path(__file__).with_name("migrations")


def make_engine(
    url: str, pool_size: int = 10, max_overflow: int = 30, synchronous_commit: str = "on"
) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and enforced foreign keys; PostgreSQL sessions
    get ``synchronous_commit`` (``off`` matches SQLite's WAL + synchronous=NORMAL: no fsync per commit)."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=max_overflow,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    if synchronous_commit not in ("on", "off"):
        raise ValueError(f"synchronous_commit must be on or off, not {synchronous_commit!r}")
    connect_args = {"options": f"-c synchronous_commit={synchronous_commit}"} if "postgresql" in url else {}
    engine = create_engine(url, pool_size=pool_size, max_overflow=max_overflow, connect_args=connect_args)
    _ping_when_idle(engine)
    return engine


PING_AFTER_IDLE_S = 1.0
"""A pooled connection unused for longer than this is pinged before it is handed out."""


def _ping_when_idle(engine: Engine) -> None:
    """Pre-ping, but only connections that sat in the pool for a while (``pool_pre_ping`` pings at every
    checkout: one more database round trip per transaction, a tenth of a busy service's). A connection
    that died meanwhile (a database restart, an idle timeout) is replaced, as with ``pool_pre_ping``; one
    that dies within the moment since its last use fails its statement, the pool is invalidated and the
    request answers 503, as any request does that the restart catches in flight."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _idle_since(_dbapi_conn, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn, record, _proxy) -> None:
        since = record.info.get("idle_since")
        if since is not None and time.monotonic() - since <= PING_AFTER_IDLE_S:
            return
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as err:
            if dialect.is_disconnect(err, dbapi_conn, None):
                raise DisconnectionError() from err  # the pool replaces the connection and tries again
            raise


T = TypeVar("T")


async def in_thread(work: Callable[..., T], *args: object) -> T:
    """Run blocking database work in a thread of anyio's pool (the one FastAPI runs plain routes in), off
    the event loop; not in asyncio's default executor, where it would queue behind PDF preparation."""
    return await anyio.to_thread.run_sync(work, *args)


_AUTOCOMMIT: WeakKeyDictionary[Engine, Engine] = WeakKeyDictionary()


def autocommit(engine: Engine) -> Engine:
    """``engine`` (the same pool) without transactions, for sessions that only read: no BEGIN and no
    ROLLBACK around their statements, two PostgreSQL round trips fewer; each statement sees the latest
    commits (as every statement does in a READ COMMITTED transaction). Not for reads that must agree."""
    if (reader := _AUTOCOMMIT.get(engine)) is None:
        reader = _AUTOCOMMIT[engine] = engine.execution_options(isolation_level="AUTOCOMMIT")
    return reader


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


_MIGRATION_LOCK = 0x1A515160  # PostgreSQL advisory lock key: replicas starting together migrate one by one


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (safe when several replicas start at once)."""
    cfg = alembic_config(str(engine.url.render_as_string(hide_password=False)))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        elif engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
