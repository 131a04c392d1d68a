"""Real databases for tests: SQLite in a temp folder, or a fresh PostgreSQL database on 127.0.0.1:5432."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

PG_ADMIN_URL = os.environ.get("IAMSIGN_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgresql")


@contextlib.contextmanager
def database_url(backend: str, folder: Path) -> Iterator[str]:
    """A URL for an empty database of ``backend``, dropped afterwards (PostgreSQL)."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'iamsign.db'}"
        return
    import psycopg

    name = f"iamsign_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
