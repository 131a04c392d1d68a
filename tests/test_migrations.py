"""Schema changes go through alembic, and an upgrade keeps the data already there (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from api.store.db import alembic_config, migrate

from .databases import BACKENDS, database_url


@pytest.mark.parametrize("backend", BACKENDS)
def test_upgrade_from_the_first_revision_keeps_rows(tmp_path, backend):
    with database_url(backend, tmp_path) as url:
        command.upgrade(alembic_config(url), "0001")
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO organisations (id, name, created_at) VALUES ('org_1', 'School', "
                    "CURRENT_TIMESTAMP)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO documents (id, organisation_id, sha256, size, filename, pages, "
                    "signature_count, created_at) VALUES ('doc_1', 'org_1', :sha, 10, 'a.pdf', 1, 0, "
                    "CURRENT_TIMESTAMP)"
                ),
                {"sha": "ab" * 32},
            )
        migrate(engine)  # what every start does
        with engine.connect() as conn:
            assert conn.execute(text("SELECT filename FROM documents WHERE id = 'doc_1'")).scalar() == "a.pdf"
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == _head()
            conn.execute(text("SELECT idempotency_key FROM batches")).all()  # the newest columns exist
        migrate(engine)  # and running it again changes nothing
        engine.dispose()


def _head() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_migrations_build_the_schema_the_models_describe(tmp_path, backend):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    import api.store.models  # noqa: F401  (registers the tables)

    with database_url(backend, tmp_path) as url:
        engine = create_engine(url)
        migrate(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
        engine.dispose()
    assert [d for d in diff if d[0] != "remove_table" or d[1].name != "alembic_version"] == []


def test_the_expiry_sweep_reads_an_index_not_every_pending_request(tmp_path):
    """With 100,000 requests waiting, a sweep pass must not walk them all: its scans use the sweep indexes."""
    engine = create_engine(f"sqlite:///{tmp_path / 'sweep.db'}")
    migrate(engine)
    now = "2026-12-04 00:00:00"
    scans = {
        "overdue": "status = 'pending' AND phase IN ('prepared', 'sent') AND expires_at < :now",
        "stale": "status = 'pending' AND phase = 'prepared' AND updated_at < :now",
        "stuck": "status = 'pending' AND phase IN ('result_received', 'embedding') AND updated_at < :now",
    }
    with engine.connect() as conn:
        for table, prefix in (("signing_requests", "ix_sr_sweep_"), ("batches", "ix_batch_sweep_")):
            for name, where in scans.items():
                plan = " ".join(
                    str(row[-1])
                    for row in conn.execute(
                        text(f"EXPLAIN QUERY PLAN SELECT id FROM {table} WHERE {where} LIMIT 500"),
                        {"now": now},
                    )
                )
                assert f"USING INDEX {prefix}" in plan, (table, name, plan)
    engine.dispose()
